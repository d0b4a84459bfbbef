"""Download this mix: POST /api/jobs/<id>/mix and the job page's form give the sum of the stems
times their gains, clipped to 16 bits, sample-exact against the stems, in the job's format;
only for the owner's completed jobs whose files are still there."""

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile

from separation.engine.remix import remix_encoded
from separation.models import Job
from separation.services import job_delete_files
from separation.tasks import separate_next_job
from testkit.audio import tones, write_audio
from tests.conftest import bearer_client, logged_in
from tests.jobs import make_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


@pytest.fixture
def api(user):
    return bearer_client(user)


GAINS = {"vocals": 0, "drums": 1.0, "bass": 0.5, "other": 1.7}


def completed_job(user, **options) -> Job:
    job = make_job(user, **options)
    separate_next_job()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED, job.error
    return job


def stems_int16(settings, job) -> dict[str, np.ndarray]:
    return {
        stem["name"]: soundfile.read(Path(settings.MEDIA_ROOT) / stem["file"], dtype="int16", always_2d=True)[0]
        for stem in job.stems
    }


def expected_mix(stems: dict[str, np.ndarray], gains: dict[str, float]) -> np.ndarray:
    total = sum(gains.get(name, 1.0) * samples.astype(np.float64) for name, samples in stems.items())
    return np.clip(np.rint(total), -32768, 32767).astype(np.int16)


def body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("output_format", ["wav", "flac"])
def test_it_mixes_the_stems_sample_exact_in_the_jobs_format(settings, user, api, output_format):
    job = completed_job(user, output_format=output_format)

    response = api.post(f"/api/jobs/{job.pk}/mix", {"gains": GAINS}, format="json")

    assert response.status_code == 200
    assert response["Content-Type"] == f"audio/{output_format}"
    assert f'filename="My Song - mix.{output_format}"' in response["Content-Disposition"]
    data = body(response)
    mixed, samplerate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    assert soundfile.info(io.BytesIO(data)).format == output_format.upper()
    expected = expected_mix(stems_int16(settings, job), GAINS)
    assert samplerate == 44100
    assert mixed.shape == expected.shape == (2 * 44100, 2)
    assert np.array_equal(mixed, expected)
    assert np.any(expected != 0)  # the demo model's stems are not silent: this compares something


def test_an_mp3_job_is_mixed_into_an_mp3_of_the_decoded_stems(settings, user, api):
    job = completed_job(user, output_format="mp3")

    response = api.post(f"/api/jobs/{job.pk}/mix", {"gains": GAINS}, format="json")

    assert response.status_code == 200 and response["Content-Type"] == "audio/mpeg"
    mixed, samplerate = soundfile.read(io.BytesIO(body(response)), dtype="int16", always_2d=True)
    expected = expected_mix(stems_int16(settings, job), GAINS)
    assert samplerate == 44100
    # mp3 is lossy and LAME adds its encoder delay: the same length within a few frames, and the
    # same signal at that delay to within the codec's noise.
    assert abs(mixed.shape[0] - expected.shape[0]) <= 3 * 1152
    best = max(
        range(0, 3 * 1152),
        key=lambda delay: float(np.dot(mixed[delay : delay + 44100, 0], expected[:44100, 0].astype(np.float64))),
    )
    error = mixed[best : best + len(expected)].astype(float) - expected[: len(mixed) - best]
    snr = 10 * np.log10(np.sum(expected.astype(float) ** 2) / np.sum(error**2))
    assert snr > 15, snr


def test_another_format_may_be_asked_for_and_left_out_stems_keep_their_level(settings, user, api):
    job = completed_job(user)

    response = api.post(f"/api/jobs/{job.pk}/mix", {"gains": {"vocals": 0}, "format": "flac"}, format="json")

    assert response.status_code == 200 and response["Content-Type"] == "audio/flac"
    mixed, _ = soundfile.read(io.BytesIO(body(response)), dtype="int16", always_2d=True)
    assert np.array_equal(mixed, expected_mix(stems_int16(settings, job), {"vocals": 0}))


def test_loud_sums_are_clipped_not_wrapped(tmp_path):
    loud = np.clip(tones(1.0, seed=1) * 4, -1, 1)  # full-scale square-ish waves
    paths = [write_audio(tmp_path / f"{n}.wav", loud, 44100) for n in range(3)]

    data = b"".join(remix_encoded(paths, [4.0, 4.0, 4.0], "wav"))

    mixed, _ = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    stem = soundfile.read(paths[0], dtype="int16", always_2d=True)[0].astype(np.int64)
    expected = np.clip(12 * stem, -32768, 32767)
    assert np.array_equal(mixed, expected)
    assert (mixed == 32767).sum() > 1000 and (mixed == -32768).sum() > 1000  # it did saturate


def test_the_job_page_form_downloads_the_same_mix(settings, user, api):
    job = completed_job(user)
    fields = {f"gain_{name}": str(gain) for name, gain in GAINS.items()}

    page = logged_in(user).post(f"/jobs/{job.pk}/mix/", fields)
    from_api = api.post(f"/api/jobs/{job.pk}/mix", {"gains": GAINS}, format="json")

    assert page.status_code == 200
    assert page["Content-Disposition"].startswith("attachment;")
    assert body(page) == body(from_api)


def test_only_the_owner_may_mix_a_job(user, other_user, api, api_client):
    job = completed_job(user)
    stranger = logged_in(other_user)

    assert stranger.post(f"/jobs/{job.pk}/mix/", {"gain_vocals": "0"}).status_code == 404
    api_client.force_authenticate(other_user)
    assert api_client.post(f"/api/jobs/{job.pk}/mix", {"gains": {}}, format="json").status_code == 404
    api_client.force_authenticate(None)
    assert api_client.post(f"/api/jobs/{job.pk}/mix", {"gains": {}}, format="json").status_code == 401


def test_it_refuses_jobs_without_stems_and_bad_gains(user, api):
    pending = make_job(user)
    assert api.post(f"/api/jobs/{pending.pk}/mix", {}, format="json").status_code == 409
    separate_next_job()
    job = Job.objects.get(pk=pending.pk)
    url = f"/api/jobs/{job.pk}/mix"

    for gains in ({"guitar": 1}, {"vocals": 5}, {"vocals": -1}, {"vocals": "loud"}, {"vocals": None}):
        response = api.post(url, {"gains": gains}, format="json")
        assert response.status_code == 400, (gains, response.content)
    assert api.post(url, {"format": "ogg"}, format="json").status_code == 400

    job_delete_files(job=job)
    response = api.post(url, {}, format="json")
    assert response.status_code == 410 and "deleted" in response.json()["detail"]


def test_mixing_is_throttled_per_user(settings, user, api):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "mix": "2/hour"},
    }
    job = completed_job(user)
    url = f"/api/jobs/{job.pk}/mix"

    statuses = [api.post(url, {}, format="json").status_code for _ in range(3)]
    page = logged_in(user).post(f"/jobs/{job.pk}/mix/", {}, follow=True)

    assert statuses == [200, 200, 429]
    assert "too often" in page.content.decode()
