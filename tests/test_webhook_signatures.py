"""Deliveries are signed as Standard Webhooks says: the standardwebhooks library on a real
receiver on loopback verifies them, and the signature is the HMAC-SHA256 of "id.timestamp.body"
under the secret's bytes, computed here by hand."""

import base64
import hashlib
import hmac
import json

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from separation.services import job_fail
from tests.factories import UserFactory
from tests.jobs import make_job
from tests.webhook_receiver import Receiver
from webhooks import services, tasks
from webhooks.models import Delivery

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def test_it_signs_a_delivery_that_standardwebhooks_verifies(receiver, media):
    user = UserFactory()
    endpoint = services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")

    assert tasks.job_finished(str(job.pk)) == 1

    [request] = receiver.received
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["type"] == "job.failed"
    assert payload["data"]["job_id"] == str(job.pk)
    assert payload["data"]["status"] == "FAILED"
    assert payload["data"]["error"] == "It broke."
    assert request.headers["content-type"] == "application/json"
    assert request.path == "/hooks/stemfold"
    delivery = Delivery.objects.get(job=job)
    assert request.headers["webhook-id"] == f"msg_{delivery.id.hex}"
    with pytest.raises(WebhookVerificationError):
        Webhook(services.secret_new()).verify(request.body, request.headers)


def test_it_signs_the_bytes_of_id_timestamp_and_body_with_hmac_sha256(receiver, media):
    user = UserFactory()
    endpoint = services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")
    tasks.job_finished(str(job.pk))

    [request] = receiver.received
    key = base64.b64decode(endpoint.secret.removeprefix("whsec_"))
    assert len(key) == 32
    signed = b".".join(
        [request.headers["webhook-id"].encode(), request.headers["webhook-timestamp"].encode(), request.body]
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == f"v1,{expected}"
    # The body is the one stored for the delivery, byte for byte.
    assert request.body == Delivery.objects.get(job=job).body.encode()
    assert json.loads(request.body)["data"]["cost"] == "1.00"


def test_it_signs_with_the_old_and_new_secret_for_a_day_after_a_rotation(receiver, media):
    user = UserFactory()
    endpoint = services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    old_secret = endpoint.secret
    services.endpoint_rotate_secret(endpoint=endpoint)
    assert endpoint.secret != old_secret and endpoint.secret.startswith("whsec_")
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")
    tasks.job_finished(str(job.pk))

    [request] = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(endpoint.secret).verify(request.body, request.headers)
    Webhook(old_secret).verify(request.body, request.headers)
