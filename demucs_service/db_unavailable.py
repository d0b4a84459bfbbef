"""While the database is unreachable (a restart, a failover), answer 503 with Retry-After
instead of a 500: the request changed nothing, and the client should simply try again."""

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template import loader

MESSAGE = "The service is briefly unavailable; please try again in a moment."
RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": MESSAGE}, status=503)
        else:
            # Rendered without the request: its context processors would ask the database.
            response = HttpResponse(loader.get_template("503.html").render({"message": MESSAGE}), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
