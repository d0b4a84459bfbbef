from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from demucs_service.statistics import statistics_collect
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

    def get_urls(self):
        # /admin/separation/job/statistics/, before the catch-all <object_id>/ routes; admin_view
        # sends anyone who is not active staff to the admin login.
        statistics = path(
            "statistics/",
            self.admin_site.admin_view(self.statistics_view),
            name="separation_job_statistics",
        )
        return [statistics, *super().get_urls()]

    def statistics_view(self, request):
        """Sign-ups, jobs, failure rate, credits, revenue and queue, with a chart."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        stats = statistics_collect()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Statistics",
            "subtitle": f"Last {len(stats.days)} days, and all time",
            "stats": stats,
            "chart_data": stats.chart_data(),
            "status_rows": [
                (label, stats.jobs_by_status[key], sum(stats.jobs_per_day_by_status[key]))
                for key, label in Job.Status.choices
            ],
        }
        return TemplateResponse(request, "admin/statistics.html", context)

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
