from django.apps import AppConfig
from django.conf import settings

from demucs_service.observability.sentry import sentry_init


class ObservabilityConfig(AppConfig):
    name = "demucs_service.observability"

    def ready(self):
        # Every process sets Django up once (gunicorn's workers, qcluster, whose forked workers
        # inherit the client, and commands), so every process reports, and starts Sentry once.
        sentry_init(
            dsn=settings.SENTRY_DSN,
            environment=settings.SENTRY_ENVIRONMENT,
            release=settings.SENTRY_RELEASE,
            traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
        )
