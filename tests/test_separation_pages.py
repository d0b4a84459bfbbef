"""The separation pages: dashboard with the upload form and live job list, the job page with
its progress or its players and waveforms, cancel/delete, and who may see what."""

import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django_q.conf import Conf

from credits.models import CreditTransaction
from separation.models import Job
from separation.tasks import separate_next_job
from testkit.audio import files_under, tone_bytes
from tests.conftest import balance, logged_in
from tests.factories import UserFactory

Kind = CreditTransaction.Kind
STEMS = ["drums", "bass", "other", "vocals"]

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


@pytest.fixture
def client(user) -> Client:
    return logged_in(user)


def upload(client: Client, content: bytes, name: str = "My Song.wav", follow: bool = False, **fields):
    return client.post("/upload/", {"file": SimpleUploadedFile(name, content), **fields}, follow=follow)


def uploaded(client: Client, song: bytes, **fields) -> Job:
    response = upload(client, song, **fields)
    assert response.status_code == 302, response.content
    return Job.objects.order_by("-created_at").first()


def completed(client: Client, song: bytes, **fields) -> Job:
    job = uploaded(client, song, **fields)
    separate_next_job()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED, job.error
    return job


def text(response) -> str:
    return response.content.decode()


# --- dashboard ------------------------------------------------------------------------


def test_the_dashboard_offers_the_installed_models_with_prices_and_lists_the_users_jobs(user, other_user, client, song):
    mine = uploaded(client, song, model="demo")
    uploaded(logged_in(other_user), song, name="Not Mine.wav")

    response = client.get("/dashboard/")

    assert response.status_code == 200
    page = text(response)
    assert 'action="/upload/"' in page and 'enctype="multipart/form-data"' in page
    options = re.findall(r'<option value="([^"]+)" data-stems', page)
    assert options == ["demo"]  # only installed models
    assert re.search(r"Demo model \(untrained: for trying the service\): 1 credit per 10 minutes", page)
    assert 'value="vocals"' in page and 'value="mp3"' in page
    assert f'href="/jobs/{mine.pk}/"' in page and "My Song.wav" in page
    assert "Not Mine.wav" not in page


def test_the_dashboard_says_when_no_model_is_installed(client, settings, tmp_path):
    settings.DEMUCS_MODEL_REPO = tmp_path / "no-models"

    page = text(client.get("/dashboard/"))

    assert "No separation model is installed" in page
    assert 'action="/upload/"' not in page


def test_uploading_through_the_page_goes_to_the_job_page(user, song):
    client = logged_in(user, enforce_csrf_checks=True)
    client.get("/dashboard/")  # sets the CSRF cookie, as a browser would
    token = client.cookies["csrftoken"].value

    response = client.post(
        "/upload/",
        {"csrfmiddlewaretoken": token, "file": SimpleUploadedFile("Page Song.wav", song), "model": "demo",
         "stems": "all", "format": "wav", "token": "form-1"},
    )  # fmt: skip

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert (job.original_filename, job.model, job.user) == ("Page Song.wav", "demo", user)
    assert balance(user) == Decimal("2.00")


def test_the_upload_form_needs_its_csrf_token(user, song):
    client = logged_in(user, enforce_csrf_checks=True)

    assert upload(client, song).status_code == 403
    assert Job.objects.count() == 0


def test_a_double_submitted_form_makes_one_job(user, client, song):
    upload(client, song, token="same-form")
    upload(client, song, token="same-form")

    assert Job.objects.count() == 1
    assert balance(user) == Decimal("2.00")


def test_a_bad_file_shows_the_error_on_the_dashboard_and_charges_nothing(user, client, media):
    response = upload(client, b"this is not audio at all" * 100, name="song.wav")

    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    page = text(client.get("/dashboard/"))
    assert "This file is not audio we can read" in page
    assert balance(user) == Decimal("3.00")
    assert not CreditTransaction.objects.filter(user=user, kind=Kind.JOB_CHARGE).exists()
    assert Job.objects.count() == 0
    assert files_under(media) == []


