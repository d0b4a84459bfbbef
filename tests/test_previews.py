"""Free previews: POST /api/upload with preview=true separates a 30-second excerpt cut from the
decoded song (the loudest part unless a start is given), costs nothing, is limited per account per
day and waits behind paid jobs; POST /api/jobs/<id>/full-song makes the paid job of the whole song
from the song the preview kept, once."""

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
import soundfile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from credits.models import CreditTransaction
from separation.models import Job
from separation.scheduling import job_queue_positions
from separation.tasks import separate_next_job
from testkit.audio import encode, tone_bytes
from tests.conftest import balance, bearer_client, logged_in
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

RATE = 8000


def quiet_then_loud(quiet_seconds: float = 20.0, loud_seconds: float = 30.0) -> np.ndarray:
    """(frames, 2): noise at a tenth of the level, then loud noise; the loud part is the preview."""
    rng = np.random.default_rng(7)
    quiet = 0.03 * rng.standard_normal((int(quiet_seconds * RATE), 2))
    loud = 0.3 * rng.standard_normal((int(loud_seconds * RATE), 2))
    return np.concatenate([quiet, loud]).astype(np.float32)


@pytest.fixture
def song_data() -> np.ndarray:
    return quiet_then_loud()


@pytest.fixture
def song_file(song_data) -> bytes:
    return encode(song_data, RATE, "wav")


def preview(client, content: bytes, name="Song.wav", **fields):
    data = {"file": SimpleUploadedFile(name, content), "preview": "true", **fields}
    return client.post("/api/upload", data, format="multipart")


def decoded(path) -> np.ndarray:
    data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data


def test_it_separates_the_loudest_30_seconds_for_free(user, user_client, media, song_file):
    before = balance(user)

    response = preview(user_client, song_file)

    assert response.status_code == 202, response.content
    assert response.json()["cost"] == "0.00"
    assert response.json()["credits_remaining"] == f"{before:.2f}"
    job = Job.objects.get()
    assert job.is_preview and job.cost == 0
    assert job.preview_start_seconds == pytest.approx(20.0, abs=0.01)
    assert job.duration_seconds == pytest.approx(30.0, abs=0.01)
    assert balance(user) == before
    assert not CreditTransaction.objects.filter(reference=f"job:{job.pk}").exists()
    # The excerpt is its own file, cut from the decoded song; the whole song is kept beside it.
    song = decoded(media / job.source_file)
    excerpt = decoded(media / job.input_file)
    assert excerpt.shape == (30 * RATE, 2)
    np.testing.assert_allclose(excerpt, song[20 * RATE : 50 * RATE], atol=1e-6)


def test_it_starts_the_excerpt_where_asked(user_client, media, song_file):
    response = preview(user_client, song_file, preview_start="5")

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.preview_start_seconds == pytest.approx(5.0)
    np.testing.assert_allclose(
        decoded(media / job.input_file), decoded(media / job.source_file)[5 * RATE : 35 * RATE], atol=1e-6
    )


def test_it_keeps_a_late_start_inside_the_song(user_client, song_file):
    response = preview(user_client, song_file, preview_start="45")

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.preview_start_seconds == pytest.approx(20.0, abs=0.01)
    assert job.duration_seconds == pytest.approx(30.0, abs=0.01)


def test_it_previews_a_short_song_whole(user_client):
    response = preview(user_client, tone_bytes(seconds=3.0))

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.preview_start_seconds == 0
    assert job.duration_seconds == pytest.approx(3.0, abs=0.01)


def test_it_limits_previews_per_account_per_day(settings, user, other_user, song_file):
    settings.PREVIEWS_PER_DAY = 2
    client = bearer_client(user)
    assert preview(client, song_file).status_code == 202
    assert preview(client, song_file).status_code == 202

    refused = preview(client, song_file)

    assert refused.status_code == 429
    assert refused.json()["code"] == "preview_limit_reached"
    assert Job.objects.filter(user=user).count() == 2
    # Another account has its own previews; a day later the first one has its previews again.
    assert preview(bearer_client(other_user), song_file).status_code == 202
    Job.objects.filter(user=user).update(created_at=timezone.now() - timedelta(days=1, minutes=1))
    assert preview(client, song_file).status_code == 202


def test_it_counts_cancelled_previews_against_the_limit(settings, user, user_client, song_file):
    settings.PREVIEWS_PER_DAY = 1
    assert preview(user_client, song_file).status_code == 202
    job = Job.objects.get()
    assert user_client.delete(f"/api/job/{job.pk}").status_code == 200

    assert preview(user_client, song_file).status_code == 429
    assert not CreditTransaction.objects.filter(reference=f"job:{job.pk}").exists()


def test_it_offers_no_previews_when_the_limit_is_zero(settings, user_client, song_file):
    settings.PREVIEWS_PER_DAY = 0

    refused = preview(user_client, song_file)

    assert refused.status_code == 429
    assert refused.json()["detail"] == "Free previews are not offered on this server."


