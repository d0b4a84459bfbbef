import uuid
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from credits.services import InsufficientCredits
from separation.catalog import default_model_name, models_list
from separation.downloads import file_response
from separation.models import Job
from separation.selectors import job_get_for_user, jobs_for_user
from separation.services import QueueUnavailable, job_cancel
from separation.uploads import EmailNotVerified, UploadRejected, upload_accept


def _job_list_context(request) -> dict:
    jobs = Paginator(jobs_for_user(user=request.user), 20).get_page(request.GET.get("page"))
    return {"jobs": jobs, "any_active": any(job.is_active for job in jobs)}


@login_required
def dashboard(request):
    available = models_list()
    installed = [model for model in available if model.installed]
    context = {
        "models": installed,
        "stem_choices": list(dict.fromkeys(stem for model in installed for stem in model.stems)),
        "default_model": default_model_name(available),
        "formats": Job.Format.choices,
        "upload_token": uuid.uuid4().hex,
        "max_upload_mb": settings.MAX_UPLOAD_MB,
        "max_minutes": settings.MAX_DURATION_MINUTES,
        **_job_list_context(request),
    }
    return render(request, "separation/dashboard.html", context)


@login_required
def job_list_partial(request):
    return render(request, "separation/job_list.html", _job_list_context(request))


@login_required
@require_POST
def upload(request):
    def read_fields():
        return (
            request.FILES.get("file"),
            request.POST.get("model") or default_model_name(models_list()),
            request.POST.get("stems") or "all",
            request.POST.get("format") or "wav",
        )

    try:
        job, _ = upload_accept(request, read_fields=read_fields, idempotency_key=request.POST.get("token", "")[:100])
    except EmailNotVerified:
        messages.error(
            request,
            "Verify your email address before uploading: follow the link we emailed you, "
            "or use “Resend verification email” above.",
        )
        return redirect("dashboard")
    except UploadRejected as rejected:
        messages.error(request, str(rejected))
        return redirect("dashboard")
    except InsufficientCredits as short:
        messages.error(
            request,
            format_html(
                'Not enough credits: this song costs {} and you have {}. <a href="{}">Buy credits</a>',
                floatformat(short.required, "-2"),
                floatformat(short.balance, "-2"),
                reverse("credits"),
            ),
        )
        return redirect("dashboard")
    except QueueUnavailable as unavailable:
        messages.error(request, str(unavailable))
        return redirect("dashboard")
    return redirect("job", job_id=job.pk)


@login_required
def job_page(request, job_id):
    return render(request, "separation/job.html", {"job": job_get_for_user(user=request.user, job_id=job_id)})


@login_required
def job_status_partial(request, job_id):
    return render(request, "separation/job_status.html", {"job": job_get_for_user(user=request.user, job_id=job_id)})


@login_required
def waveform(request, job_id, stem):
    found = job_get_for_user(user=request.user, job_id=job_id).stem(stem)
    if found is None:
        raise Http404("No such stem")
    return file_response(
        request, Path(settings.MEDIA_ROOT) / found["waveform"], download_name=f"{stem}.png", attachment=False
    )


@login_required
@require_POST
def delete(request, job_id):
    job = job_get_for_user(user=request.user, job_id=job_id)
    was_active = job.is_active
    job_cancel(job=job)
    if was_active:
        refunded = floatformat(job.cost, "-2")
        messages.success(request, f"Cancelled {job.original_filename}; your {refunded} credit(s) were refunded.")
    else:
        messages.success(request, f"Deleted the files of {job.original_filename}.")
    return redirect("dashboard")
