import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.defaults import page_not_found, server_error
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from credits.packs import packs_list

logger = logging.getLogger(__name__)


def home(request):
    from separation.catalog import models_list

    return render(
        request,
        "home.html",
        {
            "packs": packs_list(),
            "models": [model for model in models_list() if model.installed],
            "signup_bonus": settings.SIGNUP_BONUS_CREDITS,
            "bonus_on_verification": settings.EMAIL_VERIFICATION != "none",
            "retention_days": settings.JOB_RETENTION_DAYS,
            "previews_per_day": settings.PREVIEWS_PER_DAY,
        },
    )


def healthz(request):
    """The process is up and serving; /readyz checks its dependencies."""
    return JsonResponse({"status": "ok"})


def _database_ready() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _queue_ready() -> str:
    """django-q2's broker answers: Redis pings; the ORM broker reads its queue table."""
    from django_q.brokers import get_broker

    broker = get_broker()
    pool = getattr(broker.connection, "connection_pool", None)
    if pool is not None:  # Redis: a fresh client each call; fail fast rather than hang the probe
        pool.connection_kwargs.update(socket_connect_timeout=3, socket_timeout=3)
    try:
        # Redis: ping the client itself; the broker's ping() logs an error (a Sentry event) per probe.
        if (broker.connection.ping() if pool is not None else broker.ping()) is False:
            return "unreachable"
        broker.queue_size()
    finally:
        if pool is not None:
            pool.disconnect()
    return "ok"


def _models_ready() -> str:
    """At least one configured model's weights are on disk (checked without loading torch)."""
    from separation.catalog import models_list

    return "ok" if any(model.installed for model in models_list()) else "no model installed"


def readyz(request):
    """Ready for traffic: 200 when the database, the queue and a model are there, else 503 naming
    what fails. No auth; details of a failure go to the log, not the answer."""
    checks = {}
    for name, check in (("database", _database_ready), ("queue", _queue_ready), ("models", _models_ready)):
        try:
            checks[name] = check()
        except Exception:
            logger.warning("Readiness check %r failed", name, exc_info=True)
            checks[name] = "unreachable"
    failing = [name for name, result in checks.items() if result != "ok"]
    if failing:
        logger.warning("Not ready: %s", ", ".join(f"{name} {checks[name]}" for name in failing))
        return JsonResponse({"status": "unavailable", "failing": failing, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})


@extend_schema(
    responses=inline_serializer("Health", {"status": serializers.CharField(), "service": serializers.CharField()}),
    tags=["health"],
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def api_root(request):
    """Health check, as in the original API."""
    return Response({"status": "ok", "service": "stemfold", "docs": request.build_absolute_uri("/api/docs/")})


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception):
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def server_failure(request):
    if _is_api(request):
        return JsonResponse({"detail": "Internal server error. Please try again later."}, status=500)
    return server_error(request)
