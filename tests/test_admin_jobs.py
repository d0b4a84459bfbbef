"""The Job admin: a read-only list with filters and search, a refund action through the ledger
(once per job) and a requeue action for failed jobs (a free retry); no adding or deleting."""

from pathlib import Path

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from credits.models import CreditTransaction
from credits.selectors import ledger_violations
from separation.models import Job
from separation.scheduling import job_claim_next
from separation.services import job_complete, job_fail
from tests.conftest import balance, logged_in
from tests.factories import UserFactory
from tests.jobs import make_job, refunds, tokens_queued

Kind = CreditTransaction.Kind
Status = Job.Status
JOBS_URL = "/admin/separation/job/"

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def failed_job(user, name="song.wav", error="The separation failed unexpectedly.") -> Job:
    job = make_job(user, name)
    job_claim_next()
    job_fail(job_id=job.pk, error=error)
    job.refresh_from_db()
    return job


def run_action(client, action, *jobs):
    """Post an admin action and follow its redirect, so its messages are shown (and consumed)."""
    return client.post(JOBS_URL, {"action": action, ACTION_CHECKBOX_NAME: [str(job.pk) for job in jobs]}, follow=True)


def run_action_page(client, action, *jobs):
    """Post an admin action that answers with a page of its own (a confirmation)."""
    return client.post(JOBS_URL, {"action": action, ACTION_CHECKBOX_NAME: [str(job.pk) for job in jobs]})


def refund_action(client, *jobs, reason="The song was not separated well"):
    """The refund action confirmed with a reason, as its confirmation page posts it."""
    data = {"action": "refund", "apply": "1", "reason": reason, ACTION_CHECKBOX_NAME: [str(job.pk) for job in jobs]}
    return client.post(JOBS_URL, data, follow=True)


def messages_of(response) -> list[str]:
    assert response.redirect_chain == [(JOBS_URL, 302)]
    return [str(message) for message in response.context["messages"]]


# --- the list -------------------------------------------------------------------------


def test_it_lists_filters_and_searches_jobs(admin_client):
    alice = UserFactory(username="alice")
    bob = UserFactory(username="bob")
    done = make_job(alice, "Sunny Day.wav", output_format="flac")
    job_claim_next()
    job_complete(job_id=done.pk, attempt=1, stems=[], zip_file="", storage_bytes=0)
    broken = failed_job(bob, "Rainy Night.wav", error="The file could not be decoded as audio.")
    waiting = make_job(bob, "Cloudy.wav")

    def listed(**params):
        response = admin_client.get(JOBS_URL, params)
        assert response.status_code == 200
        return {job.pk for job in response.context["cl"].result_list}

    assert listed() == {done.pk, broken.pk, waiting.pk}
    assert listed(status__exact=Status.FAILED) == {broken.pk}
    assert listed(status__exact=Status.PENDING) == {waiting.pk}
    assert listed(output_format__exact="flac") == {done.pk}
    assert listed(model__exact="demo") == {done.pk, broken.pk, waiting.pk}
    assert listed(created_at__year=timezone.now().year) == {done.pk, broken.pk, waiting.pk}
    assert listed(q="sunny") == {done.pk}
    assert listed(q="bob") == {broken.pk, waiting.pk}
    assert listed(q=alice.email) == {done.pk}
    assert listed(q="decoded") == {broken.pk}
    assert listed(q=str(waiting.pk)) == {waiting.pk}
    assert listed(q="bob", status__exact=Status.FAILED) == {broken.pk}
    html = admin_client.get(JOBS_URL).content.decode()
    assert "Rainy Night.wav" in html and "Cloudy.wav" in html


def test_it_shows_a_job_read_only(admin_client):
    job = failed_job(UserFactory())

    response = admin_client.get(f"{JOBS_URL}{job.pk}/change/")

    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}  # every field is read-only
    admin_client.post(f"{JOBS_URL}{job.pk}/change/", {"status": Status.COMPLETED, "cost": "0.01"})
    assert Job.objects.get(pk=job.pk).status == Status.FAILED


def test_it_cannot_add_or_delete_jobs(admin_client):
    job = make_job(UserFactory())

    assert admin_client.get(f"{JOBS_URL}add/").status_code == 403
    assert admin_client.get(f"{JOBS_URL}{job.pk}/delete/").status_code == 403
    assert admin_client.post(f"{JOBS_URL}{job.pk}/delete/", {"post": "yes"}).status_code == 403
    actions = admin_client.get(JOBS_URL).context["action_form"].fields["action"].choices
    assert [name for name, _ in actions if name] == ["refund", "requeue"]
    response = admin_client.post(JOBS_URL, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [str(job.pk)]})
    assert response.status_code == 302  # "No action selected": it is no action here
    assert Job.objects.filter(pk=job.pk).exists()


# --- refund ---------------------------------------------------------------------------


