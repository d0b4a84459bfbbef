"""One user cannot hold every worker: waiting jobs start round-robin by user (oldest first within
a user), at most MAX_RUNNING_JOBS_PER_USER of one user's at once, decided by the database when a
worker asks; the status shows a waiting job's place in the queue."""

import pytest

from separation.models import Job
from separation.scheduling import job_claim_next, job_queue_positions
from separation.services import job_complete
from separation.tasks import separate_next_job
from tests.conftest import bearer_client, logged_in
from tests.factories import UserFactory
from tests.jobs import make_job
from tests.threads import run_together

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("demo_model")]


def upload_several(user, count: int) -> list[Job]:
    from credits.models import CreditTransaction
    from credits.services import ledger_append

    ledger_append(
        user_id=user.pk, amount=count, kind=CreditTransaction.Kind.ADMIN_GRANT, description="test", reference=""
    )
    return [make_job(user, name=f"{user.username}-{index}.wav") for index in range(count)]


@pytest.mark.django_db
def test_another_users_song_runs_before_the_rest_of_a_long_batch():
    a, b = UserFactory(username="alice"), UserFactory(username="bob")
    batch = upload_several(a, 5)
    single = make_job(b, name="bob.wav")

    for _ in range(6):
        separate_next_job()  # one worker: each job runs to its end before the next starts

    order = [job.original_filename for job in Job.objects.order_by("started_at")]
    assert order == ["alice-0.wav", "bob.wav", "alice-1.wav", "alice-2.wav", "alice-3.wav", "alice-4.wav"]
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.COMPLETED}
    assert len(batch) == 5 and single.pk


@pytest.mark.django_db
def test_one_user_runs_at_most_the_limit_at_once_while_others_start(settings):
    settings.MAX_RUNNING_JOBS_PER_USER = 2
    a, b = UserFactory(), UserFactory()
    upload_several(a, 4)

    first, second = job_claim_next(), job_claim_next()
    assert {first.user_id, second.user_id} == {a.pk}
    assert job_claim_next() is None  # a's other jobs wait although a worker is free

    b_job = make_job(b)
    assert job_claim_next().pk == b_job.pk
    job_complete(job_id=first.pk, attempt=first.attempts, stems=[], zip_file="", storage_bytes=0)
    assert job_claim_next().user_id == a.pk  # a slot freed


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_keep_to_the_limit(settings):
    settings.MAX_RUNNING_JOBS_PER_USER = 2
    a = UserFactory()
    upload_several(a, 6)

    claimed = run_together(*[job_claim_next for _ in range(6)])

    assert not any(isinstance(result, BaseException) for result in claimed), claimed
    assert len([job for job in claimed if job is not None]) == 2
    assert Job.objects.filter(status=Job.Status.PROCESSING).count() == 2


@pytest.mark.django_db
def test_the_status_and_the_job_page_show_the_place_in_the_queue():
    a, b = UserFactory(), UserFactory()
    first, second, third = upload_several(a, 3)
    other = make_job(b)

    # Round-robin: a's first, b's, then a's second and third.
    assert job_queue_positions(jobs=[first, second, third, other]) == {
        first.pk: 1,
        other.pk: 2,
        second.pk: 3,
        third.pk: 4,
    }
    status = bearer_client(a).get(f"/api/status/{third.pk}").json()
    assert status["queue_position"] == 4
    assert bearer_client(b).get(f"/api/status/{other.pk}").json()["queue_position"] == 2
    listed = {job["job_id"]: job["queue_position"] for job in bearer_client(a).get("/api/jobs").json()["results"]}
    assert listed == {str(first.pk): 1, str(second.pk): 3, str(third.pk): 4}
    page = logged_in(a).get(f"/jobs/{third.pk}/").content.decode()
    assert "4th in the queue" in page

    job_claim_next()
    assert bearer_client(a).get(f"/api/status/{first.pk}").json()["queue_position"] is None  # running
