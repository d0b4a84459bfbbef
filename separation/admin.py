from datetime import date, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from accounts.selectors import SignupStatistics, signup_statistics
from credits.selectors import credit_statistics, revenue_statistics, subscription_statistics
from separation.models import Job
from separation.selectors import JobStatistics, broker_queue_statistics, job_statistics
from separation.services import job_refund_by_admin, job_requeue

STATISTICS_DAYS = 30


def statistics_days(*, count: int = STATISTICS_DAYS) -> list[date]:
    """The statistics page's period: the last `count` calendar days in TIME_ZONE, today last."""
    today = timezone.localdate()
    return [today - timedelta(days=n) for n in reversed(range(count))]


def statistics_chart_data(*, days: list[date], signups: SignupStatistics, jobs: JobStatistics) -> dict:
    """What static/js/admin-statistics.js draws; JSON-safe."""
    return {
        "days": [day.isoformat() for day in days],
        "signups": signups.per_day,
        "jobsByStatus": [
            {"label": label, "key": key, "data": jobs.per_day_by_status[key]} for key, label in Job.Status.choices
        ],
        "jobsByModel": [{"label": name, "data": data} for name, data in jobs.per_day_by_model.items()],
    }


class RefundForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        help_text="Why: kept in the job's history for the team; the customer sees “refunded by support”.",
    )


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
        models = path("models/", self.admin_site.admin_view(self.models_view), name="separation_job_models")
        return [statistics, models, *super().get_urls()]

    def models_view(self, request):
        """The model catalogue as `install_model --list` shows it: installed or not, size on disk,
        licence, quality, speed and price."""
        from django.conf import settings

        from separation.catalog import CATALOGUE, models_list
        from separation.model_install import size_on_disk

        if not self.has_view_permission(request):
            raise PermissionDenied
        offered = models_list()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Models",
            "rows": [(model, size_on_disk(model.name, settings.DEMUCS_MODEL_REPO)) for model in offered],
            "not_offered": [
                (name, entry) for name, entry in CATALOGUE.items() if name not in {m.name for m in offered}
            ],
            "model_repo": settings.DEMUCS_MODEL_REPO,
        }
        return TemplateResponse(request, "admin/separation/models.html", context)

    def statistics_view(self, request):
        """Sign-ups, jobs, failure rate, credits, revenue and queue, with a chart."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        days = statistics_days()
        signups = signup_statistics(days=days)
        jobs = job_statistics(days=days)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Statistics",
            "subtitle": f"Last {len(days)} days, and all time",
            "days": days,
            "signups": signups,
            "jobs": jobs,
            "ledger": credit_statistics(),
            "revenue": revenue_statistics(),
            "subscriptions": subscription_statistics(),
            "broker_queue": broker_queue_statistics(),
            "chart_data": statistics_chart_data(days=days, signups=signups, jobs=jobs),
            "status_rows": [
                (label, jobs.by_status[key], jobs.in_period_by_status[key]) for key, label in Job.Status.choices
            ],
        }
        return TemplateResponse(request, "admin/statistics.html", context)

    def has_delete_permission(self, request, obj=None):
        return False  # the job stays beside its ledger rows; its files go by retention or the owner

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Every field is read-only (the change permission is for the actions): nothing to save.
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Refund the selected jobs (once each, through the ledger)", permissions=["change"])
    def refund(self, request, queryset):
        """Asks for a confirmation and a reason first. The customer's ledger says "refunded by
        support"; who refunded and why is kept in the job's admin history."""
        form = RefundForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            refunded = 0
            for job in queryset:
                if job_refund_by_admin(job=job, admin=request.user):
                    refunded += 1
                    self.log_change(request, job, f"Refunded {job.cost} credits: {reason}")
            skipped = len(queryset) - refunded
            self.message_user(
                request,
                f"Refunded {refunded} job{pluralize(refunded)}; {skipped} had been refunded already.",
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Refund jobs",
            "form": form,
            "jobs": queryset.select_related("user"),
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/separation/job/refund.html", context)

    @admin.action(description="Requeue the selected failed jobs (free retry)", permissions=["change"])
    def requeue(self, request, queryset):
        requeued = sum(job_requeue(job=job) for job in queryset)
        skipped = len(queryset) - requeued
        self.message_user(
            request,
            f"Requeued {requeued} job{pluralize(requeued)}; {skipped} were not failed or have no stored input.",
            messages.SUCCESS,
        )
