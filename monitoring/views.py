import hmac
import os

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from monitoring.collectors import DatabaseCollector


def _authorized(request) -> bool:
    expected = f"Bearer {settings.METRICS_TOKEN}"
    return hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected.encode())


def scrape() -> bytes:
    """This host's process metrics (every process's, in multiprocess mode) and the database's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    database = CollectorRegistry()
    database.register(DatabaseCollector())
    return generate_latest(processes) + generate_latest(database)


@require_GET
def metrics(request):
    """Prometheus's text format, for a scraper holding METRICS_TOKEN; without the setting there is
    no such page."""
    if not settings.METRICS_TOKEN or not _authorized(request):
        raise Http404
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)
