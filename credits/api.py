import logging

from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.decorators import api_view, content_negotiation_class, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from credits import square_checkout, stripe_checkout
from credits.packs import pack_get, packs_list
from credits.payment_events import payment_event_handle
from credits.payment_providers import PaymentProviderError, WebhookInvalid, WebhookNotConfigured
from credits.purchases import PAYMENTS_OFF_MESSAGE, PROVIDER_ERROR_MESSAGE, PaymentsOff, purchase_start
from credits.selectors import transaction_export_rows_for_user, transaction_list_for_user
from credits.services import IdempotencyConflict
from credits.subscriptions import (
    AlreadySubscribed,
    NoCustomer,
    plan_get,
    plans_list,
    subscription_checkout_start,
    subscription_portal_url,
)
from demucs_service.csv_export import FETCH_ROWS, FirstRendererNegotiation, csv_response, csv_text

logger = logging.getLogger(__name__)


class BalanceOutput(serializers.Serializer):
    credits = serializers.DecimalField(max_digits=10, decimal_places=2)


class PackOutput(serializers.Serializer):
    id = serializers.CharField()
    credits = serializers.DecimalField(max_digits=10, decimal_places=2)
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    currency = serializers.CharField()


class TransactionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    amount = serializers.DecimalField(max_digits=10, decimal_places=2)
    balance_after = serializers.DecimalField(max_digits=10, decimal_places=2)
    kind = serializers.CharField()
    description = serializers.CharField()
    reference = serializers.CharField()
    created_at = serializers.DateTimeField()


class PurchaseInput(serializers.Serializer):
    package = serializers.CharField(max_length=64, help_text="A pack id from /api/credits/packages")

    def validate_package(self, value):
        pack = pack_get(value)
        if pack is None:
            known = ", ".join(pack.id for pack in packs_list())
            raise serializers.ValidationError(f"Unknown package {value!r}; choose one of: {known}.")
        return pack


class PurchaseOutput(serializers.Serializer):
    credits = serializers.DecimalField(max_digits=10, decimal_places=2)
    simulated = serializers.BooleanField()
    package = PackOutput()
    transaction = TransactionOutput()


class CheckoutOutput(serializers.Serializer):
    checkout_url = serializers.URLField(help_text="Send the customer here to pay; credits arrive once they have")
    session_id = serializers.CharField()
    payment_id = serializers.IntegerField()
    status = serializers.CharField()
    credits = serializers.DecimalField(
        max_digits=10, decimal_places=2, help_text="The balance now, before this purchase"
    )
    simulated = serializers.BooleanField()
    package = PackOutput()


class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()


@extend_schema(responses={200: BalanceOutput}, tags=["credits"])
@api_view(["GET"])
def balance(request):
    """The current balance."""
    return Response(BalanceOutput(request.user).data)


@extend_schema(responses={200: PackOutput(many=True)}, tags=["credits"])
@api_view(["GET"])
@permission_classes([AllowAny])
def packages(request):
    """The credit packs on sale."""
    return Response(PackOutput(packs_list(), many=True).data)


