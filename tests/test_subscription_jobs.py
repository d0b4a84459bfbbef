"""Jobs while a subscription is active: no credits spent, each still in the ledger (a zero row naming
the subscription), within the documented fair use (hours of audio a period, one covered job
running at a time); past it, jobs cost credits as usual rather than being refused."""

import uuid
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from credits.models import CreditTransaction, Subscription, SubscriptionUse
from credits.services import ledger_append
from credits.subscriptions import subscription_seconds_used
from separation.models import Job
from separation.scheduling import job_claim_next
from separation.services import job_complete, job_fail
from testkit.stripe import assert_ledger_consistent
from tests.conftest import balance
from tests.jobs import make_job, refunds
from tests.stripe_billing import configure_subscriptions, subscribed

Kind = CreditTransaction.Kind

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


@pytest.fixture(autouse=True)
def _subscriptions(settings):
    configure_subscriptions(settings)
    yield
    assert_ledger_consistent()


def _spend_everything(user):
    left = balance(user)
    if left:
        ledger_append(user_id=user.pk, amount=-left, kind=Kind.JOB_CHARGE, description="spent", reference="job:spent")


def test_an_upload_while_subscribed_costs_nothing_and_is_recorded_in_the_ledger(user, user_client, song):
    subscription_id, _ = subscribed(user)
    _spend_everything(user)

    response = user_client.post("/api/upload", {"file": SimpleUploadedFile("song.wav", song)}, format="multipart")

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert balance(user) == 0
    row = CreditTransaction.objects.get(kind=Kind.SUBSCRIPTION_JOB)
    assert (row.amount, row.balance_after, row.user_id) == (Decimal(0), Decimal(0), user.pk)
    assert row.reference == f"subscription:{subscription_id}:job:{job.pk}"
    assert "covered by your unlimited plan" in row.description
    assert not CreditTransaction.objects.filter(kind=Kind.JOB_CHARGE, reference=f"job:{job.pk}").exists()
    history = user_client.get("/api/credits/history").json()["results"]
    assert history[0]["kind"] == "subscription_job" and history[0]["amount"] == "0.00"


def test_past_the_fair_use_bound_a_job_costs_credits(settings, user):
    settings.SUBSCRIPTION_FAIR_USE_HOURS = 1
    subscribed(user)
    start = balance(user)
    first = make_job(user)  # 2 s, covered
    subscription = Subscription.objects.get()
    # Another job's audio earlier in the period, up to 3 s short of the hour.
    SubscriptionUse.objects.create(subscription=subscription, job_id=uuid.uuid4(), seconds=3597.0)

    second = make_job(user)

    assert CreditTransaction.objects.filter(kind=Kind.SUBSCRIPTION_JOB, reference__endswith=str(first.pk)).exists()
    assert CreditTransaction.objects.get(kind=Kind.JOB_CHARGE, reference=f"job:{second.pk}").amount == -second.cost
    assert balance(user) == start - second.cost


def test_past_the_bound_without_credits_the_upload_says_so(settings, user, user_client, song):
    settings.SUBSCRIPTION_FAIR_USE_HOURS = 1
    subscribed(user)
    _spend_everything(user)
    SubscriptionUse.objects.create(subscription=Subscription.objects.get(), job_id=uuid.uuid4(), seconds=3599.0)

    response = user_client.post("/api/upload", {"file": SimpleUploadedFile("song.wav", song)}, format="multipart")

    assert response.status_code == 402
    assert "credits" in response.json()["detail"].lower()
    assert not Job.objects.exists()


def test_a_failed_covered_job_refunds_nothing_and_its_audio_no_longer_counts(user):
    subscribed(user)
    start = balance(user)
    job = make_job(user)
    subscription = Subscription.objects.get()
    assert subscription_seconds_used(subscription=subscription) == pytest.approx(2.0, abs=0.01)

    job_fail(job_id=job.pk, error="boom")

    assert balance(user) == start
    assert not refunds(job).exists()
    assert subscription_seconds_used(subscription=subscription) == 0


def test_covered_jobs_of_one_owner_run_one_at_a_time_and_paid_ones_are_not_held_back(settings, user):
    settings.MAX_RUNNING_JOBS_PER_USER = 3
    paid = make_job(user, "paid.wav")  # before subscribing: charged credits
    subscribed(user)
    first, second = make_job(user, "first.wav"), make_job(user, "second.wav")

    claims = [job_claim_next(), job_claim_next(), job_claim_next()]

    assert [job and job.pk for job in claims] == [paid.pk, first.pk, None]
    job_complete(job_id=first.pk, attempt=1, stems=[], zip_file="", storage_bytes=0)
    assert job_claim_next().pk == second.pk
