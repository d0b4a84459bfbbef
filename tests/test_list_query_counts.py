"""Every list costs a fixed number of queries: the same with 1 row as with 100 (no N+1).

Covers the API lists (`/api/jobs`, `/api/credits/history`), the list pages (dashboard, its polled
partial, the credits page) and the admin changelists (jobs, users, credit transactions, payments,
payment reversals). `/api/models` and `/api/credits/packages` list settings and files, not rows.
"""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from credits.models import CreditTransaction, Payment, PaymentReversal
from credits.services import ledger_append
from separation.models import Job
from tests.conftest import bearer_client, logged_in
from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]

MANY = 100


def grant(user, amount="100.00"):
    ledger_append(user_id=user.pk, amount=Decimal(amount), kind=CreditTransaction.Kind.ADMIN_GRANT, description="x")


def add_jobs(user, count: int):
    """`count` jobs for `user`: the first through the upload path (make_job), the rest copies of it
    in every status, the completed ones with stems and a zip (what the serializers render)."""
    grant(user)
    template = make_job(user)
    statuses = list(Job.Status)
    stems = [{"name": name, "file": f"x/{name}.wav", "waveform": f"x/{name}.png"} for name in ("drums", "vocals")]
    copies = []
    for index in range(count - 1):
        status = statuses[index % len(statuses)]
        completed = status == Job.Status.COMPLETED
        copies.append(
            Job(
                user=user,
                original_filename=f"song {index}.wav",
                input_file=template.input_file,
                model=template.model,
                cost=template.cost,
                duration_seconds=template.duration_seconds,
                status=status,
                progress=100 if completed else 40,
                stems=stems if completed else [],
                zip_file="x/stems.zip" if completed else "",
                started_at=timezone.now(),
                finished_at=timezone.now() if status in Job.FINISHED else None,
                error="It failed." if status == Job.Status.FAILED else "",
            )
        )
    Job.objects.bulk_create(copies)
    assert Job.objects.filter(user=user).count() == count


def add_transactions(user, count: int):
    """Rows beyond the signup bonus the user already has."""
    for _ in range(count - CreditTransaction.objects.filter(user=user).count()):
        grant(user, "1.00")
    assert CreditTransaction.objects.filter(user=user).count() == count


def add_payments(user, count: int):
    for index in range(count):
        Payment.objects.create(
            provider="stripe",
            provider_session_id=f"cs_test_{user.pk}_{index}",
            payment_intent_id=f"pi_{user.pk}_{index}",
            user=user,
            pack_id="starter",
            credits=Decimal(5),
            amount=Decimal("1.00"),
            currency="usd",
            status=Payment.Status.PAID,
        )
        PaymentReversal.objects.create(
            provider="stripe",
            provider_reversal_id=f"refund:ch_{user.pk}_{index}",
            kind=PaymentReversal.Kind.REFUND,
            payment_intent_id=f"pi_{user.pk}_{index}",
            amount=Decimal("1.00"),
            currency="usd",
        )


def add_owing_users(_user, count: int):
    """`count` users who each owe credits on a disputed payment."""
    for owing in UserFactory.create_batch(count - Payment.objects.filter(credits_shortfall__gt=0).count()):
        Payment.objects.create(
            provider="stripe",
            provider_session_id=f"cs_test_owing_{owing.pk}",
            user=owing,
            pack_id="starter",
            credits=Decimal(5),
            amount=Decimal("1.00"),
            currency="usd",
            status=Payment.Status.DISPUTED,
            credits_shortfall=Decimal(5),
        )
    assert Payment.objects.filter(credits_shortfall__gt=0).count() == count


def add_users(_user, count: int):
    """`count` users in all (the admin who looks is one of them)."""
    UserFactory.create_batch(count - User.objects.count())
    assert User.objects.count() == count


