"""Request ids and one access line per request.

Takes a sane incoming X-Request-ID (a proxy's or a client's) or makes one, echoes it in the
response and puts it, with the request (for the user id), in the log context. The access line
names the URL pattern, not the raw path, so tokens in links (password reset, email
confirmation) never reach the logs.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from demucs_service.observability.log_context import request_id_var, request_var

HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

access_logger = logging.getLogger("demucs_service.access")


def request_id_from(request) -> str:
    incoming = request.headers.get(HEADER, "")
    return incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex


def _route(request) -> str:
    match = getattr(request, "resolver_match", None)
    return f"/{match.route}" if match is not None and match.route else "(unresolved)"


class RequestLoggingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_from(request)
        id_token = request_id_var.set(request.request_id)
        request_token = request_var.set(request)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response[HEADER] = request.request_id
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            access_logger.info(
                "%s %s %s %.0f ms",
                request.method,
                _route(request),
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "route": _route(request),
                    "status_code": response.status_code,
                    "duration_ms": duration_ms,
                },
            )
            return response
        finally:
            request_var.reset(request_token)
            request_id_var.reset(id_token)
