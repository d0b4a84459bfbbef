"""Jobs made the way the product makes them, and what the ledger and the queue hold for them
(plain functions, shared by the worker, reaper and admin tests)."""

from __future__ import annotations

from django.core.files.uploadedfile import TemporaryUploadedFile
from django_q.models import OrmQ

from credits.models import CreditTransaction
from separation.models import Job
from separation.scheduling import SEPARATE_TASK
from separation.uploads import JobOptions, upload_accept
from testkit.audio import tone_bytes

REFUND_KINDS = [CreditTransaction.Kind.JOB_REFUND, CreditTransaction.Kind.ADMIN_REFUND]


def make_job(
    user, name="My Song.wav", *, content: bytes | None = None, model="demo", output_format="wav", stems="all"
) -> Job:
    """Through the upload service the API and the pages use (checks, store, create, charge).
    `content` defaults to a two-second stereo wav."""
    content = tone_bytes() if content is None else content
    upload = TemporaryUploadedFile(name, "audio/wav", len(content), None)
    try:
        upload.write(content)
        upload.seek(0)
        options = JobOptions(model=model, stems=stems, output_format=output_format)
        job, created = upload_accept(user=user, uploaded_file=upload, options=options)
    finally:
        upload.close()
    assert created
    return job


def refunds(job):
    """The job's refunds in the ledger, automatic or by an admin."""
    return CreditTransaction.objects.filter(reference=f"job:{job.pk}", kind__in=REFUND_KINDS)


def tokens_queued() -> int:
    """How many separation tokens (scheduling.py) wait in the django-q2 ORM queue."""
    return sum(1 for row in OrmQ.objects.all() if row.task.get("func") == SEPARATE_TASK)
