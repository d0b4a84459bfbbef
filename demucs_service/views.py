from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.views.defaults import page_not_found, server_error
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from credits.packs import packs_list


def home(request):
    return render(request, "home.html", {"packs": packs_list(), "signup_bonus": settings.SIGNUP_BONUS_CREDITS})


def healthz(request):
    """The process is up and serving; /readyz checks its dependencies."""
    return JsonResponse({"status": "ok"})


@extend_schema(
    responses=inline_serializer("Health", {"status": serializers.CharField(), "service": serializers.CharField()}),
    tags=["health"],
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def api_root(request):
    """Health check, as in the original API."""
    return Response({"status": "ok", "service": "demucs-separation", "docs": request.build_absolute_uri("/api/docs/")})


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
