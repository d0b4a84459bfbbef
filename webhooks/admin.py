"""Operators see endpoints and deliveries with their attempts (read-only: secrets are not shown,
and deliveries change only through the sender)."""

from django.contrib import admin

from webhooks.models import Attempt, Delivery, Endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "user", "events", "is_active", "failing_since", "disabled_at", "job", "created_at")
    list_filter = ("is_active",)
    search_fields = ("url", "user__username", "user__email")
    fields = ("user", "url", "events", "job", "is_active", "failing_since", "disabled_at", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


class AttemptInline(admin.TabularInline):
    model = Attempt
    fields = ("number", "started_at", "duration_ms", "status_code", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("message_id", "event", "endpoint", "job", "status", "attempts", "next_attempt_at", "created_at")
    list_filter = ("status", "event")
    search_fields = ("endpoint__url", "endpoint__user__username", "job__id")
    list_select_related = ("endpoint", "job")
    fields = ("endpoint", "job", "event", "status", "attempts", "next_attempt_at", "body", "created_at")
    readonly_fields = fields
    inlines = [AttemptInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
