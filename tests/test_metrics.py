"""/metrics: Prometheus's format behind METRICS_TOKEN, the database's figures (jobs, queue,
ledger), request latency by route, and a real worker's own port during an end-to-end job."""

from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from credits.services import credits_admin_grant
from separation.models import Job
from separation.services import job_fail
from testkit.audio import write_wav
from testkit.http import get, http, wait_until
from testkit.processes import free_port
from tests import e2e
from tests.jobs import make_job
from tests.webhook_receiver import Receiver
from webhooks import services as webhook_services
from webhooks import tasks as webhook_tasks
from webhooks.models import Delivery

pytestmark = pytest.mark.e2e

TOKEN = "scrape-me-0123456789"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} for a scrape."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.mark.django_db
def test_it_has_no_metrics_page_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
def test_it_refuses_a_scraper_without_the_token(client, metrics_on):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 404


@pytest.mark.django_db
def test_it_reports_jobs_the_queue_and_the_ledger_from_the_database(client, metrics_on, user, admin_user, demo_model):
    credits_admin_grant(user=user, amount=Decimal(5), reason="metrics test", granted_by=admin_user, request_token="t1")
    waiting = make_job(user)
    failed = make_job(user)
    job_fail(job_id=failed.pk, error="Broken.")
    Job.objects.filter(pk=waiting.pk).update(created_at=waiting.created_at.replace(year=2020))

    figures = scrape(client)

    assert figures[("stemfold_jobs", (("model", "demo"), ("state", "PENDING")))] == 1
    assert figures[("stemfold_jobs", (("model", "demo"), ("state", "FAILED")))] == 1
    assert figures[("stemfold_queue_depth", ())] == 1
    assert figures[("stemfold_queue_oldest_wait_seconds", ())] > 365 * 24 * 3600
    assert figures[("stemfold_ledger_credits_total", (("kind", "job_charge"),))] == 2
    assert figures[("stemfold_ledger_credits_total", (("kind", "job_refund"),))] == 1
    assert figures[("stemfold_ledger_credits_total", (("kind", "admin_grant"),))] == 5
    assert figures[("stemfold_ledger_rows_total", (("kind", "job_charge"),))] == 2


@pytest.mark.django_db
def test_it_times_requests_by_their_route_not_their_path(client, metrics_on, user, user_client, demo_model):
    job = make_job(user)
    key = (
        "stemfold_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "api/status/<uuid:job_id>"), ("status", "2xx")),
    )
    before = scrape(client).get(key, 0)
    assert user_client.get(f"/api/status/{job.pk}").status_code == 200
    assert user_client.get(f"/api/status/{job.pk}").status_code == 200

    figures = scrape(client)

    assert figures[key] == before + 2
    assert not any(str(job.pk) in dict(labels).get("route", "") for _, labels in figures)


@pytest.mark.django_db
def test_it_counts_requests_with_made_up_methods_as_other(client, metrics_on):
    # Any token is an HTTP method to the server: one series per method would let anyone grow
    # every process's memory and the scrape without end.
    for method in ("FOOBAR", "X1Y2Z3", "PURGE"):
        client.generic(method, "/healthz")

    labels = [dict(labels) for name, labels in scrape(client) if name == "stemfold_http_request_duration_seconds_count"]

    methods = {found["method"] for found in labels}
    assert "other" in methods
    assert not methods & {"FOOBAR", "X1Y2Z3", "PURGE"}


@pytest.mark.django_db(transaction=True)
def test_it_answers_during_an_end_to_end_job_and_the_worker_serves_its_own(
    live_server, cluster_factory, tmp_path, settings
):
    settings.METRICS_TOKEN = TOKEN
    base = live_server.url
    port = free_port()
    cluster_factory(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "worker-metrics"), WORKER_METRICS_PORT=str(port))
    token = e2e.register(base, "metrics_listener")
    reply = e2e.upload(base, token, write_wav(tmp_path / "song.wav", 30))
    assert reply.status == 202, reply.body
    job_id = reply.json()["job_id"]

    def web_figures():
        reply = http("GET", f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status == 200, reply.body
        return samples(reply.body.decode())

    processing = ("stemfold_jobs", (("model", "demo"), ("state", "PROCESSING")))
    wait_until(lambda: web_figures().get(processing) == 1, timeout=60, message="no PROCESSING job in /metrics")
    wait_until(
        lambda: get(f"{base}/api/status/{job_id}", token).json()["status"] == "COMPLETED",
        timeout=120,
        message="the job did not complete",
    )

    web = web_figures()
    assert web[("stemfold_jobs", (("model", "demo"), ("state", "COMPLETED")))] == 1
    assert web[("stemfold_ledger_credits_total", (("kind", "job_charge"),))] == 1
    worker = samples(http("GET", f"http://127.0.0.1:{port}/metrics").body.decode())
    rate = ("stemfold_separation_seconds_per_audio_second_count", (("device", "cpu"), ("model", "demo")))
    assert worker[rate] == 1
    assert worker[("stemfold_job_wait_seconds_count", ())] == 1
    assert worker[("stemfold_worker_heartbeat_timestamp_seconds", ())] > 0


@pytest.mark.django_db
def test_it_counts_webhook_deliveries_and_their_attempts(client, metrics_on, user, media, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver is on loopback
    receiver = Receiver().start()
    try:
        webhook_services.endpoint_create(user=user, url=receiver.url, events=["job.failed"])
        job = make_job(user)
        job_fail(job_id=job.pk, error="It broke.")
        receiver.stop()  # the first attempt finds nobody
        webhook_tasks.job_finished(str(job.pk))
        receiver.start()
        Delivery.objects.update(next_attempt_at=timezone.now())
        webhook_tasks.deliveries_send_due()
    finally:
        receiver.stop()

    figures = scrape(client)

    assert figures[("stemfold_webhook_deliveries", (("event", "job.failed"), ("status", "SUCCEEDED")))] == 1
    assert figures[("stemfold_webhook_attempts_total", (("outcome", "delivered"),))] == 1
    assert figures[("stemfold_webhook_attempts_total", (("outcome", "failed"),))] == 1
    assert figures[("stemfold_webhook_endpoints_disabled", ())] == 0
