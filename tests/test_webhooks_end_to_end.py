"""End to end: the live server, a real separation qcluster running Demucs with the demo model,
a real maintenance qcluster sending webhooks, and a receiver on loopback that verifies every
delivery with the standardwebhooks library. The receiver is down when the job completes; the
delivery is retried (the due-deliveries task queued as its schedule does) once it is back."""

import json

import pytest
from django_q.tasks import async_task
from standardwebhooks import Webhook

from testkit.audio import write_wav
from testkit.http import get, post_json, wait_until
from tests import e2e
from tests.webhook_receiver import Receiver
from webhooks.models import Delivery

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_completed_job_reaches_a_receiver_that_was_down_verified(live_server, cluster_factory, tmp_path, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the live server accepts the loopback receiver
    base = live_server.url
    cluster_factory("separation")
    cluster_factory(
        "maintenance", Q_CLUSTER_NAME="maintenance", WEBHOOK_ALLOW_PRIVATE="1", WEBHOOK_RETRY_BASE_SECONDS="1"
    )
    receiver = Receiver().start()
    receiver.stop()  # down: its port is known, nothing listens
    token = e2e.register(base, "webhook_listener")

    registered = post_json(f"{base}/api/webhooks", {"url": receiver.url, "events": ["job.completed"]}, token)
    assert registered.status == 201, registered.body
    secret = registered.json()["secret"]
    accepted = e2e.upload(base, token, write_wav(tmp_path / "hook.wav", 5), callback_url=f"{receiver.url}/once")
    assert accepted.status == 202, accepted.body
    job_id = accepted.json()["job_id"]
    callback_secret = accepted.json()["callback_secret"]

    def attempted():
        deliveries = list(Delivery.objects.filter(job_id=job_id))
        return len(deliveries) == 2 and all(delivery.attempts >= 1 for delivery in deliveries)

    wait_until(attempted, timeout=120, interval=0.5, message="the first attempts, to a receiver that is down")
    assert get(f"{base}/api/status/{job_id}", token).json()["status"] == "COMPLETED"
    listed = get(f"{base}/api/webhooks/deliveries?job={job_id}", token).json()["results"]
    assert {delivery["status"] for delivery in listed} == {"PENDING"}
    assert all(delivery["attempts"][0]["error"].startswith("Could not connect") for delivery in listed)

    receiver.start()
    try:
        async_task("webhooks.tasks.deliveries_send_due", cluster=settings.MAINTENANCE_CLUSTER)  # as its schedule does
        wait_until(lambda: len(receiver.received) >= 2, timeout=60, message="the retried deliveries")
    finally:
        receiver.stop()

    by_path = {request.path: request for request in receiver.received}
    assert set(by_path) == {"/hooks/stemfold", "/hooks/stemfold/once"}
    registered_payload = Webhook(secret).verify(by_path["/hooks/stemfold"].body, by_path["/hooks/stemfold"].headers)
    callback_payload = Webhook(callback_secret).verify(
        by_path["/hooks/stemfold/once"].body, by_path["/hooks/stemfold/once"].headers
    )
    status = get(f"{base}/api/status/{job_id}", token).json()
    for payload in (registered_payload, callback_payload):
        assert payload["type"] == "job.completed"
        assert payload["data"]["job_id"] == job_id
        assert payload["data"]["status"] == "COMPLETED"
        assert {stem["name"] for stem in payload["data"]["stem_files"]} == {
            stem["name"] for stem in status["stem_files"]
        }
    assert json.loads(by_path["/hooks/stemfold"].body) == registered_payload
    listed = get(f"{base}/api/webhooks/deliveries?job={job_id}", token).json()["results"]
    assert {delivery["status"] for delivery in listed} == {"SUCCEEDED"}
    assert all([attempt["status_code"] for attempt in delivery["attempts"]] == [None, 200] for delivery in listed)
