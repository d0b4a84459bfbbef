"""How the networks run: OpenVINO and ONNX Runtime within 60 dB SNR of torch on the same weights (the
demo model through whole jobs, the htdemucs-size model on a segment), the ONNX export made once and
found again, several chunks per forward call equal to one at a time, and half precision."""

import logging

import numpy as np
import pytest
import torch

from separation import engine
from separation.engine import EngineConfig, EngineError
from separation.engine.networks import network_for
from testkit.audio import tones, write_audio
from tests.engine_reference import written

pytestmark = pytest.mark.slow


def snr_db(reference, estimate) -> float:
    reference = np.asarray(reference, dtype=np.float64)
    noise = np.sum((reference - np.asarray(estimate, dtype=np.float64)) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(noise, 1e-30)))


def separate(song, out, repo, **options):
    config = EngineConfig(model_repo=repo, device="cpu", shifts=0, **options)
    result = engine.separate(input_path=song, output_dir=out, model_name="demo", config=config)
    return {name: written(path) for name, path in result.stems.items()}


@pytest.fixture
def song(tmp_path):
    # 13.3 s with the demo model's 4 s segments: five chunks, the last one short.
    return write_audio(tmp_path / "song.wav", tones(13.3, 44100, 2, seed=3), 44100)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_it_separates_within_60_db_of_torch(tmp_path, song, demo_model_repo, backend):
    cache = tmp_path / "onnx"
    ours = separate(song, tmp_path / "onnx-out", demo_model_repo, backend=backend, onnx_cache=cache)
    reference = separate(song, tmp_path / "torch-out", demo_model_repo)
    assert list(ours) == list(reference)
    for name in reference:
        assert snr_db(reference[name], ours[name]) >= 60, name
    assert len(list(cache.glob("*/network.onnx"))) == 1


def test_it_exports_once_per_network_and_finds_the_export_again(tmp_path, demo_model_repo):
    from separation.engine.networks import onnx_export

    model, _ = engine.load_model("demo", EngineConfig(model_repo=demo_model_repo, device="cpu"))
    path = onnx_export(model, cache=tmp_path / "onnx")
    written_at = path.stat().st_mtime_ns
    assert onnx_export(model, cache=tmp_path / "onnx") == path
    assert path.stat().st_mtime_ns == written_at
    assert [entry.name for entry in (tmp_path / "onnx").iterdir()] == [path.parent.name]  # no scratch left


def test_the_htdemucs_size_network_is_within_60_db_on_both_runtimes(tmp_path):
    from django.core.management import call_command

    call_command("create_demo_model", repo=str(tmp_path / "models"), preset="htdemucs", name="big", verbosity=0)
    model, _ = engine.load_model("big", EngineConfig(model_repo=tmp_path / "models", device="cpu"))
    length = int(model.segment * model.samplerate)
    chunk = 0.1 * torch.randn(1, 2, length, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = model(chunk)
    for backend in ("openvino", "onnxruntime"):  # one export, found again by the second
        config = EngineConfig(model_repo=None, device="cpu", backend=backend, onnx_cache=tmp_path / "onnx")
        ours = network_for(model, config, "cpu")(chunk)
        assert ours.shape == reference.shape
        assert snr_db(reference.numpy(), ours.numpy()) >= 60, backend
    assert len(list((tmp_path / "onnx").iterdir())) == 1


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_several_chunks_per_forward_call_give_the_same_stems(tmp_path, song, demo_model_repo, backend):
    # Five chunks at three a call: the last call has two (OpenVINO pads it to its fixed batch).
    options = {"backend": backend, "onnx_cache": tmp_path / "onnx"}
    batched = separate(song, tmp_path / "batched", demo_model_repo, batch=3, **options)
    single = separate(song, tmp_path / "single", demo_model_repo, **options)
    for name in single:
        assert float(np.abs(batched[name] - single[name]).max()) < 1e-4, name


@pytest.mark.parametrize(
    ("backend", "precision"), [("torch", "bfloat16"), ("torch", "float16"), ("openvino", "bfloat16")]
)
def test_half_precision_keeps_the_stft_in_float32(tmp_path, song, demo_model_repo, backend, precision):
    options = {"backend": backend, "precision": precision, "onnx_cache": tmp_path / "onnx"}
    half = separate(song, tmp_path / "half", demo_model_repo, **options)
    full = separate(song, tmp_path / "full", demo_model_repo)
    for name in full:
        assert half[name].dtype == np.float64 and half[name].shape == full[name].shape
        # Rounding to 8 (bfloat16) or 11 (float16) bits of mantissa through the network, not noise.
        assert snr_db(full[name], half[name]) >= 20, name


def test_other_networks_run_in_torch_and_say_so(tmp_path, caplog):
    from tests.echo_model import Echo

    member = Echo()
    config = EngineConfig(model_repo=None, device="cpu", backend="onnxruntime", onnx_cache=tmp_path)
    with caplog.at_level(logging.INFO, logger="separation.engine.networks"):
        assert network_for(member, config, "cpu") is member
    assert "runs HTDemucs networks only" in caplog.text


def test_a_gpu_worker_runs_torch_whatever_the_backend(tmp_path, demo_model_repo):
    model, _ = engine.load_model("demo", EngineConfig(model_repo=demo_model_repo, device="cpu"))
    for backend in ("openvino", "onnxruntime"):
        config = EngineConfig(model_repo=None, backend=backend, onnx_cache=tmp_path)
        assert network_for(model, config, "cuda") is model  # no CUDA here: the choice alone is checked
    assert not (tmp_path / "onnx").exists() and not list(tmp_path.iterdir())


def test_it_refuses_unknown_settings(tmp_path, demo_model_repo):
    model, _ = engine.load_model("demo", EngineConfig(model_repo=demo_model_repo, device="cpu"))
    with pytest.raises(EngineError, match="float32 only"):
        network_for(model, EngineConfig(model_repo=None, backend="onnxruntime", precision="bfloat16"), "cpu")
    with pytest.raises(EngineError, match="Unknown backend"):
        network_for(model, EngineConfig(model_repo=None, backend="tensorrt"), "cpu")
    with pytest.raises(EngineError, match="Unknown precision"):
        network_for(model, EngineConfig(model_repo=None, precision="int8"), "cpu")


@pytest.mark.django_db
@pytest.mark.usefixtures("demo_model")
def test_a_job_runs_through_the_worker_on_the_default_backend(settings, tmp_path):
    from separation.models import Job
    from separation.tasks import separate_next_job
    from tests.factories import UserFactory
    from tests.jobs import make_job

    settings.DEMUCS_BACKEND = "openvino"  # the production default (pytest.ini pins torch for speed)
    settings.DEMUCS_ONNX_CACHE = tmp_path / "onnx"
    job = make_job(UserFactory())

    separate_next_job()

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED, job.error
    assert len(list((tmp_path / "onnx").glob("*/network.onnx"))) == 1
