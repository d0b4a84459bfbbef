"""A prometheus-client collector over the database: jobs by state and model, the queue, the
ledger's totals (credits sold, spent, refunded...) and webhook deliveries. Read at each scrape, so the figures are the
whole fleet's and survive restarts; the ledger only grows, so its totals are counters."""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitoring import selectors


class DatabaseCollector(Collector):
    def collect(self):
        jobs = GaugeMetricFamily("stemfold_jobs", "Jobs by state and model.", labels=["state", "model"])
        for state, model, count in selectors.jobs_count_by_state_and_model():
            jobs.add_metric([state, model], count)
        yield jobs

        queue = selectors.queue_state()
        yield GaugeMetricFamily("stemfold_queue_depth", "Jobs waiting for a worker.", value=queue.depth)
        yield GaugeMetricFamily(
            "stemfold_queue_oldest_wait_seconds",
            "How long the longest-waiting job has waited.",
            value=queue.oldest_wait_seconds,
        )
        yield GaugeMetricFamily(
            "stemfold_running_job_heartbeat_age_seconds",
            "Seconds since the running job heard from least recently reported progress (the reaper "
            "takes a job for dead past JOB_STALE_SECONDS).",
            value=queue.oldest_running_heartbeat_age_seconds,
        )

        rows = CounterMetricFamily("stemfold_ledger_rows", "Ledger rows by kind.", labels=["kind"])
        credits = CounterMetricFamily(
            "stemfold_ledger_credits",
            "Credits moved by kind of ledger row: purchase (sold), job_charge (spent), job_refund and "
            "admin_refund (refunded), signup_bonus and admin_grant (given), payment_reversal...",
            labels=["kind"],
        )
        for kind, count, amount in selectors.ledger_totals_by_kind():
            rows.add_metric([kind], count)
            credits.add_metric([kind], float(amount))
        yield rows
        yield credits

        deliveries = GaugeMetricFamily(
            "stemfold_webhook_deliveries", "Webhook deliveries by status and event.", labels=["status", "event"]
        )
        for delivery_status, event, count in selectors.webhook_deliveries_by_status_and_event():
            deliveries.add_metric([delivery_status, event], count)
        yield deliveries
        attempts = CounterMetricFamily(
            "stemfold_webhook_attempts", "Webhook delivery attempts by outcome.", labels=["outcome"]
        )
        for outcome, count in selectors.webhook_attempts_by_outcome().items():
            attempts.add_metric([outcome], count)
        yield attempts
        yield GaugeMetricFamily(
            "stemfold_webhook_endpoints_disabled",
            "Endpoints disabled for failing too long.",
            value=selectors.webhook_endpoints_disabled(),
        )
