from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from credits.packs import pack_get, packs_list
from credits.selectors import transactions_for_user
from credits.services import IdempotencyConflict, credits_purchase_simulated


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
    responses={201: PurchaseOutput},
    parameters=[
        OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER, description="Retries with the same key buy once"
        )
    ],
    tags=["credits"],
)
@api_view(["POST"])
def purchase(request):
    """Buy a pack. Simulated: no payment provider is configured, so no money is taken."""
    data = PurchaseInput(data=request.data)
    data.is_valid(raise_exception=True)
    pack = data.validated_data["package"]
    try:
        posting = credits_purchase_simulated(
            user=request.user, pack=pack, idempotency_key=request.headers.get("Idempotency-Key", "")[:100]
        )
    except IdempotencyConflict as conflict:
        return Response({"detail": str(conflict)}, status=status.HTTP_409_CONFLICT)
    request.user.refresh_from_db(fields=["credits"])
    output = {
        "credits": request.user.credits,
        "simulated": True,
        "package": pack,
        "transaction": posting.transaction,
    }
    return Response(
        PurchaseOutput(output).data, status=status.HTTP_201_CREATED if posting.created else status.HTTP_200_OK
    )


@extend_schema(tags=["credits"])
class HistoryView(generics.ListAPIView):
    """The ledger, newest first, 20 to a page."""

    serializer_class = TransactionOutput

    def get_queryset(self):
        return transactions_for_user(user=self.request.user)
