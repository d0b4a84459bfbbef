"""The dashboard's job list and form say what a person needs before and after uploading: refunded
jobs show their cost as refunded, finished jobs the date their files go, an account that cannot pay
is warned before it uploads (and told about its free previews), amounts in proper plurals."""

from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import User
from separation.models import Job
from separation.services import job_cancel, job_complete
from tests.conftest import logged_in
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def dashboard(user) -> str:
    return logged_in(user).get("/dashboard/").content.decode()


def test_it_shows_refunded_jobs_as_refunded(user):
    kept = make_job(user, "Kept.wav")
    cancelled = make_job(user, "Cancelled.wav")
    job_cancel(job=cancelled)

    html = dashboard(user)

    row_of = {name: html[html.index(name) :].split("</tr>")[0] for name in ("Kept.wav", "Cancelled.wav")}
    assert 'data-testid="refunded"' in row_of["Cancelled.wav"]
    assert "<del>1</del>" in row_of["Cancelled.wav"]
    assert "refunded" not in row_of["Kept.wav"]
    assert kept.cost == 1


def test_it_shows_when_the_files_of_a_finished_job_are_deleted(settings, user):
    settings.JOB_RETENTION_DAYS = 7
    settings.TIME_ZONE = "UTC"
    job = make_job(user, "Done.wav")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PROCESSING, attempts=1)
    job_complete(job_id=job.pk, attempt=1, stems=[], zip_file="", storage_bytes=0)
    job.refresh_from_db()

    html = dashboard(user)

    expires = timezone.localtime(job.finished_at + timezone.timedelta(days=7))
    assert f'datetime="{expires.isoformat()}"' in html
    assert expires.strftime("%Y-%m-%d %H:%M UTC") in html


def test_it_warns_an_account_that_cannot_pay_before_it_uploads(settings):
    settings.PREVIEWS_PER_DAY = 0
    broke = UserFactory()
    User.objects.filter(pk=broke.pk).update(credits=0)

    html = dashboard(broke)

    assert 'data-testid="credits-warning"' in html
    assert "You have 0 credits: a song costs at least 1." in html
    assert '<button type="submit" disabled>Upload and separate</button>' in html


def test_it_offers_a_free_preview_to_an_account_that_cannot_pay(settings):
    settings.PREVIEWS_PER_DAY = 2
    broke = UserFactory()
    User.objects.filter(pk=broke.pk).update(credits=0)

    html = dashboard(broke)

    assert "You can still try a free preview" in html
    assert "2 free previews left today" in html
    assert '<button type="submit">Upload and separate</button>' in html


def test_it_does_not_warn_an_account_that_can_pay(user):
    assert "credits-warning" not in dashboard(user)


def test_it_writes_credits_in_proper_plurals():
    one = UserFactory()
    User.objects.filter(pk=one.pk).update(credits=Decimal(1))

    assert '<span data-testid="balance">1</span> credit\n' in dashboard(one)
    assert '<span data-testid="balance">3</span> credits\n' in dashboard(UserFactory())


def test_it_says_on_the_pricing_page_when_files_are_deleted(settings, client):
    settings.JOB_RETENTION_DAYS = 14

    html = client.get("/").content.decode()

    assert "kept for 14 days after a separation ends, then deleted" in html
