import math
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from separation.catalog import PRICE_PERIOD_SECONDS, default_model_name, models_list
from separation.job_files import stored_file_response
from separation.mix_api import MixThrottle, mix_response
from separation.mixdowns import MixRefused
from separation.models import Job
from separation.previews import preview_full_song
from separation.queue_estimates import job_queue_estimate
from separation.scheduling import job_queue_positions
from separation.selectors import job_get_for_user, job_list_for_user, job_refunds
from separation.services import job_cancel, previews_used_today
from separation.storage_quota import storage_use
from separation.upload_errors import EmailNotVerified, NotEnoughCredits, UploadRefused
from separation.upload_gate import cheapest_job_cost, upload_gate, upload_request_read, upload_view
from separation.uploads import JobOptions
from separation.url_import import upload_accept_source


def _job_list_context(request) -> dict:
    jobs = Paginator(job_list_for_user(user=request.user), 20).get_page(request.GET.get("page"))
    refunded = job_refunds(jobs=jobs)
    for job in jobs:
        job.refunded = job.pk in refunded
    return {
        "jobs": jobs,
        "any_active": any(job.is_active for job in jobs),
        "retention_days": settings.JOB_RETENTION_DAYS,
    }


@login_required
def dashboard(request):
    available = models_list()
    installed = [model for model in available if model.installed]
    cheapest = cheapest_job_cost()
    context = {
        "models": installed,
        "stem_choices": list(dict.fromkeys(stem for model in installed for stem in model.stems)),
        "default_model": default_model_name(available),
        "formats": Job.Format.choices,
        "upload_token": uuid.uuid4().hex,
        "max_upload_mb": settings.MAX_UPLOAD_MB,
        "max_minutes": settings.MAX_DURATION_MINUTES,
        "storage": storage_use(user=request.user),
        "previews_left": max(0, settings.PREVIEWS_PER_DAY - previews_used_today(user=request.user)),
        "cheapest": cheapest,
        "cannot_pay": cheapest is not None and request.user.credits < cheapest,
        "price_period": PRICE_PERIOD_SECONDS,
        **_job_list_context(request),
    }
    return render(request, "separation/dashboard.html", context)


@login_required
def job_list_partial(request):
    return render(request, "separation/job_list.html", _job_list_context(request))


@upload_view
@login_required
@require_POST
def upload(request):
    def read_fields():
        options = JobOptions(
            model=request.POST.get("model") or default_model_name(models_list()),
            stems=request.POST.get("stems") or "all",
            output_format=request.POST.get("format") or "wav",
            preview=request.POST.get("preview") == "on",
            preview_start=_preview_start(request.POST.get("preview_start", "")),
        )
        return request.FILES.get("file"), request.POST.get("url", "").strip(), options

    try:
        uploaded_file, url, options = upload_request_read(request, read_fields=read_fields)
        job, _ = upload_accept_source(
            user=request.user,
            uploaded_file=uploaded_file,
            url=url,
            options=options,
            idempotency_key=request.POST.get("token", "")[:100],
        )
    except UploadRefused as refused:
        messages.error(request, _refusal_message(refused))
        return redirect("dashboard")
    return redirect("job", job_id=job.pk)


def _preview_start(text: str) -> float | None:
    """The form's start of a preview, "m:ss" or seconds; empty (or unreadable): the loudest part."""
    minutes, _, seconds = text.strip().rpartition(":")
    try:
        value = float(minutes or 0) * 60 + float(seconds)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@login_required
@require_POST
def full_song(request, job_id):
    preview = job_get_for_user(user=request.user, job_id=job_id)
    try:
        upload_gate(user=request.user, request=request)  # counted as an upload: it decodes a whole song
        job, _ = preview_full_song(preview=preview)
    except UploadRefused as refused:
        messages.error(request, _refusal_message(refused))
        return redirect("job", job_id=preview.pk)
    return redirect("job", job_id=job.pk)


def _refusal_message(refused: UploadRefused):
    """The API's sentence, with a way out where the page offers one."""
    if isinstance(refused, NotEnoughCredits):
        return format_html('{} <a href="{}">Buy credits</a>', str(refused), reverse("credits"))
    if isinstance(refused, EmailNotVerified):
        return (
            "Verify your email address before uploading: follow the link we emailed you, "
            "or use “Resend verification email” above."
        )
    return str(refused)


# The job page waits this long after completion for the tempo and key (separation/analysis.py).
ANALYSIS_WAIT = timedelta(minutes=10)


def _job_context(request, job_id) -> dict:
    job = job_get_for_user(user=request.user, job_id=job_id)
    return {
        "job": job,
        "queue_position": job_queue_positions(jobs=[job]).get(job.pk),
        "estimate": job_queue_estimate(job=job),
        "refunded": job_refunds(jobs=[job]).get(job.pk),
        "formats": Job.Format.choices,
        "analysis_pending": job.analysis is None
        and bool(job.stems)
        and job.finished_at is not None
        and timezone.now() - job.finished_at < ANALYSIS_WAIT,
    }


@login_required
def job_page(request, job_id):
    return render(request, "separation/job.html", _job_context(request, job_id))


@login_required
def job_status_partial(request, job_id):
    return render(request, "separation/job_status.html", _job_context(request, job_id))


@login_required
def job_analysis_partial(request, job_id):
    return render(request, "separation/job_analysis.html", _job_context(request, job_id))


@login_required
def waveform(request, job_id, stem):
    found = job_get_for_user(user=request.user, job_id=job_id).stem(stem)
    if found is None:
        raise Http404("No such stem")
    return stored_file_response(request, found["waveform"], download_name=f"{stem}.png", attachment=False)


@login_required
@require_POST
def delete(request, job_id):
    job = job_get_for_user(user=request.user, job_id=job_id)
    was_active = job.is_active
    job_cancel(job=job)
    if was_active:
        refunded = floatformat(job.cost, "-2")
        if not job.cost:
            messages.success(request, f"Cancelled the free preview of {job.original_filename}.")
        else:
            credits = f"{refunded} credit was" if job.cost == 1 else f"{refunded} credits were"
            messages.success(request, f"Cancelled {job.original_filename}; your {credits} refunded.")
    else:
        messages.success(request, f"Deleted the files of {job.original_filename}.")
    return redirect("dashboard")


@login_required
@require_POST
def mix(request, job_id):
    """The page's "Download this mix": the mixer's volumes as gain_<stem> fields (a muted stem
    sends 0), streamed as an attachment; a refusal comes back as a message on the job page."""
    job = job_get_for_user(user=request.user, job_id=job_id)
    try:
        if not MixThrottle().allow_request(request, None):
            raise MixRefused("You are making mixes too often; please wait a little.", status=429)
        gains = {}
        for name in job.stem_names:
            value = request.POST.get(f"gain_{name}")
            if value is not None:
                try:
                    gains[name] = float(value)
                except ValueError:
                    raise MixRefused(f"The gain of {name!r} must be a number.", status=400) from None
        return mix_response(job, gains, request.POST.get("format") or None)
    except MixRefused as refused:
        messages.error(request, str(refused))
        return redirect("job", job_id=job.pk)
