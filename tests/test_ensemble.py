"""The ensemble option: vocals from a RoFormer, the other stems from a Demucs model, run over the
mix in lockstep through the streaming engine, priced as the sum of its parts."""

import io
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from separation import engine
from separation.catalog import CATALOGUE, entry_price
from separation.engine import EngineConfig
from separation.models import Job
from separation.tasks import separate_next_job
from testkit.audio import tones, write_audio
from tests.conftest import balance, logged_in
from tests.engine_reference import written

pytestmark = pytest.mark.slow

PARTS = {"drums": "demo", "bass": "demo", "other": "demo", "vocals": "demo_roformer"}


@pytest.fixture(scope="module")
def ensemble_repo(tmp_path_factory, demo_model_repo) -> Path:
    repo = tmp_path_factory.mktemp("ensemble-models")
    shutil.copy(demo_model_repo / "demo.th", repo / "demo.th")
    call_command("create_demo_model", repo=str(repo), name="demo_roformer", preset="roformer", stdout=io.StringIO())
    return repo


def separate(song, out, repo, name, **options):
    config = EngineConfig(model_repo=repo, device="cpu", shifts=0)
    return engine.separate(input_path=song, output_dir=out, model_name=name, config=config, **options)


def test_it_takes_the_vocals_from_the_roformer_and_the_rest_from_demucs(tmp_path, ensemble_repo):
    song = write_audio(tmp_path / "song.wav", tones(5.3, 44100, 2, seed=21), 44100)

    ensemble = separate(song, tmp_path / "ensemble", ensemble_repo, "demo_ensemble", parts=PARTS)
    demucs = separate(song, tmp_path / "demucs", ensemble_repo, "demo")
    roformer = separate(song, tmp_path / "roformer", ensemble_repo, "demo_roformer")

    assert list(ensemble.stems) == ["drums", "bass", "other", "vocals"]
    for stem, alone in [("drums", demucs), ("bass", demucs), ("other", demucs), ("vocals", roformer)]:
        difference = np.abs(written(ensemble.stems[stem]) - written(alone.stems[stem])).max()
        assert difference < 1e-4, stem
    # The premise: the two models' vocals differ, so the test tells which one the ensemble took.
    assert np.abs(written(demucs.stems["vocals"]) - written(roformer.stems["vocals"])).max() > 1e-2


def test_it_prices_an_ensemble_as_the_sum_of_its_parts(api_client):
    models = {model["name"]: model for model in api_client.get("/api/models").json()}

    parts = CATALOGUE["vocals_roformer_demucs"].parts
    assert entry_price("vocals_roformer_demucs") == sum(
        CATALOGUE[name].price_multiplier for name in set(parts.values())
    )
    assert models["vocals_roformer_demucs"]["price_multiplier"] == 3
    assert models["vocals_roformer_demucs"]["family"] == "ensemble"
    assert models["vocals_roformer_demucs"]["parts"]["vocals"] == "mel_roformer_vocals"
    assert models["demo_ensemble"]["price_multiplier"] == 2


@pytest.mark.django_db
def test_it_runs_an_ensemble_job_charged_the_sum_of_its_parts(user, settings, tmp_path, ensemble_repo, hf_offline):
    settings.DEMUCS_MODEL_REPO = ensemble_repo
    settings.DEMUCS_DEVICE = "cpu"
    settings.MEDIA_ROOT = tmp_path / "media"
    client = logged_in(user)
    song = write_audio(tmp_path / "song.wav", tones(2.0, 44100, 2, seed=22), 44100).read_bytes()
    before = balance(user)

    response = client.post("/upload/", {"file": SimpleUploadedFile("song.wav", song), "model": "demo_ensemble"})
    assert response.status_code == 302
    job = Job.objects.get(user=user)
    assert job.cost == Decimal(2) and balance(user) == before - 2
    separate_next_job()

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED, job.error
    assert job.stem_names == list(PARTS)


def test_it_refuses_an_ensemble_whose_part_lacks_its_stem(tmp_path, ensemble_repo):
    song = write_audio(tmp_path / "song.wav", tones(1.0, 44100, 2, seed=23), 44100)

    with pytest.raises(engine.EngineError):
        separate(song, tmp_path / "out", ensemble_repo, "bad", parts={"drums": "demo_roformer"})
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_worker_preloads_an_ensembles_parts_not_the_ensemble(settings):
    from separation import worker_warmup

    settings.WORKER_PRELOAD_MODELS = ["demo_ensemble", "demo"]

    assert worker_warmup.preload_model_names() == ["demo", "demo_roformer"]