def test_an_oversized_page_upload_is_stopped_while_streaming_and_says_so(user, settings, media):
    settings.MAX_UPLOAD_MB = 1
    content = tone_bytes(seconds=12.2, channels=1)  # just over 1 MB: stopped by the upload handler
    client = logged_in(user, enforce_csrf_checks=True)
    client.get("/dashboard/")

    response = client.post(
        "/upload/",
        {"csrfmiddlewaretoken": client.cookies["csrftoken"].value, "file": SimpleUploadedFile("big.wav", content)},
        follow=True,
    )

    assert response.redirect_chain == [("/dashboard/", 302)]
    assert "larger than the 1 MB limit" in text(response)
    assert Job.objects.count() == 0
    assert balance(user) == Decimal("3.00")
    assert files_under(media) == []


@pytest.mark.django_db(transaction=True)
def test_a_page_upload_when_the_queue_is_down_is_refunded_and_says_so(user, song, monkeypatch):
    # django-q2 read Q_CLUSTER at import (Conf); point what it read at a closed Redis port.
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")

    response = upload(logged_in(user), song, follow=True)

    assert "The job queue is unavailable" in text(response)
    assert Job.objects.get().status == Job.Status.FAILED
    assert balance(user) == Decimal("3.00")


def test_a_page_upload_without_a_file_says_so(client):
    response = client.post("/upload/", {"model": "demo"}, follow=True)

    assert "Choose an audio file" in text(response)
    assert Job.objects.count() == 0


def test_not_enough_credits_links_to_the_credits_page(settings, song, media):
    settings.SIGNUP_BONUS_CREDITS = Decimal(0)
    client = logged_in(UserFactory())

    response = upload(client, song, follow=True)

    page = text(response)
    assert "Not enough credits: a song costs at least 1 and you have 0." in page
    assert '<a href="/credits/">Buy credits</a>' in page
    assert Job.objects.count() == 0
    assert files_under(media) == []


def test_messages_show_credit_amounts_as_the_rest_of_the_site_does(settings, user, client, song):
    # Pages show amounts with floatformat:"-2": 1, 0, 7.50 (never 1.00).
    cancelled = uploaded(client, song)
    assert "your 1 credit was refunded" in text(client.post(f"/jobs/{cancelled.pk}/delete/", follow=True))

    settings.SIGNUP_BONUS_CREDITS = Decimal(0)
    page = text(upload(logged_in(UserFactory()), song, follow=True))
    assert "costs at least 1 and you have 0. <a" in page


# --- job page -------------------------------------------------------------------------


def test_the_job_page_of_an_active_job_shows_progress_and_polls(client, song):
    job = uploaded(client, song)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PROCESSING, progress=42)

    page = text(client.get(f"/jobs/{job.pk}/"))
    partial = client.get(f"/jobs/{job.pk}/status/")

    assert "My Song.wav" in page
    assert "untrained demo model" in page
    for html in (page, text(partial)):
        assert f'data-poll-url="/jobs/{job.pk}/status/"' in html
        assert '<progress id="job-progress" max="100" value="42" aria-label="Separation progress">' in html
        assert "42%" in html
        assert "Cancel and refund" in html
        assert "<audio" not in html
    assert "<html" not in text(partial)


def test_the_job_page_of_a_completed_job_has_a_player_and_a_waveform_per_stem(client, song):
    job = completed(client, song)

    page = text(client.get(f"/jobs/{job.pk}/"))

    # Only the tempo and key, which come a little after the stems, are still polled for.
    assert re.findall(r'data-poll-url="([^"]+)"', page) == [f"/jobs/{job.pk}/analysis/"]
    players = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', page)
    assert players == [f"/api/download/{job.pk}/{name}" for name in STEMS]
    waveforms = re.findall(r'<img class="waveform" src="([^"]+)"', page)
    assert waveforms == [f"/jobs/{job.pk}/waveform/{name}.png" for name in STEMS]
    assert f'href="/api/download/{job.pk}"' in page
    for url in waveforms:
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    for url in players:  # the browser's session plays the stems through the API
        assert client.get(url).status_code == 200
    assert client.get(f"/jobs/{job.pk}/waveform/guitar.png").status_code == 404
    partial = text(client.get(f"/jobs/{job.pk}/status/"))
    assert 'data-poll-url="/jobs/' + str(job.pk) + '/status/"' not in partial and partial.count("<audio") == 4


