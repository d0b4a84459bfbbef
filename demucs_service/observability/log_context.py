"""What a log record is about: the request, its user and the job, carried in contextvars.

The request middleware (demucs_service.middleware.request_logging) sets the request id and the request;
the worker's task entry point sets the job id. ContextFilter copies them onto every record a
handler formats, unless the call passed its own with `extra=`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar

from django.utils.functional import SimpleLazyObject, empty

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
request_var: ContextVar[object | None] = ContextVar("request", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)


@contextmanager
def job_context(job_id):
    """Log records written inside carry this job id."""
    token = job_id_var.set(str(job_id))
    try:
        yield
    finally:
        job_id_var.reset(token)


def current_user_id() -> int | None:
    """The request's user, if something already resolved it: a session user once the view read
    request.user, a JWT user once DRF authenticated (DRF sets it on the Django request too).
    Never resolves it here, so logging does not run database queries."""
    request = request_var.get()
    if request is None:
        return None
    user = vars(request).get("user")
    if isinstance(user, SimpleLazyObject):
        user = user._wrapped
        if user is empty:
            return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


class ContextFilter(logging.Filter):
    """Adds request_id, user_id and job_id to each record (None when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "user_id", None) is None:
            record.user_id = current_user_id()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        elif not isinstance(record.job_id, str):
            record.job_id = str(record.job_id)
        return True
