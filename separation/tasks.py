"""django-q2 entry points: thin, taking ids and calling services."""

from demucs_service.log_context import job_context
from separation import services


def separate_job(job_id: str) -> None:
    with job_context(job_id):  # every log line of the run names the job
        services.job_run(job_id=job_id)


def reap_jobs() -> dict[str, int]:
    return services.jobs_reap()


def delete_expired_job_files() -> int:
    return services.jobs_delete_expired()
