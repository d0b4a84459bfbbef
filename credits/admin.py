from django.contrib import admin

from credits.models import CreditTransaction


@admin.register(CreditTransaction)
class CreditTransactionAdmin(admin.ModelAdmin):
    """Read-only: the ledger changes only through credits.services."""

    list_display = ("created_at", "user", "kind", "amount", "balance_after", "description", "reference")
    list_filter = ("kind", "created_at")
    search_fields = ("user__username", "user__email", "reference", "description")
    list_select_related = ("user",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
