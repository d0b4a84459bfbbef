"""Operators see webhook endpoints and deliveries with their attempts in the admin, read-only,
and never an endpoint's secret."""

import pytest

from separation.services import job_fail
from tests.factories import UserFactory
from tests.jobs import make_job
from webhooks import services, tasks
from webhooks.models import Delivery

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_it_shows_endpoints_and_deliveries_with_attempts_but_no_secret(admin_client, media, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    user = UserFactory()
    endpoint = services.endpoint_create(user=user, url="http://127.0.0.1:9/nothing-listens", events=["job.failed"])
    job = make_job(user)
    job_fail(job_id=job.pk, error="It broke.")
    tasks.job_finished(str(job.pk))
    delivery = Delivery.objects.get(job=job)

    listed = admin_client.get("/admin/webhooks/endpoint/").content.decode()
    assert endpoint.url in listed and endpoint.secret not in listed
    page = admin_client.get(f"/admin/webhooks/endpoint/{endpoint.pk}/change/").content.decode()
    assert endpoint.url in page and endpoint.secret not in page
    page = admin_client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/").content.decode()
    assert (
        "Could not connect" in page
        and delivery.message_id in admin_client.get("/admin/webhooks/delivery/").content.decode()
    )
    assert admin_client.get("/admin/webhooks/delivery/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/webhooks/delivery/{delivery.pk}/change/", {"status": "SUCCEEDED"}).status_code == 403
    )
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.PENDING
