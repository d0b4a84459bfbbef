"""The webhooks page (/accounts/webhooks/): register an endpoint (its secret shown once), see
deliveries and their attempts, resend, rotate, enable, delete; anyone else's things are a 404."""

import pytest

from separation.services import job_fail
from tests.conftest import logged_in
from tests.factories import UserFactory
from tests.jobs import make_job
from tests.webhook_receiver import Receiver
from webhooks import services, tasks
from webhooks.models import Delivery, Endpoint

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

PAGE = "/accounts/webhooks/"


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def test_it_asks_strangers_to_log_in(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_registers_an_endpoint_and_shows_its_secret_once(user, receiver):
    client = logged_in(user)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert b'<label for="id_url">Endpoint URL</label>' in page.content
    assert b"<legend>Events</legend>" in page.content

    response = client.post(PAGE, {"url": receiver.url, "events": ["job.completed", "job.failed"]})

    assert response.status_code == 200
    endpoint = Endpoint.objects.get(user=user)
    assert endpoint.events == ["job.completed", "job.failed"]
    assert endpoint.secret.encode() in response.content
    assert b'data-testid="new-secret"' in response.content
    again = client.get(PAGE)
    assert endpoint.secret.encode() not in again.content
    assert receiver.url.encode() in again.content


def test_it_explains_a_refused_url(user, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = logged_in(user).post(PAGE, {"url": "http://127.0.0.1:8000/", "events": ["job.failed"]})
    assert response.status_code == 400
    assert b"Private, loopback and link-local addresses are not allowed." in response.content
    assert not Endpoint.objects.exists()


def test_it_shows_attempts_and_resends_rotates_and_deletes(user, receiver, media):
    endpoint = services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
    receiver.status = 500
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")
    tasks.job_finished(str(job.pk))
    delivery = Delivery.objects.get(job=job)
    client = logged_in(user)

    page = client.get(PAGE).content.decode()
    assert "Answered 500" in page and "next try" in page and "Sending" in page

    receiver.status = 200
    response = client.post(f"/accounts/webhooks/deliveries/{delivery.pk}/resend/", follow=True)
    assert "will be sent again now" in response.content.decode()
    assert tasks.deliveries_send_due() == {"sent": 1, "succeeded": 1}
    page = client.get(PAGE).content.decode()
    assert page.count('data-testid="attempt"') == 2 and "Delivered" in page

    old_secret = endpoint.secret
    rotated = client.post(f"/accounts/webhooks/{endpoint.pk}/rotate/")
    endpoint.refresh_from_db()
    assert endpoint.secret != old_secret and endpoint.secret.encode() in rotated.content

    Endpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    assert "Disabled" in client.get(PAGE).content.decode()
    client.post(f"/accounts/webhooks/{endpoint.pk}/enable/")
    assert Endpoint.objects.get(pk=endpoint.pk).is_active

    client.post(f"/accounts/webhooks/{endpoint.pk}/delete/")
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()


def test_it_answers_404_for_someone_elses_endpoint_and_delivery(user, receiver, media):
    stranger = UserFactory()
    theirs = services.endpoint_create(user=stranger, url=receiver.url, events=["job.failed"])
    job = make_job(stranger)
    job_fail(job_id=job.pk, error="It broke.")
    tasks.job_finished(str(job.pk))
    delivery = Delivery.objects.get(job=job)
    client = logged_in(user)

    for action in ("delete", "rotate", "enable"):
        assert client.post(f"/accounts/webhooks/{theirs.pk}/{action}/").status_code == 404
    assert client.post(f"/accounts/webhooks/deliveries/{delivery.pk}/resend/").status_code == 404
    page = client.get(PAGE).content.decode()
    assert receiver.url not in page
    theirs.refresh_from_db()
    assert theirs.secret and Endpoint.objects.filter(pk=theirs.pk).exists()
