"""The short mails about a finished job: completed, or failed with its refund. Sent after the
job's state is committed; a mail that cannot be sent is logged and never fails the job."""

import logging
from functools import partial

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from separation.models import Job

logger = logging.getLogger(__name__)

TEMPLATES = {Job.Status.COMPLETED: "separation/email/job_completed", Job.Status.FAILED: "separation/email/job_failed"}


# Email backends that deliver to people; the console, file and in-memory ones are for development.
DELIVERING_BACKENDS = ("django.core.mail.backends.smtp.EmailBackend",)


def mail_settings_validate() -> None:
    """Stops a worker from starting in production when it would mail people links it cannot
    write: job mails link to the job page through SITE_URL."""
    if not settings.DEBUG and settings.EMAIL_BACKEND in DELIVERING_BACKENDS and not settings.SITE_URL:
        raise ImproperlyConfigured(
            "SITE_URL is required for workers that send job mails (EMAIL_URL is set and DEBUG is off): "
            "set it to this site's address, e.g. SITE_URL=https://stems.example.com"
        )


def _absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}" if settings.SITE_URL else ""


def job_finished_message(*, job: Job) -> EmailMultiAlternatives | None:
    """The mail for a completed or failed job, or None when its owner turned them off."""
    user = job.user
    prefix = TEMPLATES.get(job.status)
    if prefix is None or not user.email or not user.is_active or not user.email_on_job_finished:
        return None
    context = {
        "SITE_NAME": settings.SITE_NAME,
        "user": user,
        "job": job,
        "balance": user.credits,
        "retention_days": settings.JOB_RETENTION_DAYS,
        "job_url": _absolute(reverse("job", args=[job.pk])),
        "profile_url": _absolute(reverse("profile")),
    }
    subject = " ".join(render_to_string(f"{prefix}_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"{prefix}_message.txt", context).strip() + "\n",
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    )
    message.attach_alternative(render_to_string(f"{prefix}_message.html", context), "text/html")
    return message


def _send_job_finished(job_id) -> None:
    try:
        job = Job.objects.select_related("user").get(pk=job_id)
        message = job_finished_message(job=job)
        if message is None:
            return
        message.send()  # EMAIL_TIMEOUT bounds a mail server that does not answer
    except Exception:
        logger.exception("Could not send the job mail for job %s", job_id)


def notify_job_finished(*, job_id) -> None:
    """Mail the owner about a completed or failed job, once the surrounding transaction (if any)
    has committed. Never raises."""
    try:
        transaction.on_commit(partial(_send_job_finished, job_id))
    except Exception:
        logger.exception("Could not schedule the job mail for job %s", job_id)
