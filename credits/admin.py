from urllib.parse import quote

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import DecimalField, F, Sum
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from credits.models import (
    OPEN_SHORTFALL,
    AccountOwing,
    CreditTransaction,
    Payment,
    PaymentReversal,
    Subscription,
    SubscriptionUse,
)
from credits.shortfalls import payment_shortfall_collect, payment_shortfall_waive

# Characters of a long ledger reference shown in the list (the rest in its tooltip).
REFERENCE_SHOWN = 24
# The provider's dashboard page of a payment, by its payment id (Stripe's payment intent, Square's payment).
PAYMENT_PAGES = {
    Payment.Provider.STRIPE: "https://dashboard.stripe.com/payments/{}",
    Payment.Provider.SQUARE: "https://squareup.com/dashboard/sales/transactions/{}",
}


def short_reference(reference: str, *, url: str = ""):
    """A provider's id or other long reference cut to REFERENCE_SHOWN characters, whole in its
    tooltip (and searchable in full); a link to `url` in a new tab when there is one. None (the
    admin's empty mark) for no reference."""
    if not reference:
        return None
    shown = reference if len(reference) <= REFERENCE_SHOWN else f"{reference[:REFERENCE_SHOWN]}…"
    if url:
        return format_html(
            '<a href="{}" title="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, reference, shown
        )
    if shown != reference:
        return format_html('<span title="{}">{}</span>', reference, shown)
    return reference


def payment_link(*, provider: str, payment_id: str):
    """The payment's id, linked to its page in the provider's dashboard."""
    page = PAYMENT_PAGES.get(provider)
    return short_reference(payment_id, url=page.format(quote(payment_id, safe="")) if page and payment_id else "")


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

    list_display = ("created_at", "user", "kind", "amount", "balance_after", "description", "reference_link")
    list_filter = ("kind", "created_at")
    search_fields = ("user__username", "user__email", "reference", "description")
    list_select_related = ("user",)
    date_hierarchy = "created_at"

    @admin.display(description="Reference", ordering="reference")
    def reference_link(self, obj):
        """A job's reference links to the job; a long one (a hash, a provider's id) is cut short,
        whole in its tooltip and searchable in full."""
        kind, _, rest = obj.reference.partition(":")
        if kind == "job" and rest:
            url = reverse("admin:separation_job_change", args=[rest])
            return format_html('<a href="{}" title="{}">job {}…</a>', url, obj.reference, rest[:8])
        return short_reference(obj.reference)


