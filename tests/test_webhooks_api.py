"""The webhooks API: register, list, show, delete, rotate, enable; deliveries and resend; an
upload's one-off callback_url. Each object is its owner's only: anyone else's is a 404."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_q.models import OrmQ
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from separation.models import Job
from separation.services import job_cancel, job_fail
from separation.tasks import separate_next_job
from tests.conftest import balance, bearer_client
from tests.jobs import make_job
from tests.webhook_receiver import Receiver
from webhooks import tasks
from webhooks.models import Delivery, Endpoint

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def register(client, url, events=None):
    body = {"url": url} if events is None else {"url": url, "events": events}
    return client.post("/api/webhooks", body, format="json")


def test_it_registers_lists_shows_and_deletes_an_endpoint(user_client, receiver):
    created = register(user_client, receiver.url)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["url"] == receiver.url
    assert body["events"] == ["job.cancelled", "job.completed", "job.failed"]  # all by default
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["active"] is True

    listed = user_client.get("/api/webhooks").json()
    assert [endpoint["id"] for endpoint in listed] == [body["id"]]
    assert "secret" not in listed[0]  # shown once
    shown = user_client.get(f"/api/webhooks/{body['id']}").json()
    assert shown["url"] == receiver.url and "secret" not in shown

    assert user_client.delete(f"/api/webhooks/{body['id']}").status_code == 204
    assert user_client.get(f"/api/webhooks/{body['id']}").status_code == 404
    assert user_client.get("/api/webhooks").json() == []


def test_it_refuses_unsafe_urls_unknown_events_and_too_many_endpoints(user_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused = register(user_client, "http://169.254.169.254/latest/meta-data/")
    assert refused.status_code == 400
    assert "not allowed" in refused.json()["detail"]
    assert register(user_client, "ftp://example.com/x").status_code == 400
    assert register(user_client, "https://hooks.example.com/x", ["job.started"]).status_code == 400

    settings.WEBHOOK_MAX_ENDPOINTS = 2
    assert register(user_client, "https://hooks.example.com/1", ["job.completed"]).status_code == 201
    assert register(user_client, "https://hooks.example.com/2").status_code == 201
    third = register(user_client, "https://hooks.example.com/3")
    assert third.status_code == 400
    assert "at most 2" in third.json()["detail"]
    assert Endpoint.objects.count() == 2


def test_it_answers_404_for_someone_elses_endpoints_and_deliveries(user, other_user, receiver, media):
    theirs = bearer_client(other_user)
    endpoint_id = register(theirs, receiver.url).json()["id"]
    their_job = make_job(other_user)
    job_fail(job_id=their_job.pk, error="It broke.")
    tasks.job_finished(str(their_job.pk))
    delivery = Delivery.objects.get(job=their_job)

    mine = bearer_client(user)
    assert mine.get(f"/api/webhooks/{endpoint_id}").status_code == 404
    assert mine.delete(f"/api/webhooks/{endpoint_id}").status_code == 404
    assert mine.post(f"/api/webhooks/{endpoint_id}/rotate-secret").status_code == 404
    assert mine.post(f"/api/webhooks/{endpoint_id}/enable").status_code == 404
    assert mine.post(f"/api/webhooks/deliveries/{delivery.pk}/resend").status_code == 404
    assert mine.get("/api/webhooks").json() == []
    assert mine.get("/api/webhooks/deliveries").json()["results"] == []
    assert mine.get(f"/api/webhooks/deliveries?endpoint={endpoint_id}").json()["results"] == []
    assert Endpoint.objects.filter(pk=endpoint_id).exists()
    assert len(receiver.received) == 1
    assert APIClient().get("/api/webhooks").status_code == 401


def test_it_rotates_the_secret_and_enables_a_disabled_endpoint(user_client, receiver):
    created = register(user_client, receiver.url).json()
    rotated = user_client.post(f"/api/webhooks/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != created["secret"]
    assert Endpoint.objects.get(pk=created["id"]).previous_secret == created["secret"]

    Endpoint.objects.filter(pk=created["id"]).update(is_active=False)
    enabled = user_client.post(f"/api/webhooks/{created['id']}/enable")
    assert enabled.status_code == 200 and enabled.json()["active"] is True


def test_it_lists_deliveries_with_their_attempts_and_resends_one(
    user, user_client, receiver, media, django_capture_on_commit_callbacks
):
    register(user_client, receiver.url, ["job.failed"])
    only_completed = register(user_client, f"{receiver.url}/completed", ["job.completed"]).json()
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")
    tasks.job_finished(str(job.pk))

    [listed] = user_client.get(f"/api/webhooks/deliveries?job={job.pk}").json()["results"]
    assert listed["event"] == "job.failed" and listed["status"] == "SUCCEEDED"
    assert listed["url"] == receiver.url and listed["callback"] is False
    assert [(a["number"], a["status_code"], a["error"]) for a in listed["attempts"]] == [(1, 200, "")]
    assert listed["webhook_id"] == receiver.received[0].headers["webhook-id"]
    assert user_client.get(f"/api/webhooks/deliveries?endpoint={only_completed['id']}").json()["results"] == []

    with django_capture_on_commit_callbacks(execute=True):
        resent = user_client.post(f"/api/webhooks/deliveries/{listed['id']}/resend")
    assert resent.status_code == 202 and resent.json()["status"] == "PENDING"
    [queued] = [row.task for row in OrmQ.objects.all() if row.task.get("func") == "webhooks.tasks.delivery_send"]
    assert list(queued["args"]) == [listed["id"]]
    assert queued["cluster"] == "maintenance"
    assert tasks.delivery_send(*queued["args"]) is True
    assert len(receiver.received) == 2

    Endpoint.objects.filter(user=user).update(is_active=False)
    assert user_client.post(f"/api/webhooks/deliveries/{listed['id']}/resend").status_code == 409


def test_it_throttles_what_makes_the_service_sign_or_send(user_client, settings):
    allowed = int(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["webhooks"].split("/")[0])  # THROTTLE_WEBHOOKS
    endpoint_id = register(user_client, "https://hooks.example.com/1").json()["id"]
    for _ in range(allowed - 1):
        assert user_client.post(f"/api/webhooks/{endpoint_id}/rotate-secret").status_code == 200

    throttled = register(user_client, "https://hooks.example.com/2")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert user_client.post(f"/api/webhooks/{endpoint_id}/rotate-secret").status_code == 429
    assert user_client.get("/api/webhooks").status_code == 200  # reading is not throttled


@pytest.mark.usefixtures("demo_model")
def test_it_calls_an_uploads_callback_url_signed_with_the_secret_it_answered(user, user_client, song, receiver):
    answer = user_client.post(
        "/api/upload",
        {"file": SimpleUploadedFile("song.wav", song), "callback_url": f"{receiver.url}?job=mine"},
        format="multipart",
    )
    assert answer.status_code == 202, answer.content
    secret = answer.json()["callback_secret"]
    assert secret.startswith("whsec_")
    job = Job.objects.get(pk=answer.json()["job_id"])
    assert user_client.get("/api/webhooks").json() == []  # a one-off, not a registered endpoint

    separate_next_job()
    job.refresh_from_db()
    assert job.status == Job.Status.COMPLETED
    assert tasks.job_finished(str(job.pk)) == 1

    [request] = receiver.received
    assert request.path == "/hooks/stemfold?job=mine"
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "job.completed"
    assert payload["data"]["status"] == "COMPLETED"
    assert payload["data"]["stem_files"] and payload["data"]["download_url"].endswith(f"/api/download/{job.pk}")
    [listed] = user_client.get(f"/api/webhooks/deliveries?job={job.pk}").json()["results"]
    assert listed["callback"] is True


@pytest.mark.usefixtures("demo_model")
def test_it_refuses_an_unsafe_callback_url_before_charging(user, user_client, song, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    before = balance(user)
    answer = user_client.post(
        "/api/upload",
        {"file": SimpleUploadedFile("song.wav", song), "callback_url": "http://10.0.0.8/hook"},
        format="multipart",
    )
    assert answer.status_code == 400
    assert answer.json()["errors"]["callback_url"] == ["Private, loopback and link-local addresses are not allowed."]
    assert balance(user) == before == Decimal(3)
    assert not Job.objects.exists()


def test_it_tells_only_the_endpoints_that_asked_for_the_event(user, user_client, receiver, media):
    register(user_client, receiver.url, ["job.completed"])
    job = make_job(user)
    job_cancel(job=job)

    assert tasks.job_finished(str(job.pk)) == 0
    assert receiver.received == []
    register(user_client, f"{receiver.url}/all")
    assert tasks.job_finished(str(job.pk)) == 1
    assert [r.path for r in receiver.received] == ["/hooks/stemfold/all"]
    assert Delivery.objects.get(job=job).event == "job.cancelled"
