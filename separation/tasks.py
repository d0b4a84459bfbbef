"""django-q2 entry points: thin, taking ids and calling services."""

from separation import services


def separate_job(job_id: str) -> None:
    services.job_run(job_id=job_id)


def reap_jobs() -> dict[str, int]:
    return services.jobs_reap()


def delete_expired_job_files() -> int:
    return services.jobs_delete_expired()
