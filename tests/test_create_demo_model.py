"""manage.py create_demo_model: a small random HTDemucs in the demucs repo format."""

import hashlib
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.management import CommandError, call_command

from separation.demo_models import PRESETS, create_demo_model

pytestmark = pytest.mark.slow


def run_command(**options) -> str:
    out = StringIO()
    call_command("create_demo_model", stdout=out, **options)
    return out.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writes_a_model_that_demucs_loads(demo_model_repo):
    from demucs.htdemucs import HTDemucs
    from demucs.pretrained import get_model
    from demucs.states import load_model

    assert sorted(path.name for path in demo_model_repo.iterdir()) == ["demo.th"]
    model = load_model(demo_model_repo / "demo.th")  # exactly what demucs's LocalRepo does
    assert isinstance(model, HTDemucs)
    assert model.sources == ["drums", "bass", "other", "vocals"]
    assert model.samplerate == 44100
    assert model.audio_channels == 2
    assert isinstance(get_model("demo", repo=demo_model_repo), HTDemucs)


def test_prints_where_it_wrote(tmp_path):
    output = run_command(repo=str(tmp_path), name="tiny")
    assert str(tmp_path / "tiny.th") in output
    assert (tmp_path / "tiny.th").is_file()


def test_the_file_is_deterministic(tmp_path, demo_model_repo):
    run_command(repo=str(tmp_path))
    assert sha256(tmp_path / "demo.th") == sha256(demo_model_repo / "demo.th")


def test_existing_model_is_kept_unless_forced(tmp_path):
    target = tmp_path / "demo.th"
    target.write_bytes(b"placeholder")
    output = run_command(repo=str(tmp_path))
    assert "already exists" in output
    assert target.read_bytes() == b"placeholder"

    output = run_command(repo=str(tmp_path), force=True)
    assert "Wrote" in output
    assert target.stat().st_size > 100_000
    assert not [path for path in tmp_path.iterdir() if path.name != "demo.th"]  # no temp files


def test_force_replaces_a_checksummed_copy(tmp_path):
    # demucs refuses a folder holding both demo.th and demo-<checksum>.th.
    (tmp_path / "demo-0123abcd.th").write_bytes(b"old")
    assert run_command(repo=str(tmp_path)).endswith("nothing written (use --force to overwrite).\n")
    run_command(repo=str(tmp_path), force=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["demo.th"]


def test_default_folder_is_the_setting(tmp_path, settings):
    settings.DEMUCS_MODEL_REPO = tmp_path / "data" / "models"
    run_command()
    assert (tmp_path / "data" / "models" / "demo.th").is_file()


def test_rejects_a_name_demucs_would_misread(tmp_path):
    with pytest.raises(CommandError):
        run_command(repo=str(tmp_path), name="demo-v2")  # "-" separates a checksum
    assert not list(tmp_path.iterdir())


def test_presets_table_has_demo():
    assert "demo" in PRESETS
    with pytest.raises(ValueError):
        create_demo_model(Path("/nonexistent"), preset="no-such-preset")


def test_demucs_cli_separates_with_it(demo_model_repo, tmp_path):
    from demucs.separate import main

    song = tmp_path / "song.wav"
    rng = np.random.default_rng(0)
    soundfile.write(song, (rng.standard_normal((44100, 2)) * 0.1).astype(np.float32), 44100)
    main(["--repo", str(demo_model_repo), "-n", "demo", "-o", str(tmp_path / "out"), str(song)])
    stems = sorted(path.name for path in (tmp_path / "out" / "demo" / "song").iterdir())
    assert stems == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    assert soundfile.info(tmp_path / "out" / "demo" / "song" / "vocals.wav").frames == 44100


# --- real-size presets, for benchmarks ----------------------------------------------------


@pytest.fixture(scope="module")
def real_size_repo(tmp_path_factory) -> Path:
    """The htdemucs and htdemucs_ft presets under the names the service offers (~840 MB)."""
    repo = tmp_path_factory.mktemp("real-size-models")
    create_demo_model(repo, name="htdemucs", preset="htdemucs")
    create_demo_model(repo, name="htdemucs_ft", preset="htdemucs_ft")
    return repo


def test_the_htdemucs_preset_has_the_released_layout(real_size_repo):
    from fractions import Fraction

    from demucs.htdemucs import HTDemucs
    from demucs.pretrained import get_model

    model = get_model("htdemucs", repo=real_size_repo)
    assert isinstance(model, HTDemucs)
    assert round(sum(parameter.numel() for parameter in model.parameters()) / 1e6, 2) == 41.98
    assert model.segment == Fraction(39, 5)  # 7.8 s, as the released htdemucs
    assert model.sources == ["drums", "bass", "other", "vocals"]
    assert (model.depth, model.samplerate, model.audio_channels) == (4, 44100, 2)
    assert len(model.crosstransformer.layers) == 5
    assert model.channel_upsampler is not None  # bottom_channels=512


def test_the_htdemucs_ft_preset_is_a_bag_with_one_hot_weights(real_size_repo):
    import torch
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs
    from demucs.pretrained import get_model

    assert sorted(path.name for path in real_size_repo.iterdir()) == [
        "htdemucs.th",
        "htdemucs_ft.yaml",
        "htdemucs_ft_0.th",
        "htdemucs_ft_1.th",
        "htdemucs_ft_2.th",
        "htdemucs_ft_3.th",
    ]
    bag = get_model("htdemucs_ft", repo=real_size_repo)
    assert isinstance(bag, BagOfModels)
    assert bag.weights == [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    assert bag.sources == ["drums", "bass", "other", "vocals"]
    assert all(isinstance(member, HTDemucs) and float(member.segment) == 7.8 for member in bag.models)
    first, second = (member.state_dict()["encoder.0.conv.weight"] for member in bag.models[:2])
    assert not torch.equal(first, second)  # different seeds


def test_the_service_sees_the_real_size_presets(real_size_repo, settings, hf_offline):
    from separation import engine
    from separation.catalog import models_list

    settings.DEMUCS_MODEL_REPO = real_size_repo
    assert engine.model_is_installed("htdemucs_ft", real_size_repo)
    installed = {model.name for model in models_list() if model.installed}
    assert installed == {"htdemucs", "htdemucs_ft"}


def test_an_existing_bag_is_kept_unless_forced(tmp_path):
    (tmp_path / "bench_ft.yaml").write_text("models: ['x']\n")
    path, written = create_demo_model(tmp_path, name="bench_ft", preset="htdemucs_ft")
    assert (path, written) == (tmp_path / "bench_ft.yaml", False)
    assert (tmp_path / "bench_ft.yaml").read_text() == "models: ['x']\n"
    # A single model of that name would shadow the bag: kept too.
    assert create_demo_model(tmp_path, name="bench_ft", preset="demo") == (tmp_path / "bench_ft.yaml", False)
    assert not (tmp_path / "bench_ft.th").exists()
    output = run_command(repo=str(tmp_path), name="bench_ft", preset="demo", force=True)
    assert "Wrote" in output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bench_ft.th"]
