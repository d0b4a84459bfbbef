"""A delivery that fails (receiver down, non-2xx, too slow) is retried with exponential backoff
for more than a day, each attempt recorded; an endpoint failing for days is disabled and its owner
mailed; the owner can resend. A real receiver on loopback; time passes by moving due times back."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks import Webhook

from separation.services import job_fail
from tests.factories import UserFactory
from tests.jobs import make_job
from tests.webhook_receiver import Receiver
from webhooks import services, tasks
from webhooks.models import Delivery, Endpoint

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def failed_job(user):
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")
    job.refresh_from_db()
    return job


def make_due(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def attempts(delivery: Delivery) -> list[tuple[int, int | None, bool]]:
    return [(row.number, row.status_code, bool(row.error)) for row in delivery.attempt_rows.order_by("number")]


def test_it_retries_after_the_receiver_was_down(receiver, media):
    user = UserFactory()
    endpoint = services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    receiver.stop()  # down: nothing listens on its port
    job = failed_job(user)

    before = timezone.now()
    assert tasks.job_finished(str(job.pk)) == 0
    delivery = Delivery.objects.get(job=job)
    assert delivery.status == Delivery.Status.PENDING
    assert attempts(delivery) == [(1, None, True)]
    assert "Could not connect" in delivery.attempt_rows.get().error
    assert before + timedelta(seconds=59) < delivery.next_attempt_at < timezone.now() + timedelta(seconds=61)
    assert tasks.deliveries_send_due() == {"sent": 0, "succeeded": 0}  # not due yet

    receiver.start()  # back, on the same port
    make_due(delivery)
    assert tasks.deliveries_send_due() == {"sent": 1, "succeeded": 1}

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert delivery.next_attempt_at is None
    assert attempts(delivery) == [(1, None, True), (2, 200, False)]
    [request] = receiver.received
    assert request.headers["webhook-id"] == delivery.message_id
    assert Webhook(endpoint.secret).verify(request.body, request.headers)["data"]["job_id"] == str(job.pk)
    assert tasks.deliveries_send_due() == {"sent": 0, "succeeded": 0}


def test_it_waits_twice_as_long_after_each_failure_for_more_than_a_day(receiver, media, settings):
    assert [services.backoff_seconds(n) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    total = sum(services.backoff_seconds(n) for n in range(1, settings.WEBHOOK_MAX_ATTEMPTS))
    assert settings.WEBHOOK_MAX_ATTEMPTS == 12 and total == 122_820  # 34 hours
    assert total > 24 * 3600

    settings.WEBHOOK_MAX_ATTEMPTS = 4
    receiver.status = 500
    user = UserFactory()
    services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    job = failed_job(user)
    tasks.job_finished(str(job.pk))
    delivery = Delivery.objects.get(job=job)
    waits = []
    for number in (1, 2, 3):
        delivery.refresh_from_db()
        recorded = delivery.attempt_rows.get(number=number)
        waits.append(round((delivery.next_attempt_at - recorded.started_at).total_seconds()))
        make_due(delivery)
        assert tasks.deliveries_send_due() == {"sent": 1, "succeeded": 0}

    assert waits == [60, 120, 240]
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED  # the fourth and last attempt failed
    assert delivery.next_attempt_at is None
    assert attempts(delivery) == [(n, 500, True) for n in (1, 2, 3, 4)]
    assert delivery.attempt_rows.get(number=4).error == "Answered 500"
    assert len(receiver.received) == 4
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 1


def test_it_records_a_receiver_that_answers_too_slowly(receiver, media, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    receiver.delay = 2
    user = UserFactory()
    services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    job = failed_job(user)

    tasks.job_finished(str(job.pk))

    attempt = Delivery.objects.get(job=job).attempt_rows.get()
    assert attempt.status_code is None
    assert attempt.error == "No answer within 0.5 s"
    assert 400 <= attempt.duration_ms < 1500
    assert Delivery.objects.get(job=job).status == Delivery.Status.PENDING


def test_it_disables_an_endpoint_failing_for_days_and_mails_its_owner(
    receiver, media, settings, django_capture_on_commit_callbacks
):
    receiver.status = 503
    user = UserFactory(email="owner@example.com")
    endpoint = services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    first = failed_job(user)
    tasks.job_finished(str(first.pk))
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.failing_since is not None  # one failure disables nothing
    assert mail.outbox == []

    # Still failing five days later (WEBHOOK_DISABLE_AFTER_DAYS), on another job's delivery.
    Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=5, minutes=1))
    second = failed_job(user)
    with django_capture_on_commit_callbacks(execute=True):  # the mail goes once the disabling commits
        tasks.job_finished(str(second.pk))

    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.disabled_at is not None
    assert {row.status for row in Delivery.objects.filter(endpoint=endpoint)} == {Delivery.Status.FAILED}
    [message] = mail.outbox
    assert message.to == ["owner@example.com"]
    assert "disabled" in message.subject
    assert receiver.url in message.body

    # Nothing more is sent to it, nor made for it, until its owner enables it again.
    third = failed_job(user)
    assert tasks.job_finished(str(third.pk)) == 0
    assert not Delivery.objects.filter(job=third).exists()
    Delivery.objects.filter(endpoint=endpoint).update(status=Delivery.Status.PENDING, next_attempt_at=timezone.now())
    sent = len(receiver.received)
    assert tasks.deliveries_send_due() == {"sent": 0, "succeeded": 0}
    assert len(receiver.received) == sent

    receiver.status = 200
    services.endpoint_enable(endpoint=endpoint)
    fourth = failed_job(user)
    assert tasks.job_finished(str(fourth.pk)) == 1
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_it_resends_a_delivery_on_its_owners_request(receiver, media):
    user = UserFactory()
    services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    job = failed_job(user)
    tasks.job_finished(str(job.pk))
    delivery = Delivery.objects.get(job=job)
    assert delivery.status == Delivery.Status.SUCCEEDED

    services.delivery_resend(delivery=delivery)
    assert tasks.delivery_send(str(delivery.pk)) is True

    delivery.refresh_from_db()
    assert attempts(delivery) == [(1, 200, False), (2, 200, False)]
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery.message_id] * 2
    assert receiver.received[0].body == receiver.received[1].body


def test_it_sends_a_due_attempt_once_when_two_senders_claim_it(receiver, media):
    user = UserFactory()
    services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    job = failed_job(user)
    [delivery] = services.deliveries_create_for_job(job=job)

    assert services.delivery_claim(delivery_id=delivery.pk) is not None
    assert services.delivery_claim(delivery_id=delivery.pk) is None
    assert services.delivery_send(delivery_id=delivery.pk) is None
    services.delivery_resend(delivery=delivery)  # the owner's resend does not double an attempt under way
    assert services.delivery_claim(delivery_id=delivery.pk) is None
    assert receiver.received == []
    # Made once, however often the job's task runs.
    assert services.deliveries_create_for_job(job=job) == [delivery]
    assert Delivery.objects.filter(job=job).count() == 1


def test_a_slow_receiver_holds_the_maintenance_cluster_only_for_the_send_budget(receiver, media, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    receiver.status, receiver.delay = 500, 0.5
    user = UserFactory()
    for index in range(3):
        services.endpoint_create(user=user, url=f"{receiver.url}/{index}", events=["job.failed"])
    job = failed_job(user)
    deliveries = services.deliveries_create_for_job(job=job)
    assert len(deliveries) == 3

    started = time.monotonic()
    assert services.deliveries_send_due(budget_seconds=0.2) == {"sent": 1, "succeeded": 0}
    assert time.monotonic() - started < 1.5
    assert len(receiver.received) == 1
    assert services.deliveries_send_due(budget_seconds=10) == {"sent": 2, "succeeded": 0}  # the rest, next run
