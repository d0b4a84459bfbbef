"""While the database is unreachable (a restart, a failover), answer 503 with Retry-After
instead of a 500: the request changed nothing, and the client should simply try again."""

import logging
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template import loader

MESSAGE = "The service is briefly unavailable; please try again in a moment."
RETRY_AFTER_SECONDS = 5
logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        # One line naming the service's own code that met it: an outage answers many requests.
        said = " ".join(str(exception).split())[:200]
        logger.warning("Database unavailable (%s at %s): 503", said, _where(exception))
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": MESSAGE}, status=503)
        else:
            # Rendered without the request: its context processors would ask the database.
            response = HttpResponse(loader.get_template("503.html").render({"message": MESSAGE}), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


def _where(exception: BaseException) -> str:
    """file:line of the innermost frame of the service's own code in the traceback, else of the
    first library frame below the request handler that called into the database layer."""
    own, library, caller = None, None, "?"
    frame = exception.__traceback__
    while frame is not None:
        filename = frame.tb_frame.f_code.co_filename
        if "site-packages" not in filename and filename.startswith(str(settings.BASE_DIR)):
            own = f"{Path(filename).relative_to(settings.BASE_DIR)}:{frame.tb_lineno}"
        elif library is None and "/django/db/" in filename:
            library = caller
        caller = f"{filename.rpartition('site-packages/')[2]}:{frame.tb_lineno}"
        frame = frame.tb_next
    return own or library or "?"
