from django.shortcuts import get_object_or_404

from separation.models import Job


def job_get_for_user(*, user, job_id) -> Job:
    """The user's own job; anyone else's (or none) is a 404."""
    return get_object_or_404(Job, pk=job_id, user=user)


def jobs_for_user(*, user):
    return Job.objects.filter(user=user).order_by("-created_at")