def queries_for(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return [query["sql"] for query in captured.captured_queries]


def assert_same_count(make_client, add_rows, url: str, owner):
    """Queries for `url` with 1 row, then with MANY rows of the same owner's data."""
    client = make_client()
    add_rows(owner, 1)
    queries_for(client, url)  # warm: session, content types, caches
    one = queries_for(client, url)
    reset_rows(add_rows, owner)
    add_rows(owner, MANY)
    many = queries_for(client, url)
    assert len(many) == len(one), f"{url}: {len(one)} queries with 1 row, {len(many)} with {MANY}:\n" + "\n".join(many)


def reset_rows(add_rows, owner):
    """Drop the rows `add_rows` made, so it can make MANY from scratch."""
    if add_rows is add_jobs:
        Job.objects.filter(user=owner).delete()
    elif add_rows is add_payments:
        PaymentReversal.objects.all().delete()
        Payment.objects.filter(user=owner).delete()
    elif add_rows is add_owing_users:
        Payment.objects.all().delete()


API_LISTS = [
    ("/api/jobs", add_jobs),
    ("/api/credits/history", add_transactions),
]
PAGE_LISTS = [
    ("/dashboard/", add_jobs),
    ("/dashboard/jobs/", add_jobs),
    ("/credits/", add_transactions),
]
ADMIN_LISTS = [
    ("/admin/separation/job/", add_jobs),
    ("/admin/accounts/user/", add_users),
    ("/admin/credits/credittransaction/", add_transactions),
    ("/admin/credits/payment/", add_payments),
    ("/admin/credits/paymentreversal/", add_payments),
    ("/admin/credits/accountowing/", add_owing_users),
]


@pytest.mark.parametrize(("url", "add_rows"), API_LISTS, ids=[url for url, _ in API_LISTS])
def test_api_list_queries_do_not_grow_with_rows(user, url, add_rows):
    assert_same_count(lambda: bearer_client(user), add_rows, url, user)


@pytest.mark.parametrize(("url", "add_rows"), PAGE_LISTS, ids=[url for url, _ in PAGE_LISTS])
def test_list_page_queries_do_not_grow_with_rows(user, url, add_rows):
    assert_same_count(lambda: logged_in(user), add_rows, url, user)


@pytest.mark.parametrize(("url", "add_rows"), ADMIN_LISTS, ids=[url for url, _ in ADMIN_LISTS])
def test_admin_changelist_queries_do_not_grow_with_rows(admin_user, url, add_rows):
    assert_same_count(lambda: logged_in(admin_user), add_rows, url, admin_user)


def test_the_lists_show_the_rows(user):
    """The counts above are of lists that render their rows: 20 to a page in the API."""
    add_jobs(user, MANY)
    add_transactions(user, MANY)
    client = bearer_client(user)
    jobs = client.get("/api/jobs").json()
    history = client.get("/api/credits/history").json()
    assert jobs["count"] == MANY and len(jobs["results"]) == 20
    assert history["count"] == MANY and len(history["results"]) == 20
    completed = next(job for job in jobs["results"] if job["status"] == "COMPLETED")
    assert completed["download_url"] and [stem["name"] for stem in completed["stem_files"]] == ["drums", "vocals"]


@pytest.mark.parametrize("stems", [[], ["drums", "vocals"], ["no_vocals", "gu itar", "a+b", "ü"]])
@pytest.mark.parametrize("zip_file", ["", "x/stems.zip"])
def test_job_output_written_out_is_what_its_declared_fields_give(user, rf, stems, zip_file):
    """JobOutput.to_representation skips DRF's per-serializer field copies (the status endpoint is
    polled); it must still say exactly what the declared fields, which the schema shows, say."""
    from rest_framework import serializers
    from rest_framework.request import Request

    from separation.serializers import JobOutput

    add_jobs(user, 3)
    request = Request(rf.get("/api/jobs"))
    for job in Job.objects.filter(user=user):
        job.stems = [{"name": name, "file": f"x/{name}.wav", "waveform": f"x/{name}.png"} for name in stems]
        job.zip_file = zip_file
        fast = JobOutput(job, context={"request": request}).data
        declared = serializers.Serializer.to_representation(JobOutput(job, context={"request": request}), job)
        assert fast == dict(declared)
