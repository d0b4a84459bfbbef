"""Uploads are priced and limited by the audio they decode to, never by what a header claims
(a Xing frame count, FLAC's STREAMINFO), and the worker never separates more than was charged."""

from decimal import Decimal

import pytest
import soundfile
from django.core.files.uploadedfile import SimpleUploadedFile

from separation import catalog
from separation.models import Job
from separation.tasks import separate_next_job
from testkit.audio import flac_claiming_samples, mp3_claiming_seconds, tone_bytes
from tests.conftest import balance

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def post(client, content: bytes, name: str):
    return client.post("/api/upload", {"file": SimpleUploadedFile(name, content)}, format="multipart")


@pytest.fixture(scope="module")
def eleven_minutes_claiming_two_seconds() -> bytes:
    return mp3_claiming_seconds(tone_bytes(11 * 60.0, fmt="mp3"), 2.0)


def test_it_charges_an_mp3_by_its_decoded_length_not_its_xing_header(
    user, user_client, eleven_minutes_claiming_two_seconds
):
    response = post(user_client, eleven_minutes_claiming_two_seconds, "liar.mp3")

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.duration_seconds == pytest.approx(660, abs=0.2)
    assert job.cost == Decimal(2)  # two started 10-minute periods, not one
    assert balance(user) == Decimal(1)


def test_it_refuses_an_mp3_longer_than_the_limit_whatever_its_header_claims(user, user_client, settings, media):
    settings.MAX_DURATION_MINUTES = 1
    song = mp3_claiming_seconds(tone_bytes(75.0, fmt="mp3"), 2.0)

    response = post(user_client, song, "liar.mp3")

    assert response.status_code == 400
    assert response.json()["code"] == "bad_duration"
    assert "longer than the 1-minute limit" in response.json()["detail"]
    assert Job.objects.count() == 0
    assert balance(user) == Decimal(3)


def test_it_charges_a_flac_by_its_decoded_length_not_its_streaminfo(user, user_client, monkeypatch):
    monkeypatch.setattr(catalog, "PRICE_PERIOD_SECONDS", 5)  # a short file crosses price periods
    song = flac_claiming_samples(tone_bytes(15.0, fmt="flac"), 2 * 44100)

    response = post(user_client, song, "liar.flac")

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.duration_seconds == pytest.approx(15.0, abs=0.01)
    assert job.cost == Decimal(3)


def test_it_refuses_a_flac_that_cannot_be_read_past_what_its_streaminfo_claims(user, user_client, media):
    """Reading it needs seeks past the end its header gives, which the decoder refuses: the file is
    not audio we can read, and nothing is charged (the worker could not read it either)."""
    song = flac_claiming_samples(tone_bytes(45.0, fmt="flac"), 2 * 44100)

    response = post(user_client, song, "liar.flac")

    assert response.status_code == 415
    assert Job.objects.count() == 0
    assert balance(user) == Decimal(3)


def test_the_worker_separates_what_was_measured_and_charged(user, user_client, settings):
    song = mp3_claiming_seconds(tone_bytes(20.0, fmt="mp3"), 2.0)
    assert post(user_client, song, "liar.mp3").status_code == 202

    separate_next_job()

    job = Job.objects.get()
    assert job.status == Job.Status.COMPLETED
    frames = soundfile.info(settings.MEDIA_ROOT / job.stems[0]["file"]).frames
    assert frames / 44100 == pytest.approx(job.duration_seconds, abs=0.01)
    assert job.duration_seconds == pytest.approx(20.0, abs=0.2)