def test_it_lets_an_account_without_credits_preview_but_not_pay(settings, song_file):
    settings.PREVIEWS_PER_DAY = 1
    broke = UserFactory()
    broke.credits = Decimal(0)
    type(broke).objects.filter(pk=broke.pk).update(credits=0)
    client = bearer_client(broke)

    assert preview(client, song_file).status_code == 202
    paid = client.post("/api/upload", {"file": SimpleUploadedFile("s.wav", song_file)}, format="multipart")
    assert paid.status_code == 402
    assert paid.json()["code"] == "insufficient_credits"
    # With no preview left the gate refuses before the body is read, as before.
    again = preview(client, song_file)
    assert again.status_code == 402
    assert Job.objects.filter(user=broke).count() == 1


def test_it_queues_previews_behind_paid_jobs(user, other_user, song_file):
    preview(bearer_client(user), song_file)
    free = Job.objects.get()
    paid_later = make_job(other_user)
    paid_own = make_job(user)

    positions = job_queue_positions(jobs=[free, paid_later, paid_own])

    assert positions[free.pk] == 3
    assert {positions[paid_later.pk], positions[paid_own.pk]} == {1, 2}


def test_it_separates_only_the_excerpt(user_client, media, settings):
    song = encode(quiet_then_loud(quiet_seconds=40.0, loud_seconds=8.0), RATE, "wav")
    preview(user_client, song, preview_start="0", stems="vocals")
    job = Job.objects.get()

    separate_next_job()

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED, job.error
    assert job.cost == 0
    for stem in job.stems:
        assert soundfile.info(str(media / stem["file"])).frames == 30 * RATE
    assert not CreditTransaction.objects.filter(reference=f"job:{job.pk}").exists()


def test_it_separates_the_full_song_from_the_preview_once(user, user_client, media, song_file):
    preview(user_client, song_file, format="flac")
    free = Job.objects.get()
    before = balance(user)

    made = user_client.post(f"/api/jobs/{free.pk}/full-song")
    again = user_client.post(f"/api/jobs/{free.pk}/full-song")

    assert made.status_code == 202, made.content
    assert again.status_code == 200
    assert made.json()["job_id"] == again.json()["job_id"]
    full = Job.objects.get(pk=made.json()["job_id"])
    assert not full.is_preview
    assert full.cost == Decimal(1)
    assert (full.model, full.stem_mode, full.output_format) == (free.model, free.stem_mode, "flac")
    assert full.duration_seconds == pytest.approx(50.0, abs=0.01)
    assert balance(user) == before - 1
    assert CreditTransaction.objects.filter(reference=f"job:{full.pk}").count() == 1
    np.testing.assert_array_equal(decoded(media / full.input_file), decoded(media / free.source_file))
    free.refresh_from_db()
    assert free.full_song_job_id == full.pk
    status = user_client.get(f"/api/status/{free.pk}").json()
    assert status["preview"] is True and status["full_song_job_id"] == str(full.pk)


def test_it_refuses_the_full_song_to_others_and_of_paid_jobs(user, other_user, user_client, song_file):
    preview(user_client, song_file)
    free = Job.objects.get()
    paid = make_job(user)

    assert bearer_client(other_user).post(f"/api/jobs/{free.pk}/full-song").status_code == 404
    refused = user_client.post(f"/api/jobs/{paid.pk}/full-song")
    assert refused.status_code == 409
    assert refused.json()["code"] == "not_a_preview"
    assert Job.objects.count() == 2


def test_it_counts_the_full_song_against_the_upload_throttle(settings, user_client, song_file):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "upload": "1/hour"},
    }
    preview(user_client, song_file)
    free = Job.objects.get()

    refused = user_client.post(f"/api/jobs/{free.pk}/full-song")

    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert Job.objects.count() == 1


def test_it_charges_nothing_when_the_full_song_cannot_be_paid(user, user_client, song_file):
    preview(user_client, song_file)
    free = Job.objects.get()
    type(user).objects.filter(pk=user.pk).update(credits=0)

    refused = user_client.post(f"/api/jobs/{free.pk}/full-song")

    assert refused.status_code == 402
    assert Job.objects.count() == 1
    free.refresh_from_db()
    assert free.full_song_job_id is None


def test_it_refuses_the_full_song_once_its_files_are_deleted(user_client, song_file):
    preview(user_client, song_file)
    free = Job.objects.get()
    user_client.delete(f"/api/job/{free.pk}")

    refused = user_client.post(f"/api/jobs/{free.pk}/full-song")

    assert refused.status_code == 409
    assert "deleted" in refused.json()["detail"]


def test_it_previews_and_separates_the_full_song_from_the_pages(user, song_file):
    client = logged_in(user)
    response = client.post(
        "/upload/",
        {"file": SimpleUploadedFile("Page.wav", song_file), "preview": "on", "preview_start": "0:10", "token": "t1"},
    )
    free = Job.objects.get()
    assert response.url == f"/jobs/{free.pk}/"
    assert free.is_preview and free.preview_start_seconds == pytest.approx(10.0)
    page = client.get(f"/jobs/{free.pk}/").content.decode()
    assert "Separate the full song" in page
    assert "30 seconds of the song, from 10 s" in page
    assert ">Cancel</button>" in page and "Cancel and refund" not in page
    listed = client.get("/dashboard/").content.decode()
    assert '<span class="kind">Free preview</span>' in listed and "<div>Free</div>" in listed

    made = client.post(f"/jobs/{free.pk}/full-song/")

    free.refresh_from_db()
    assert made.url == f"/jobs/{free.full_song_job_id}/"
