"""The short mails when a job completes or fails (with its refund), the opt-out on the account
page and in the API, and a mail server that fails never failing the job or its refund."""

import io
import math
import socket
import struct
import wave
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail
from django.core.files.uploadedfile import TemporaryUploadedFile

from accounts.models import User
from credits.models import CreditTransaction
from separation import engine
from separation.catalog import model_get
from separation.models import Job
from separation.services import job_create, job_fail, job_run
from separation.uploads import upload_validate
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ERROR = "The separation failed unexpectedly. Your credits were refunded; please try again."


def wav_bytes(seconds: float = 2.0, samplerate: int = 44100) -> bytes:
    frames = b"".join(
        struct.pack("<hh", int(8000 * math.sin(2 * math.pi * 220 * n / samplerate)), 0)
        for n in range(int(seconds * samplerate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(samplerate)
        out.writeframes(frames)
    return buffer.getvalue()


def new_job(user, name="My Song.wav") -> Job:
    """Created and charged through job_create, as an upload makes it (never queued here: the
    test transaction is not committed)."""
    content = wav_bytes()
    upload = TemporaryUploadedFile(name, "audio/wav", len(content), None)
    try:
        upload.write(content)
        upload.seek(0)
        job, _ = job_create(
            user=user,
            uploaded_file=upload,
            audio=upload_validate(uploaded_file=upload),
            model=model_get("demo"),
            stem_mode="all",
            output_format="wav",
        )
    finally:
        upload.close()
    return job


def balance(user) -> Decimal:
    return User.objects.values_list("credits", flat=True).get(pk=user.pk)


def html_of(message) -> str:
    return dict((mime, body) for body, mime in message.alternatives)["text/html"]


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SITE_URL = "https://stems.example"
    settings.SITE_NAME = "Stemtest"


@pytest.fixture
def fake_engine(monkeypatch, settings):
    """engine.separate writing tiny files, so job_run runs its real path without Demucs."""

    def separate(*, input_path, output_dir, archive_name, **options):
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True)
        stems, waveforms = {}, {}
        for name in ("drums", "bass", "other", "vocals"):
            stems[name] = output_dir / f"{name}.wav"
            stems[name].write_bytes(b"RIFF")
            waveforms[name] = output_dir / f"{name}.png"
            waveforms[name].write_bytes(b"PNG")
        zip_path = output_dir / f"{archive_name}.zip"
        zip_path.write_bytes(b"PK")
        return engine.SeparationResult(
            stems=stems, waveforms=waveforms, zip_path=zip_path, samplerate=44100, channels=2, frames=88200
        )

    monkeypatch.setattr(engine, "separate", separate)


def test_a_failed_job_mails_its_owner_that_it_was_refunded(user, django_capture_on_commit_callbacks):
    job = new_job(user)
    assert balance(user) == Decimal("2")

    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job_id=job.pk, error=ERROR)

    assert balance(user) == Decimal("3")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    assert message.subject == "The separation of “My Song” failed: your credits were refunded"
    for body in (message.body, html_of(message)):
        assert "My Song.wav" in body
        assert "refunded" in body
        assert "your balance is 3 credits" in body
        assert f"https://stems.example/jobs/{job.pk}/" in body
        assert "https://stems.example/accounts/profile/" in body
    assert "<html" in html_of(message)


def test_a_completed_job_mails_its_owner(user, fake_engine, django_capture_on_commit_callbacks):
    job = new_job(user, name="Tune.wav")

    with django_capture_on_commit_callbacks(execute=True):
        job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "Your stems for “Tune” are ready"
    for body in (message.body, html_of(message)):
        assert "drums, bass, other, vocals" in body
        assert f"https://stems.example/jobs/{job.pk}/" in body


def test_no_link_without_site_url(user, settings, django_capture_on_commit_callbacks):
    settings.SITE_URL = ""
    job = new_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job_id=job.pk, error=ERROR)

    assert "http" not in mail.outbox[0].body


def test_the_owner_can_turn_the_mails_off(fake_engine, django_capture_on_commit_callbacks):
    user = UserFactory(email_on_job_finished=False)
    failing, completing = new_job(user), new_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job_id=failing.pk, error=ERROR)
        job_run(job_id=completing.pk)

    assert Job.objects.get(pk=completing.pk).status == Job.Status.COMPLETED
    assert mail.outbox == []


def test_a_cancelled_or_already_failed_job_sends_nothing_more(user, django_capture_on_commit_callbacks):
    job = new_job(user)
    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job_id=job.pk, error=ERROR)
        assert job_fail(job_id=job.pk, error=ERROR) is None

    assert len(mail.outbox) == 1


def test_the_mail_waits_for_the_commit(user, django_capture_on_commit_callbacks):
    job = new_job(user)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job_fail(job_id=job.pk, error=ERROR)
        assert mail.outbox == []

    assert len(callbacks) == 1


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def test_a_failing_mail_server_never_fails_the_job_or_its_refund(
    user, settings, caplog, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = closed_port()
    settings.EMAIL_TIMEOUT = 5
    job = new_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        failed = job_fail(job_id=job.pk, error=ERROR)

    assert failed is not None
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert CreditTransaction.objects.filter(reference=f"job:{job.pk}", kind="job_refund").count() == 1
    assert balance(user) == Decimal("3")
    assert "Could not send the job mail" in caplog.text


def test_a_failing_mail_server_never_fails_a_completed_job(
    user, settings, fake_engine, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = closed_port()
    job = new_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        job_run(job_id=job.pk)

    assert Job.objects.get(pk=job.pk).status == Job.Status.COMPLETED


# --- the preference -----------------------------------------------------------------------


def test_the_account_page_shows_the_checkbox_and_saves_it(client, user):
    client.force_login(user)

    html = client.get("/accounts/profile/").content.decode()
    assert 'type="checkbox" name="email_on_job_finished"' in html
    assert "checked" in html.split('name="email_on_job_finished"', 1)[1].split(">", 1)[0]

    response = client.post("/accounts/profile/", {}, follow=True)

    assert response.redirect_chain[-1][0] == "/accounts/profile/"
    assert "Your email preferences were saved." in response.content.decode()
    user.refresh_from_db()
    assert user.email_on_job_finished is False

    client.post("/accounts/profile/", {"email_on_job_finished": "on"})
    user.refresh_from_db()
    assert user.email_on_job_finished is True


def test_the_api_shows_and_changes_the_preference(user_client, user):
    assert user_client.get("/api/auth/me").json()["email_on_job_finished"] is True

    response = user_client.patch("/api/auth/me", {"email_on_job_finished": False}, format="json")

    assert response.status_code == 200
    assert response.json()["email_on_job_finished"] is False
    user.refresh_from_db()
    assert user.email_on_job_finished is False
    assert user_client.patch("/api/auth/me", {"email_on_job_finished": "maybe"}, format="json").status_code == 400
    assert user_client.patch("/api/auth/me", {}, format="json").json()["email_on_job_finished"] is False