def test_the_job_page_of_a_failed_job_shows_its_error(client, song):
    job = uploaded(client, song)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED, error="The separation failed: bad luck.")

    page = text(client.get(f"/jobs/{job.pk}/"))

    assert "The separation failed: bad luck." in page
    assert "data-poll-url" not in page


def test_another_users_job_pages_are_not_found(user, other_user, client, song, media):
    job = completed(client, song)
    stranger = logged_in(other_user)
    files = files_under(media)

    for response in [
        stranger.get(f"/jobs/{job.pk}/"),
        stranger.get(f"/jobs/{job.pk}/status/"),
        stranger.get(f"/jobs/{job.pk}/waveform/vocals.png"),
        stranger.post(f"/jobs/{job.pk}/delete/"),
    ]:
        assert response.status_code == 404
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED and len(job.stems) == 4
    assert files_under(media) == files
    assert "My Song.wav" not in text(stranger.get("/dashboard/"))


# --- cancel and delete ----------------------------------------------------------------


def test_cancelling_an_active_job_refunds_it(user, client, song, media):
    job = uploaded(client, song)

    response = client.post(f"/jobs/{job.pk}/delete/", follow=True)

    assert response.redirect_chain == [("/dashboard/", 302)]
    assert "Cancelled My Song.wav; your" in text(response)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert balance(user) == Decimal("3.00")
    assert CreditTransaction.objects.filter(user=user, kind=Kind.JOB_REFUND).count() == 1
    assert files_under(media) == []
    page = text(client.get(f"/jobs/{job.pk}/"))
    assert "This job was cancelled and its 1 credit refunded." in page
    assert "1 credit, 1 refunded" in page


def test_deleting_a_completed_job_keeps_the_job_and_the_charge(user, client, song, media):
    job = completed(client, song)

    response = client.post(f"/jobs/{job.pk}/delete/", follow=True)

    assert "Deleted the files of My Song.wav." in text(response)
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert files_under(media) == []
    assert balance(user) == Decimal("2.00")
    page = text(client.get(f"/jobs/{job.pk}/"))
    assert "The stems of this job were deleted on " in page
    assert '<span class="status status-deleted">Files deleted</span>' in page
    assert "<audio" not in page and "Delete files" not in page


def test_delete_needs_post(client, song):
    job = uploaded(client, song)

    assert client.get(f"/jobs/{job.pk}/delete/").status_code == 405
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING


# --- the live job list ----------------------------------------------------------------


def test_the_job_list_polls_only_while_a_job_is_active(client, song):
    job = uploaded(client, song)

    active = text(client.get("/dashboard/jobs/"))
    assert 'data-poll-url="/dashboard/jobs/"' in active
    assert "Waiting" in active and "<html" not in active
    assert 'data-poll-url="/dashboard/jobs/"' in text(client.get("/dashboard/"))

    client.post(f"/jobs/{job.pk}/delete/")

    finished = text(client.get("/dashboard/jobs/"))
    assert "data-poll-url" not in finished
    assert "Cancelled" in finished


# --- anonymous visitors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/dashboard/"),
        ("get", "/dashboard/jobs/"),
        ("post", "/upload/"),
        ("get", "/jobs/00000000-0000-0000-0000-000000000000/"),
        ("get", "/jobs/00000000-0000-0000-0000-000000000000/status/"),
        ("get", "/jobs/00000000-0000-0000-0000-000000000000/waveform/vocals.png"),
        ("post", "/jobs/00000000-0000-0000-0000-000000000000/delete/"),
    ],
)
def test_anonymous_visitors_are_sent_to_log_in(db, method, url):
    response = getattr(Client(), method)(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
