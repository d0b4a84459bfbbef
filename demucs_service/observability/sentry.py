"""Sentry, on when SENTRY_DSN is set (started by this app's ready()).

Besides Django's own errors, error-level log records become events: django-q2 catches a
task's exception and logs it at error level with the traceback, so failed tasks are reported,
and so are the logger.exception calls in the services. No personal data is sent.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured


def sentry_init(*, dsn: str, environment: str, release: str | None = None, traces_sample_rate: float = 0.0) -> bool:
    """Starts the Sentry client; False (and nothing done) when dsn is empty."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.utils import BadDsn

    try:
        sentry_sdk.init(
            dsn=dsn,
            integrations=[DjangoIntegration(), LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
            # No personal data: send_default_pii's default (off; the option itself is deprecated),
            # and the SDK's scrubber drops cookies, Authorization and password-like fields.
            environment=environment,
            release=release or None,
            traces_sample_rate=traces_sample_rate,
        )
    except BadDsn as error:
        raise ImproperlyConfigured(f"SENTRY_DSN is not a valid Sentry DSN: {error}") from None
    return True
