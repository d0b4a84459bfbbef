from pathlib import Path

from django.conf import settings
from django.shortcuts import get_object_or_404

from separation.models import Job


def job_get_for_user(*, user, job_id) -> Job:
    """The user's own job; anyone else's (or none) is a 404."""
    return get_object_or_404(Job, pk=job_id, user=user)


def job_list_for_user(*, user):
    return Job.objects.filter(user=user).order_by("-created_at")


def completed_jobs_missing_files() -> list[str]:
    """A line for each job marked COMPLETED whose files are neither deleted nor all on disk."""
    media = Path(settings.MEDIA_ROOT)
    problems = []
    completed = Job.objects.filter(status=Job.Status.COMPLETED, files_deleted_at__isnull=True)
    for job in completed.only("pk", "user_id", "stems", "zip_file").iterator():
        files = [job.zip_file, *(stem["file"] for stem in job.stems)]
        missing = [name for name in files if not name or not (media / name).is_file()]
        if not job.stems or missing:
            problems.append(
                f"job {job.pk} (user {job.user_id}) is COMPLETED without its files: {missing or 'no stems'}"
            )
    return problems
