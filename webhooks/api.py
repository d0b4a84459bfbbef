"""The webhooks API: endpoints (register, list, show, delete, rotate the secret, enable again)
and deliveries with their attempts (list, resend). Each object is its owner's only (404 for others)."""

import uuid

from drf_spectacular.utils import OpenApiCallback, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle

from separation.serializers import JobOutput
from webhooks import services
from webhooks.models import Event
from webhooks.selectors import (
    delivery_get_for_user,
    delivery_list_for_user,
    endpoint_get_for_user,
    endpoint_list_for_user,
)


class WebhooksThrottle(UserRateThrottle):
    """THROTTLE_WEBHOOKS, per user: what makes the service send or sign (register, rotate,
    enable, resend, delete). Reading is not throttled."""

    scope = "webhooks"

    def allow_request(self, request, view):
        return request.method in SAFE_METHODS or super().allow_request(request, view)


class EndpointInput(serializers.Serializer):
    url = serializers.CharField(max_length=2000, help_text="An http(s) URL on a public address")
    events = serializers.MultipleChoiceField(
        choices=Event.choices, required=False, default=list(Event.values), help_text="Default: all three"
    )


class EndpointOutput(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField(source="is_active", help_text="False once disabled for failing too long")
    failing_since = serializers.DateTimeField(allow_null=True)
    disabled_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class EndpointSecretOutput(EndpointOutput):
    secret = serializers.CharField(help_text="whsec_...: verify deliveries with it; shown only now")


class AttemptOutput(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True, help_text="null when no answer came")
    error = serializers.CharField(help_text="Empty when the receiver answered 2xx")


class DeliveryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    webhook_id = serializers.CharField(source="message_id", help_text="The webhook-id header, the same on retries")
    endpoint_id = serializers.UUIDField()
    url = serializers.CharField(source="endpoint.url")
    callback = serializers.SerializerMethodField(help_text="True for an upload's one-off callback_url")
    job_id = serializers.UUIDField()
    event = serializers.CharField()
    status = serializers.CharField(help_text="PENDING (retries to come), SUCCEEDED or FAILED")
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    attempts = AttemptOutput(source="attempt_rows", many=True)

    def get_callback(self, delivery) -> bool:
        return delivery.endpoint.job_id is not None


class WebhookPayload(serializers.Serializer):
    type = serializers.ChoiceField(choices=Event.choices)
    timestamp = serializers.DateTimeField(help_text="When the job ended")
    data = JobOutput(help_text="The job, as GET /api/status/<id> gives it")


DELIVERY = OpenApiCallback(
    name="jobFinished",
    path="{$request.body#/url}",
    decorator=extend_schema(
        summary="A job ended (the delivery your endpoint receives)",
        description=(
            "Signed as Standard Webhooks says: `webhook-signature: v1,<base64 HMAC-SHA256 of "
            '"<webhook-id>.<webhook-timestamp>.<body>">` keyed with the base64-decoded part of the '
            "`whsec_` secret. Answer 2xx within WEBHOOK_TIMEOUT_SECONDS, or it is retried with "
            "exponential backoff. An upload's callback_url receives the same deliveries."
        ),
        request=WebhookPayload,
        parameters=[
            OpenApiParameter("webhook-id", str, OpenApiParameter.HEADER, description="msg_..., the same on retries"),
            OpenApiParameter("webhook-timestamp", str, OpenApiParameter.HEADER, description="Unix seconds"),
            OpenApiParameter("webhook-signature", str, OpenApiParameter.HEADER, description="v1,<base64 signature>"),
        ],
        responses={200: OpenApiResponse(description="Any 2xx: delivered")},
    ),
)


def _refused(refused: services.WebhookRefused, code=status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": str(refused)}, status=code)


REFUSAL = OpenApiResponse(description="{detail}: an unsafe URL, or too many endpoints")


@extend_schema(
    methods=["GET"], responses={200: EndpointOutput(many=True)}, tags=["webhooks"], summary="Your webhook endpoints"
)
@extend_schema(
    methods=["POST"],
    request=EndpointInput,
    responses={201: EndpointSecretOutput, 400: REFUSAL, 429: OpenApiResponse(description="THROTTLE_WEBHOOKS")},
    callbacks=[DELIVERY],
    tags=["webhooks"],
    summary="Register a webhook endpoint",
)
@api_view(["GET", "POST"])
@throttle_classes([WebhooksThrottle])
def endpoints(request):
    """Deliveries of `job.completed`, `job.failed` and `job.cancelled` to an http(s) URL, signed
    as Standard Webhooks says (headers webhook-id, webhook-timestamp, webhook-signature) with the
    endpoint's `whsec_` secret. The body: `{"type", "timestamp", "data"}`, data being the job as
    GET /api/status/<id> gives it. Retried with exponential backoff for more than a day."""
    if request.method == "GET":
        return Response(EndpointOutput(endpoint_list_for_user(user=request.user), many=True).data)
    data = EndpointInput(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        endpoint = services.endpoint_create(
            user=request.user, url=data.validated_data["url"], events=list(data.validated_data["events"])
        )
    except services.WebhookRefused as refused:
        return _refused(refused)
    return Response(EndpointSecretOutput(endpoint).data, status=status.HTTP_201_CREATED)


@extend_schema(methods=["GET"], responses={200: EndpointOutput}, tags=["webhooks"], summary="One webhook endpoint")
@extend_schema(methods=["DELETE"], responses={204: None}, tags=["webhooks"], summary="Delete a webhook endpoint")
@api_view(["GET", "DELETE"])
@throttle_classes([WebhooksThrottle])
def endpoint(request, endpoint_id):
    """One of your endpoints; DELETE removes it with its deliveries (none are sent to it after)."""
    found = endpoint_get_for_user(user=request.user, endpoint_id=endpoint_id)
    if request.method == "DELETE":
        services.endpoint_delete(endpoint=found)
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(EndpointOutput(found).data)


@extend_schema(request=None, responses={200: EndpointSecretOutput}, tags=["webhooks"])
@api_view(["POST"])
@throttle_classes([WebhooksThrottle])
def endpoint_rotate_secret(request, endpoint_id):
    """A new secret for the endpoint, shown only in this answer. For 24 hours deliveries carry two
    signatures (new and old secret), so a receiver can switch without missing one."""
    found = services.endpoint_rotate_secret(endpoint=endpoint_get_for_user(user=request.user, endpoint_id=endpoint_id))
    return Response(EndpointSecretOutput(found).data)


@extend_schema(request=None, responses={200: EndpointOutput}, tags=["webhooks"])
@api_view(["POST"])
@throttle_classes([WebhooksThrottle])
def endpoint_enable(request, endpoint_id):
    """Turn an endpoint disabled for failing too long back on (resend what it missed afterwards)."""
    found = services.endpoint_enable(endpoint=endpoint_get_for_user(user=request.user, endpoint_id=endpoint_id))
    return Response(EndpointOutput(found).data)


@extend_schema(
    parameters=[
        OpenApiParameter("endpoint", str, description="Only this endpoint's deliveries"),
        OpenApiParameter("job", str, description="Only this job's deliveries (callbacks included)"),
    ],
    tags=["webhooks"],
)
class DeliveryListView(generics.ListAPIView):
    """Your deliveries, newest first, each with every attempt (status code, duration, error);
    one-off upload callbacks included."""

    serializer_class = DeliveryOutput

    def get_queryset(self):
        params = self.request.query_params
        return delivery_list_for_user(
            user=self.request.user,
            endpoint_id=_uuid_or_none(params.get("endpoint")),
            job_id=_uuid_or_none(params.get("job")),
        )


def _uuid_or_none(value: str | None):
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such endpoint or job.") from None


@extend_schema(
    request=None,
    responses={202: DeliveryOutput, 409: OpenApiResponse(description="The endpoint is disabled")},
    tags=["webhooks"],
)
@api_view(["POST"])
@throttle_classes([WebhooksThrottle])
def delivery_resend(request, delivery_id):
    """Send a delivery again now, with the same webhook-id and body, whatever its status."""
    found = delivery_get_for_user(user=request.user, delivery_id=delivery_id)
    try:
        found = services.delivery_resend(delivery=found)
    except services.WebhookRefused as refused:
        return _refused(refused, status.HTTP_409_CONFLICT)
    found = delivery_get_for_user(user=request.user, delivery_id=delivery_id)
    return Response(DeliveryOutput(found).data, status=status.HTTP_202_ACCEPTED)
