import uuid
from decimal import Decimal

from allauth.account.admin import EmailAddressAdmin as AllauthEmailAddressAdmin
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialApp, SocialToken
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Subquery
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from rest_framework_api_key.models import APIKey

from accounts.models import User, UserAPIKey
from accounts.services import api_key_revoke, email_address_verify, user_save_new
from credits.models import CreditTransaction
from credits.services import credits_admin_grant

LEDGER_ROWS_SHOWN = 50


class GrantCreditsForm(forms.Form):
    amount = forms.DecimalField(min_value=Decimal("0.01"), max_digits=10, decimal_places=2)
    reason = forms.CharField(max_length=200, help_text="Shown to the user in their credit history.")
    token = forms.CharField(widget=forms.HiddenInput)


class CreditTransactionInline(admin.TabularInline):
    model = CreditTransaction
    fields = ("created_at", "kind", "amount", "balance_after", "description", "reference")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = f"Credit ledger (latest {LEDGER_ROWS_SHOWN} rows)"

    def get_queryset(self, request):
        latest = CreditTransaction.objects.order_by("-id").values("id")
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.kwargs.get("object_id"):
            latest = latest.filter(user_id=request.resolver_match.kwargs["object_id"])[:LEDGER_ROWS_SHOWN]
            queryset = queryset.filter(id__in=Subquery(latest))
        return queryset.order_by("-id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "credits", "is_active", "is_staff", "date_joined")
    list_filter = ("is_active", "is_staff", "is_superuser", "date_joined")
    search_fields = ("username", "email")
    ordering = ("-date_joined",)
    readonly_fields = ("credits", "ledger_link", "last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Credits", {"fields": ("credits", "ledger_link")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),)
    inlines = [CreditTransactionInline]
    actions = ["grant_credits"]

    @admin.display(description="Ledger")
    def ledger_link(self, obj):
        url = reverse("admin:credits_credittransaction_changelist") + f"?user__id__exact={obj.pk}"
        return format_html('<a href="{}">All transactions</a>', url)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
        else:
            user_save_new(user=obj)

    @admin.action(description="Grant credits to the selected users", permissions=["change"])
    def grant_credits(self, request, queryset):
        if "apply" in request.POST:
            form = GrantCreditsForm(request.POST)
            if form.is_valid():
                for user in queryset:
                    credits_admin_grant(
                        user=user,
                        amount=form.cleaned_data["amount"],
                        reason=form.cleaned_data["reason"],
                        granted_by=request.user,
                        request_token=form.cleaned_data["token"],
                    )
                self.message_user(
                    request,
                    f"Granted {form.cleaned_data['amount']} credits to {len(queryset)} user(s).",
                    messages.SUCCESS,
                )
                return None
        else:
            form = GrantCreditsForm(initial={"token": uuid.uuid4().hex})
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant credits",
            "form": form,
            "users": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/accounts/user/grant_credits.html", context)


# allauth's, with every way of marking an address verified going through email_address_verify,
# which grants the signup bonus.
admin.site.unregister(EmailAddress)


@admin.register(EmailAddress)
class EmailAddressAdmin(AllauthEmailAddressAdmin):
    @admin.action(description="Mark selected email addresses as verified (grants the signup bonus)")
    def make_verified(self, request, queryset):
        for address in queryset.filter(verified=False).select_related("user"):
            if email_address_verify(address=address).verified:
                self.message_user(request, f"Marked {address.email} as verified.", messages.SUCCESS)
            else:
                self.message_user(request, f"{address.email} is verified on another account.", messages.ERROR)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.verified:
            email_address_verify(address=obj)


# Social login apps come from the environment only (accounts.social.adapter ignores the database's),
# and provider tokens are not stored: allauth's pages for them would only mislead. Its "Social
# accounts" stay: who is connected to what, and a way to remove a connection.
admin.site.unregister(SocialApp)
admin.site.unregister(SocialToken)
# The library's own key model is unused (keys belong to users: UserAPIKey).
admin.site.unregister(APIKey)


@admin.register(UserAPIKey)
class UserAPIKeyAdmin(admin.ModelAdmin):
    """Operators see and revoke keys; only their owners make them (the whole key is shown once, to them)."""

    list_display = ("prefix", "name", "user", "created", "last_used_at", "expiry_date", "revoked")
    list_filter = ("revoked", "created")
    search_fields = ("prefix", "name", "user__username", "user__email")
    list_select_related = ("user",)
    readonly_fields = ("prefix", "name", "user", "created", "last_used_at", "expiry_date", "revoked")
    fields = readonly_fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked=False):
            api_key_revoke(api_key=api_key)
        self.message_user(request, "Revoked the selected keys.", messages.SUCCESS)
