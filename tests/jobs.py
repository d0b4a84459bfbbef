"""Jobs made the way the product makes them, and what the ledger and the queue hold for them
(plain functions, shared by the worker, reaper and admin tests)."""

from __future__ import annotations

from django.core.files.uploadedfile import TemporaryUploadedFile
from django_q.models import OrmQ

from credits.models import CreditTransaction
from separation.catalog import model_get
from separation.models import Job
from separation.services import job_create
from separation.uploads import upload_validate
from tests.audio import tone_bytes

REFUND_KINDS = [CreditTransaction.Kind.JOB_REFUND, CreditTransaction.Kind.ADMIN_REFUND]


def make_job(user, name="My Song.wav", *, content: bytes | None = None, model="demo", output_format="wav") -> Job:
    """Through the upload path: probe the temporary upload, then job_create (store, create, charge).
    `content` defaults to a two-second stereo wav."""
    content = tone_bytes() if content is None else content
    upload = TemporaryUploadedFile(name, "audio/wav", len(content), None)
    try:
        upload.write(content)
        upload.seek(0)
        audio = upload_validate(uploaded_file=upload)
        job, created = job_create(
            user=user,
            uploaded_file=upload,
            audio=audio,
            model=model_get(model),
            stem_mode="all",
            output_format=output_format,
        )
    finally:
        upload.close()
    assert created
    return job


def refunds(job):
    """The job's refunds in the ledger, automatic or by an admin."""
    return CreditTransaction.objects.filter(reference=f"job:{job.pk}", kind__in=REFUND_KINDS)


def queued(job) -> int:
    """How many separation tasks for this job wait in the django-q2 ORM queue."""
    return sum(
        1
        for row in OrmQ.objects.all()
        if row.task.get("func") == "separation.tasks.separate_job" and list(row.task.get("args") or ()) == [str(job.pk)]
    )