@extend_schema(
    request=PurchaseInput,
    responses={
        201: PolymorphicProxySerializer(
            component_name="PurchaseResult",
            serializers=[CheckoutOutput, PurchaseOutput],
            resource_type_field_name=None,
        ),
        502: OpenApiResponse(ErrorOutput, description="The payment provider did not answer"),
        503: OpenApiResponse(ErrorOutput, description="No payment provider, and simulated payments are off"),
    },
    parameters=[
        OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER, description="Retries with the same key buy once"
        )
    ],
    tags=["credits"],
)
@api_view(["POST"])
def purchase(request):
    """Buy a pack. With Stripe or Square configured: a hosted checkout (a Stripe Checkout Session or
    a Square payment link, whose `session_id` is the Square order id) whose `checkout_url` the
    customer pays at; the credits arrive by webhook once they have paid. Without it, in development: a simulated
    purchase that credits at once and takes no money."""
    data = PurchaseInput(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        started = purchase_start(
            user=request.user,
            pack=data.validated_data["package"],
            site_url=request.build_absolute_uri("/"),
            idempotency_key=request.headers.get("Idempotency-Key", "")[:100],
        )
    except PaymentsOff:
        return Response(
            {"detail": PAYMENTS_OFF_MESSAGE, "code": "payments_not_configured"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    except PaymentProviderError:
        return Response(
            {"detail": PROVIDER_ERROR_MESSAGE, "code": "payment_provider_error"}, status=status.HTTP_502_BAD_GATEWAY
        )
    except IdempotencyConflict as conflict:
        return Response({"detail": str(conflict)}, status=status.HTTP_409_CONFLICT)
    if started.payment is not None:
        output = {
            "checkout_url": started.checkout_url,
            "session_id": started.payment.provider_session_id,
            "payment_id": started.payment.pk,
            "status": started.payment.status,
            "credits": request.user.credits,
            "simulated": False,
            "package": started.pack,
        }
        return Response(CheckoutOutput(output).data, status=status.HTTP_201_CREATED)
    request.user.refresh_from_db(fields=["credits"])
    output = {
        "credits": request.user.credits,
        "simulated": True,
        "package": started.pack,
        "transaction": started.posting.transaction,
    }
    return Response(
        PurchaseOutput(output).data, status=status.HTTP_201_CREATED if started.posting.created else status.HTTP_200_OK
    )


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """Stripe's deliveries: verified by signature, then acted on once however often they come."""
    try:
        event = stripe_checkout.stripe_webhook_event_parse(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except WebhookNotConfigured:
        logger.error("A Stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set")
        return JsonResponse({"detail": "Webhooks are not configured on this server."}, status=503)
    except WebhookInvalid as invalid:
        logger.warning("Refused a Stripe webhook: %s", invalid)
        detail = "Invalid webhook: bad or missing Stripe-Signature, or not an event."
        return JsonResponse({"detail": detail}, status=400)
    handled = payment_event_handle(event=event)
    return JsonResponse({"received": True, "handled": handled})


@csrf_exempt
@require_POST
def square_webhook(request):
    """Square's deliveries: verified by signature over our notification URL and the raw body,
    then acted on once however often they come."""
    try:
        event = square_checkout.square_webhook_event_parse(
            payload=request.body, signature=request.headers.get(square_checkout.SIGNATURE_HEADER, "")
        )
    except WebhookNotConfigured:
        logger.error("A Square webhook arrived but SQUARE_WEBHOOK_SIGNATURE_KEY or SITE_URL is not set")
        return JsonResponse({"detail": "Webhooks are not configured on this server."}, status=503)
    except WebhookInvalid as invalid:
        logger.warning("Refused a Square webhook: %s", invalid)
        detail = "Invalid webhook: bad or missing x-square-hmacsha256-signature, or not an event."
        return JsonResponse({"detail": detail}, status=400)
    handled = payment_event_handle(event=event)
    return JsonResponse({"received": True, "handled": handled})


@extend_schema(tags=["credits"])
class HistoryView(generics.ListAPIView):
    """The ledger, newest first, 20 to a page."""

    serializer_class = TransactionOutput

    def get_queryset(self):
        return transaction_list_for_user(user=self.request.user)


class SubscriptionOutput(serializers.Serializer):
    plan = serializers.CharField(source="plan_id")
    status = serializers.CharField()
    current_period_end = serializers.DateTimeField(source="paid_through", allow_null=True)
    cancel_at_period_end = serializers.BooleanField()


class SubscribeInput(serializers.Serializer):
    plan = serializers.CharField(max_length=64, help_text="A plan id from SUBSCRIPTION_PLANS")

    def validate_plan(self, value):
        plan = plan_get(value)
        if plan is None:
            known = ", ".join(plan.id for plan in plans_list()) or "none are sold on this server"
            raise serializers.ValidationError(f"Unknown plan {value!r}; choose one of: {known}.")
        return plan


class CheckoutUrlOutput(serializers.Serializer):
    checkout_url = serializers.URLField()


class PortalOutput(serializers.Serializer):
    portal_url = serializers.URLField()


ALREADY_SUBSCRIBED_MESSAGE = "You already have an active subscription; manage it from your account page."
NO_CUSTOMER_MESSAGE = "You have no subscription to manage yet."


@extend_schema(
    request=SubscribeInput,
    responses={
        201: CheckoutUrlOutput,
        409: OpenApiResponse(ErrorOutput, description="Already subscribed"),
        502: OpenApiResponse(ErrorOutput, description="Stripe did not answer"),
    },
    parameters=[
        OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER, description="Retries with the same key open one checkout"
        )
    ],
    tags=["credits"],
)
@api_view(["POST"])
def subscribe(request):
    """Subscribe to a monthly plan: a Stripe Checkout in subscription mode whose `checkout_url`
    the customer pays at. Jobs are covered once Stripe says the first invoice is paid."""
    data = SubscribeInput(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        url = subscription_checkout_start(
            user=request.user,
            plan=data.validated_data["plan"],
            site_url=request.build_absolute_uri("/"),
            idempotency_key=request.headers.get("Idempotency-Key", "")[:100],
        )
    except AlreadySubscribed:
        return Response({"detail": ALREADY_SUBSCRIBED_MESSAGE, "code": "already_subscribed"}, status=409)
    except PaymentProviderError:
        return Response({"detail": PROVIDER_ERROR_MESSAGE, "code": "payment_provider_error"}, status=502)
    return Response(CheckoutUrlOutput({"checkout_url": url}).data, status=status.HTTP_201_CREATED)


@extend_schema(
    request=None,
    responses={
        201: PortalOutput,
        404: OpenApiResponse(ErrorOutput, description="No subscription yet"),
        502: OpenApiResponse(ErrorOutput, description="Stripe did not answer"),
    },
    tags=["credits"],
)
@api_view(["POST"])
def subscription_portal(request):
    """Stripe's customer portal for the caller's subscription: cancel it or change the card."""
    try:
        url = subscription_portal_url(user=request.user, return_url=request.build_absolute_uri(reverse("profile")))
    except NoCustomer:
        return Response({"detail": NO_CUSTOMER_MESSAGE, "code": "no_subscription"}, status=404)
    except PaymentProviderError:
        return Response({"detail": PROVIDER_ERROR_MESSAGE, "code": "payment_provider_error"}, status=502)
    return Response(PortalOutput({"portal_url": url}).data, status=status.HTTP_201_CREATED)


TRANSACTION_EXPORT_HEADER = ["id", "created_at", "kind", "amount", "balance_after", "description", "reference"]
_AMOUNT = serializers.DecimalField(max_digits=10, decimal_places=2)
_TIME = serializers.DateTimeField()


def _transaction_export_line(row) -> list:
    """One ledger row as `GET /api/credits/history` gives it (amounts "-1.00", ISO 8601 times)."""
    row_id, created_at, kind, amount, balance_after, description, reference = row
    return [
        row_id,
        _TIME.to_representation(created_at),
        kind,
        _AMOUNT.to_representation(amount),
        _AMOUNT.to_representation(balance_after),
        csv_text(description),
        csv_text(reference),
    ]


@extend_schema(
    responses={
        (200, "text/csv"): OpenApiResponse(str, description="A header row, then every ledger row, newest first")
    },
    tags=["credits"],
)
@api_view(["GET"])
@content_negotiation_class(FirstRendererNegotiation)
def history_export(request):
    """Your whole credit history as CSV (not a page of it), streamed: the columns of
    GET /api/credits/history, amounts as decimal strings, times in ISO 8601."""
    rows = map(_transaction_export_line, transaction_export_rows_for_user(user=request.user, chunk_size=FETCH_ROWS))
    return csv_response(filename="stemfold-credits.csv", header=TRANSACTION_EXPORT_HEADER, rows=rows)
