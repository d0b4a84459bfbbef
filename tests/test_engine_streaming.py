"""The engine streams: its files equal demucs's whole-track result, bag members no stem needs do not
run, and a long track does not take proportionally more memory. Real demucs code, demo model."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sphn
import torch

from separation import engine
from separation.engine import EngineConfig
from testkit.audio import tones, write_audio
from tests.engine_reference import assert_equal_to_reference

pytestmark = pytest.mark.slow

BAG_WEIGHTS = [[1.0, 0.5, 0.0, 2.0], [0.25, 1.0, 1.0, 0.0]]  # only the first member makes vocals


def reference(song: Path, model, *, out_samplerate: int, out_channels: int, frames: int, two_stems=None, method="add"):
    """demucs's own result: Separator.separate_tensor on the whole track, the stems converted to
    the output rate and channels and rescaled as save_audio does; no_STEM as demucs's
    --other-method `method` makes it (add: the other sources summed; minus: the mix minus STEM)."""
    import julius
    from demucs.apply import apply_model
    from demucs.audio import convert_audio, convert_audio_channels, prevent_clip

    data, samplerate = sphn.read(str(song))
    wav = convert_audio(torch.from_numpy(data), samplerate, model.samplerate, model.audio_channels)
    ref = wav.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    out = apply_model(model, ((wav - mean) / std)[None], shifts=0, split=True, overlap=0.25, device="cpu")
    sources = dict(zip(model.sources, (out * std + mean)[0], strict=True))
    if two_stems is not None:
        stem = sources.pop(two_stems)
        rest = wav - stem if method == "minus" else sum(sources.values(), torch.zeros_like(stem))
        sources = {two_stems: stem, f"no_{two_stems}": rest}
    stems = {}
    for name, stem in sources.items():
        stem = julius.resample_frac(convert_audio_channels(stem, out_channels), model.samplerate, out_samplerate)
        stem = torch.nn.functional.pad(stem, (0, max(0, frames - stem.shape[-1])))[..., :frames]
        stems[name] = prevent_clip(stem, mode="rescale").numpy()
    return stems


@pytest.fixture
def bag_repo(demo_model_repo, tmp_path) -> Path:
    """A bag of two demo-sized members with different weights (the second one perturbed)."""
    repo = tmp_path / "bag-repo"
    repo.mkdir()
    shutil.copy(demo_model_repo / "demo.th", repo / "first.th")
    package = torch.load(demo_model_repo / "demo.th", weights_only=False)
    generator = torch.Generator().manual_seed(7)
    for key, value in package["state"].items():
        if value.is_floating_point():
            package["state"][key] = value * (1 + 0.2 * torch.rand(value.shape, generator=generator))
    torch.save(package, repo / "second.th")
    (repo / "pair.yaml").write_text(f"models: ['first', 'second']\nweights: {BAG_WEIGHTS}\n")
    return repo


def run(song, out, repo, name="demo", **options):
    config = EngineConfig(model_repo=repo, device="cpu", shifts=0)
    return engine.separate(input_path=song, output_dir=out, model_name=name, config=config, **options)


def test_it_equals_demucs_on_a_stereo_track_of_several_chunks(tmp_path, demo_model_repo):
    # 13.3 s with 4 s segments and a 3 s stride: five chunks, the last one short.
    song = write_audio(tmp_path / "song.wav", tones(13.3, 44100, 2, seed=3), 44100)
    result = run(song, tmp_path / "out", demo_model_repo)
    model, _ = engine.load_model("demo", EngineConfig(model_repo=demo_model_repo, device="cpu"))
    assert_equal_to_reference(
        result, reference(song, model, out_samplerate=44100, out_channels=2, frames=result.frames)
    )


def test_it_equals_demucs_on_a_48khz_mono_track(tmp_path, demo_model_repo):
    # Resampled 48 -> 44.1 kHz on the way in and back on the way out; mono in, mono out.
    song = write_audio(tmp_path / "song.wav", tones(9.1, 48000, 1, seed=4), 48000)
    result = run(song, tmp_path / "out", demo_model_repo)
    assert (result.samplerate, result.channels) == (48000, 1)
    model, _ = engine.load_model("demo", EngineConfig(model_repo=demo_model_repo, device="cpu"))
    assert_equal_to_reference(
        result, reference(song, model, out_samplerate=48000, out_channels=1, frames=result.frames)
    )


def test_it_equals_demucs_on_a_bag_with_weights(tmp_path, bag_repo):
    song = write_audio(tmp_path / "song.wav", tones(8.0, 44100, 2, seed=5), 44100)
    result = run(song, tmp_path / "out", bag_repo, name="pair")
    bag, _ = engine.load_model("pair", EngineConfig(model_repo=bag_repo, device="cpu"))
    assert bag.weights == BAG_WEIGHTS
    assert_equal_to_reference(result, reference(song, bag, out_samplerate=44100, out_channels=2, frames=result.frames))


def test_it_equals_demucs_on_a_two_stem_job(tmp_path, demo_model_repo):
    # A single model computes every source, so no_vocals is the sum of the others ("add").
    song = write_audio(tmp_path / "song.wav", tones(6.5, 44100, 2, seed=6), 44100)
    result = run(song, tmp_path / "out", demo_model_repo, two_stems="vocals")
    model, _ = engine.load_model("demo", EngineConfig(model_repo=demo_model_repo, device="cpu"))
    expected = reference(song, model, out_samplerate=44100, out_channels=2, frames=result.frames, two_stems="vocals")
    assert_equal_to_reference(result, expected)


def count_forwards(model) -> list[int]:
    """Calls to each bag member's forward, counted with torch's forward hooks."""
    calls = [0] * len(model.models)

    def hook(index):
        def count(module, inputs, output):
            calls[index] += 1

        return count

    for index, member in enumerate(model.models):
        member.register_forward_hook(hook(index))
    return calls


def test_it_runs_only_the_bag_members_a_two_stem_job_needs(tmp_path, bag_repo):
    song = write_audio(tmp_path / "song.wav", tones(7.0, 44100, 2, seed=8), 44100)
    config = EngineConfig(model_repo=bag_repo, device="cpu", shifts=0)
    bag, _ = engine.load_model("pair", config)
    calls = count_forwards(bag)

    result = run(song, tmp_path / "vocals", bag_repo, name="pair", two_stems="vocals")
    assert calls[0] > 0
    assert calls[1] == 0  # its vocals weight is 0
    assert list(result.stems) == ["vocals", "no_vocals"]
    expected = reference(
        song, bag, out_samplerate=44100, out_channels=2, frames=result.frames, two_stems="vocals", method="minus"
    )
    assert_equal_to_reference(result, expected)

    calls[:] = [0, 0]
    run(song, tmp_path / "drums", bag_repo, name="pair", two_stems="drums")
    assert calls[0] == calls[1] > 0  # both members make drums


# The echo model (tests/echo_model.py) runs a long track in seconds: what is measured is the engine
# around the model (reading, resampling, the passes, the raw stems, the encoding).
PEAK_RSS = """
import resource, sys
from pathlib import Path
import numpy as np, soundfile
from separation import engine
from tests.echo_model import write_echo_model

seconds, folder = float(sys.argv[1]), Path(sys.argv[2])
song = folder / "song.wav"
rate = 22050
with soundfile.SoundFile(song, "w", rate, 1, subtype="PCM_16") as file:
    for start in range(0, int(seconds * rate), 10 * rate):
        t = np.arange(start, min(start + 10 * rate, int(seconds * rate))) / rate
        file.write(0.3 * np.sin(2 * np.pi * 220 * t))
write_echo_model(folder)
config = engine.EngineConfig(model_repo=folder, device="cpu", shifts=1)
result = engine.separate(input_path=song, output_dir=folder / "out", model_name="echo", config=config)
assert result.frames == int(seconds * rate)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def peak_rss_kib(seconds: float, folder: Path) -> int:
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(seconds), str(folder)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux")
def test_it_takes_no_more_memory_for_a_ten_times_longer_track(tmp_path):
    short = peak_rss_kib(45, tmp_path / "short")
    long = peak_rss_kib(450, tmp_path / "long")
    print(f"peak RSS: 45 s {short / 1024:.0f} MiB, 450 s {long / 1024:.0f} MiB")
    # Holding the track would take ~500 MiB more here (the mix and four stems, float32, at 22.05 kHz).
    assert long - short < 40 * 1024