class ShortfallFilter(admin.SimpleListFilter):
    title = "shortfall"
    parameter_name = "shortfall"

    def lookups(self, request, model_admin):
        return [("open", "Still owed"), ("yes", "Credits not recovered"), ("no", "None")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(open_shortfall__gt=0)
        if self.value() == "yes":
            return queryset.filter(credits_shortfall__gt=0)
        if self.value() == "no":
            return queryset.filter(credits_shortfall=0)
        return queryset


class WaiveShortfallForm(forms.Form):
    reason = forms.CharField(
        max_length=200, help_text="Why: settled with the customer outside the service, forgiven, ..."
    )


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    """Payments change only through the provider's webhooks. A shortfall is credits refunded or
    disputed after the customer had spent them: credits coming back to the account repay it
    first; an operator can collect it from the balance or waive it, with a reason."""

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
        "open_shortfall",
        "credits_reinstated",
        "session_reference",
        "payment_reference",
    )
    list_filter = ("status", "provider", ShortfallFilter, "created_at")
    search_fields = ("user__username", "user__email", "provider_session_id", "payment_intent_id")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    actions = ["waive_shortfall", "collect_shortfall"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(open_shortfall=OPEN_SHORTFALL)

    @admin.display(description="Still owed", ordering="open_shortfall")
    def open_shortfall(self, obj):
        return obj.open_shortfall

    @admin.display(description="Checkout (session or order)", ordering="provider_session_id")
    def session_reference(self, obj):
        return short_reference(obj.provider_session_id)

    @admin.display(description="Payment", ordering="payment_intent_id")
    def payment_reference(self, obj):
        return payment_link(provider=obj.provider, payment_id=obj.payment_intent_id)

    def has_settle_permission(self, request):
        return request.user.has_perm("credits.change_payment")

    @admin.action(description="Waive the open shortfall of the selected payments", permissions=["settle"])
    def waive_shortfall(self, request, queryset):
        if "apply" in request.POST:
            form = WaiveShortfallForm(request.POST)
            if form.is_valid():
                waived = [
                    payment_shortfall_waive(payment=payment, reason=form.cleaned_data["reason"], waived_by=request.user)
                    for payment in queryset
                ]
                self.message_user(
                    request,
                    f"Waived {sum(waived):.2f} credits owed on {len([w for w in waived if w])} payment(s).",
                    messages.SUCCESS,
                )
                return None
        else:
            form = WaiveShortfallForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Waive open shortfalls",
            "form": form,
            "payments": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/credits/payment/waive_shortfall.html", context)

    @admin.action(description="Collect the open shortfall from the customer's balance", permissions=["settle"])
    def collect_shortfall(self, request, queryset):
        taken = [payment_shortfall_collect(payment=payment, collected_by=request.user) for payment in queryset]
        self.message_user(request, f"Took {sum(taken):.2f} credits from the customers' balances.", messages.SUCCESS)


@admin.register(AccountOwing)
class AccountOwingAdmin(ReadOnlyAdmin):
    """Users whose refunded or disputed payments left credits owed: their balance stays at zero
    until credits coming back repay it, or an operator waives it on the payment."""

    list_display = ("username", "email", "credits", "open_shortfall", "payments_link")
    search_fields = ("username", "email")

    def get_queryset(self, request):
        owed = Sum(
            F("payments__credits_shortfall")
            - F("payments__credits_shortfall_repaid")
            - F("payments__credits_shortfall_waived")
            - F("payments__credits_shortfall_cancelled"),
            output_field=DecimalField(max_digits=10, decimal_places=2),
        )
        # Ordered here, after the annotation it orders by (ModelAdmin.ordering would come before it).
        owing = super().get_queryset(request).annotate(open_shortfall=owed).filter(open_shortfall__gt=0)
        return owing.order_by("-open_shortfall", "pk")

    @admin.display(description="Still owed", ordering="open_shortfall")
    def open_shortfall(self, obj):
        return obj.open_shortfall

    @admin.display(description="Payments")
    def payments_link(self, obj):
        url = reverse("admin:credits_payment_changelist") + f"?user__id__exact={obj.pk}&shortfall=open"
        return format_html('<a href="{}">Payments still owed</a>', url)


@admin.register(PaymentReversal)
class PaymentReversalAdmin(ReadOnlyAdmin):
    """Refunds and disputes as the provider reported them, matched to payments by payment intent."""

    list_display = ("created_at", "provider", "kind", "reversal_reference", "payment_reference", "amount", "currency")
    list_filter = ("kind", "provider", "created_at")
    search_fields = ("provider_reversal_id", "payment_intent_id", "charge_id")

    @admin.display(description="Refund or dispute", ordering="provider_reversal_id")
    def reversal_reference(self, obj):
        return short_reference(obj.provider_reversal_id)

    @admin.display(description="Payment", ordering="payment_intent_id")
    def payment_reference(self, obj):
        return payment_link(provider=obj.provider, payment_id=obj.payment_intent_id)


class SubscriptionUseInline(admin.TabularInline):
    model = SubscriptionUse
    fields = ("job_id", "seconds", "created_at", "released_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Read-only: Stripe's events change subscriptions; people cancel in Stripe's customer portal,
    operators in the Stripe dashboard (its event then arrives here)."""

    list_display = (
        "created_at",
        "user",
        "plan_id",
        "status",
        "covers_jobs",
        "paid_through",
        "grace_until",
        "cancel_at_period_end",
        "amount",
        "currency",
        "ended_at",
    )
    list_filter = ("status", "plan_id", "cancel_at_period_end")
    search_fields = ("user__username", "user__email", "provider_subscription_id", "provider_customer_id")
    list_select_related = ("user",)
    inlines = [SubscriptionUseInline]

    @admin.display(boolean=True, description="Covers jobs now")
    def covers_jobs(self, obj):
        return obj.covers_jobs
