"""django-q2 entry points: thin, taking ids (or nothing) and calling services.

`separate_next_job` runs on the separation cluster; the others are scheduled on the maintenance
cluster, so they never wait behind a separation (separation/migrations/0004_maintenance_cluster.py).
"""

from demucs_service.observability.log_context import job_context
from separation import analysis, maintenance
from separation.scheduling import job_claim_next
from separation.worker import job_run, through_database_outage


def separate_next_job() -> None:
    """A token from the separation queue: run the fairest job that can start now, if any."""
    job = through_database_outage(job_claim_next)
    if job is None:
        return
    with job_context(str(job.pk)):  # every log line of the run names the job
        job_run(job=job)


def jobs_reap() -> dict[str, int]:
    return maintenance.jobs_reap()


def jobs_delete_expired() -> dict[str, int]:
    return maintenance.jobs_delete_expired()


def job_analyse(job_id: str) -> None:
    """Tempo and key of a completed job, queued on the maintenance cluster by the worker."""
    with job_context(job_id):
        analysis.job_analyse(job_id=job_id)
