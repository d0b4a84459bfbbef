from django.contrib import admin

from credits.models import CreditTransaction, Payment, PaymentReversal


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written only by services: the admin shows them and changes nothing."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdmin):
    """Read-only: the ledger changes only through credits.services."""

    list_display = ("created_at", "user", "kind", "amount", "balance_after", "description", "reference")
    list_filter = ("kind", "created_at")
    search_fields = ("user__username", "user__email", "reference", "description")
    list_select_related = ("user",)
    date_hierarchy = "created_at"


class ShortfallFilter(admin.SimpleListFilter):
    title = "shortfall"
    parameter_name = "shortfall"

    def lookups(self, request, model_admin):
        return [("yes", "Credits not recovered"), ("no", "None")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(credits_shortfall__gt=0)
        if self.value() == "no":
            return queryset.filter(credits_shortfall=0)
        return queryset


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    """Read-only: payments change only through the provider's webhooks. A shortfall is credits that
    were refunded or disputed after the customer had spent them: settle it with the customer."""

    list_display = (
        "created_at",
        "user",
        "provider",
        "pack_id",
        "credits",
        "amount",
        "currency",
        "status",
        "amount_reversed",
        "credits_reversed",
        "credits_shortfall",
        "provider_session_id",
    )
    list_filter = ("status", "provider", ShortfallFilter, "created_at")
    search_fields = ("user__username", "user__email", "provider_session_id", "payment_intent_id")
    list_select_related = ("user",)
    date_hierarchy = "created_at"


@admin.register(PaymentReversal)
class PaymentReversalAdmin(ReadOnlyAdmin):
    """Refunds and disputes as the provider reported them, matched to payments by payment intent."""

    list_display = ("created_at", "provider", "kind", "provider_reversal_id", "payment_intent_id", "amount", "currency")
    list_filter = ("kind", "provider", "created_at")
    search_fields = ("provider_reversal_id", "payment_intent_id", "charge_id")
