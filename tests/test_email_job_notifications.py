"""The short mails when a job completes or fails (with its refund), the opt-out on the account
page and in the API, and a mail server that fails never failing the job or its refund."""

from decimal import Decimal

import pytest
from django.core import mail

from credits.models import CreditTransaction
from separation.models import Job
from separation.services import job_fail
from separation.tasks import separate_next_job
from testkit.processes import free_port
from tests.conftest import balance
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

ERROR = "The separation failed unexpectedly. Your credits were refunded; please try again."


def html_of(message) -> str:
    return dict((mime, body) for body, mime in message.alternatives)["text/html"]


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = "https://stems.example"
    settings.SITE_NAME = "Stemtest"


def test_a_failed_job_mails_its_owner_that_it_was_refunded(user, django_capture_on_commit_callbacks):
    job = make_job(user)
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


def test_a_completed_job_mails_its_owner(user, django_capture_on_commit_callbacks):
    job = make_job(user, name="Tune.wav")

    with django_capture_on_commit_callbacks(execute=True):
        separate_next_job()

    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "Your stems for “Tune” are ready"
    for body in (message.body, html_of(message)):
        assert "separated into drums, bass, other instruments and vocals." in body
        assert f"https://stems.example/jobs/{job.pk}/" in body


def test_no_link_without_site_url(user, settings, django_capture_on_commit_callbacks):
    settings.SITE_URL = ""
    job = make_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job_id=job.pk, error=ERROR)

    assert "http" not in mail.outbox[0].body


def test_the_owner_can_turn_the_mails_off(django_capture_on_commit_callbacks):
    user = UserFactory(email_on_job_finished=False)
    failing, completing = make_job(user), make_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job_id=failing.pk, error=ERROR)
        separate_next_job()

    assert Job.objects.get(pk=completing.pk).status == Job.Status.COMPLETED
    assert mail.outbox == []


def test_a_cancelled_or_already_failed_job_sends_nothing_more(user, django_capture_on_commit_callbacks):
    job = make_job(user)
    with django_capture_on_commit_callbacks(execute=True):
        job_fail(job_id=job.pk, error=ERROR)
        assert job_fail(job_id=job.pk, error=ERROR) is None

    assert len(mail.outbox) == 1


def test_the_mail_waits_for_the_commit(user, django_capture_on_commit_callbacks):
    job = make_job(user)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job_fail(job_id=job.pk, error=ERROR)
        assert mail.outbox == []

    assert len(callbacks) == 2  # the mail and the job's webhooks (webhooks/events.py)
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 1


def test_a_failing_mail_server_never_fails_the_job_or_its_refund(
    user, settings, caplog, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there
    settings.EMAIL_TIMEOUT = 5
    job = make_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        failed = job_fail(job_id=job.pk, error=ERROR)

    assert failed is not None
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert CreditTransaction.objects.filter(reference=f"job:{job.pk}", kind="job_refund").count() == 1
    assert balance(user) == Decimal("3")
    assert "Could not send the job mail" in caplog.text


def test_a_failing_mail_server_never_fails_a_completed_job(user, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there
    job = make_job(user)

    with django_capture_on_commit_callbacks(execute=True):
        separate_next_job()

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
