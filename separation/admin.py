from django.contrib import admin, messages

from separation.models import Job
from separation.services import job_refund_by_admin, job_requeue


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("created_at", "original_filename", "user", "model", "status", "progress", "cost", "attempts")
    list_filter = ("status", "model", "output_format", "created_at")
    search_fields = ("id", "original_filename", "user__username", "user__email", "error")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    actions = ["refund", "requeue"]
    readonly_fields = [field.name for field in Job._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the job stays beside its ledger rows; its files go by retention or the owner

    @admin.action(description="Refund the selected jobs (once each, through the ledger)", permissions=["change"])
    def refund(self, request, queryset):
        refunded = sum(job_refund_by_admin(job=job, admin=request.user) for job in queryset)
        skipped = len(queryset) - refunded
        self.message_user(
            request, f"Refunded {refunded} job(s); {skipped} had been refunded already.", messages.SUCCESS
        )

    @admin.action(description="Requeue the selected failed jobs (free retry)", permissions=["change"])
    def requeue(self, request, queryset):
        requeued = sum(job_requeue(job=job) for job in queryset)
        skipped = len(queryset) - requeued
        self.message_user(
            request, f"Requeued {requeued} job(s); {skipped} were not failed or have no stored input.", messages.SUCCESS
        )