def test_it_refunds_a_job_through_the_ledger_once(admin_client, admin_user):
    user = UserFactory()
    start = balance(user)
    job = make_job(user, "Paid Song.wav")
    assert balance(user) == start - job.cost

    first = refund_action(admin_client, job)

    assert first.status_code == 200
    assert messages_of(first) == ["Refunded 1 job; 0 had been refunded already."]
    refund = refunds(job).get()
    assert refund.kind == Kind.ADMIN_REFUND
    assert refund.amount == job.cost
    assert refund.description == "Refund for Paid Song.wav: refunded by support"
    assert balance(user) == start

    second = refund_action(admin_client, job)

    assert messages_of(second) == ["Refunded 0 jobs; 1 had been refunded already."]
    assert refunds(job).count() == 1
    assert balance(user) == start
    assert ledger_violations() == []


def test_it_does_not_refund_again_a_job_that_failed_with_its_automatic_refund(admin_client):
    user = UserFactory()
    other = UserFactory()
    start = balance(user)
    broken = failed_job(user)
    charged = make_job(other)

    response = refund_action(admin_client, broken, charged)

    assert messages_of(response) == ["Refunded 1 job; 1 had been refunded already."]
    assert list(refunds(broken).values_list("kind", flat=True)) == [Kind.JOB_REFUND]
    assert list(refunds(charged).values_list("kind", flat=True)) == [Kind.ADMIN_REFUND]
    assert balance(user) == start
    assert ledger_violations() == []


def test_it_asks_for_a_confirmation_and_a_reason_before_refunding(admin_client):
    job = make_job(UserFactory(), "Asked.wav")

    asked = run_action_page(admin_client, "refund", job)
    no_reason = refund_action(admin_client, job, reason="")

    for page in (asked, no_reason):
        assert page.status_code == 200
        assert "Refund jobs" in page.content.decode() and "Asked.wav" in page.content.decode()
    assert "This field is required." in no_reason.content.decode()
    assert not refunds(job).exists()


def test_it_keeps_who_refunded_and_why_from_the_customer(admin_client, admin_user):
    user = UserFactory()
    job = make_job(user, "Kept.wav")

    refund_action(admin_client, job, reason="Customer wrote in: silence")

    entry = LogEntry.objects.get(object_id=str(job.pk))
    assert entry.user == admin_user
    assert entry.get_change_message() == "Refunded 1.00 credits: Customer wrote in: silence"
    ledger = logged_in(user).get("/credits/").content.decode()
    assert "refunded by support" in ledger
    assert admin_user.username not in ledger and "Customer wrote in" not in ledger


# --- requeue --------------------------------------------------------------------------


def test_it_requeues_a_failed_job_as_a_free_retry(admin_client, settings, django_capture_on_commit_callbacks):
    user = UserFactory()
    start = balance(user)
    job = failed_job(user)
    assert (job.status, job.attempts, refunds(job).count()) == (Status.FAILED, 1, 1)
    assert balance(user) == start

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "requeue", job)

    assert messages_of(response) == ["Requeued 1 job; 0 were not failed or have no stored input."]
    job.refresh_from_db()
    assert job.status == Status.PENDING
    # Attempt numbers go on (never reused by a retry): the retry gets JOB_MAX_ATTEMPTS more.
    assert (job.attempts, job.attempt_budget, job.progress, job.error) == (1, 1 + settings.JOB_MAX_ATTEMPTS, 0, "")
    assert job.started_at is None and job.finished_at is None
    assert tokens_queued() == 1
    assert job.enqueued_at is not None
    assert balance(user) == start  # no new charge: the retry is free

    assert job_claim_next().attempts == 2
    assert job_fail(job_id=job.pk, error="Failed again.") is not None

    job.refresh_from_db()
    assert (job.status, job.error) == (Status.FAILED, "Failed again.")
    assert refunds(job).count() == 1  # the first refund stands; nothing more
    assert balance(user) == start
    assert ledger_violations() == []


def test_it_does_not_requeue_a_completed_job_or_one_without_its_input(
    admin_client, settings, django_capture_on_commit_callbacks
):
    user = UserFactory()
    done = make_job(user)
    job_claim_next()
    job_complete(job_id=done.pk, attempt=1, stems=[], zip_file="", storage_bytes=0)
    gone = failed_job(user)
    (Path(settings.MEDIA_ROOT) / gone.input_file).unlink()
    pending = make_job(user)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = run_action(admin_client, "requeue", done, gone, pending)

    assert messages_of(response) == ["Requeued 0 jobs; 3 were not failed or have no stored input."]
    assert callbacks == []
    assert [Job.objects.get(pk=job.pk).status for job in (done, gone, pending)] == [
        Status.COMPLETED,
        Status.FAILED,
        Status.PENDING,
    ]
    assert Job.objects.get(pk=done.pk).attempts == 1
    assert tokens_queued() == 0
