"""GET /api/jobs/export: every job of the caller as CSV, streamed."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import api_view, content_negotiation_class

from demucs_service.csv_export import FETCH_ROWS, FirstRendererNegotiation, csv_response, csv_text
from separation.selectors import job_export_rows_for_user
from separation.serializers import COST_FIELD, TIME_FIELD

JOB_EXPORT_HEADER = [
    "job_id",
    "status",
    "progress",
    "filename",
    "model",
    "stems",
    "format",
    "cost",
    "duration_seconds",
    "created_at",
    "started_at",
    "finished_at",
    "error",
]


def _job_export_line(row) -> list:
    """One job as `GET /api/jobs` gives it (amounts "1.00", ISO 8601 times), in JOB_EXPORT_HEADER's order."""
    (
        job_id,
        status_,
        progress,
        filename,
        model,
        stems,
        output_format,
        cost,
        duration,
        created,
        started,
        finished,
        error,
    ) = row
    return [
        str(job_id),
        status_,
        progress,
        csv_text(filename),
        model,
        stems,
        output_format,
        COST_FIELD.to_representation(cost),
        float(duration),
        TIME_FIELD.to_representation(created),
        "" if started is None else TIME_FIELD.to_representation(started),
        "" if finished is None else TIME_FIELD.to_representation(finished),
        csv_text(error),
    ]


@extend_schema(
    responses={(200, "text/csv"): OpenApiResponse(str, description="A header row, then every job, newest first")},
    tags=["separation"],
)
@api_view(["GET"])
@content_negotiation_class(FirstRendererNegotiation)
def jobs_export(request):
    """All your jobs as CSV (not a page of them), streamed: the columns of GET /api/jobs, amounts as
    decimal strings, times in ISO 8601, empty for none."""
    rows = map(_job_export_line, job_export_rows_for_user(user=request.user, chunk_size=FETCH_ROWS))
    return csv_response(filename="stemfold-jobs.csv", header=JOB_EXPORT_HEADER, rows=rows)
