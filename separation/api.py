from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.decorators import api_view, parser_classes, permission_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from separation.catalog import default_model_name, models_list
from separation.downloads import file_response
from separation.models import Job
from separation.scheduling import job_queue_positions
from separation.selectors import job_get_for_user, job_list_for_user
from separation.services import job_cancel
from separation.upload_errors import (
    UploadRefused,
    upload_refusal_headers,
    upload_refusal_payload,
    upload_refusal_status,
)
from separation.upload_gate import upload_request_read, upload_view
from separation.uploads import JobOptions, upload_accept


class QualityOutput(serializers.Serializer):
    sdr = serializers.DictField(child=serializers.FloatField(), help_text="Published SDR per stem, in dB")
    overall = serializers.FloatField(allow_null=True, help_text="Published average SDR, in dB")
    dataset = serializers.CharField()
    source = serializers.CharField(help_text="Where the figures are published")


class ModelOutput(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    family = serializers.CharField(help_text="demucs, roformer or ensemble")
    stems = serializers.ListField(child=serializers.CharField())
    price_multiplier = serializers.IntegerField(help_text="Credits per started 10 minutes of audio")
    quality = QualityOutput(allow_null=True, help_text="Published quality; null where none is published")
    speed = serializers.FloatField(allow_null=True, help_text="A job's time relative to htdemucs's, measured here")
    licence = serializers.CharField(help_text="The licence of the weights")
    commercial = serializers.BooleanField(help_text="The weights' licence allows commercial use")
    parts = serializers.DictField(child=serializers.CharField(), help_text="An ensemble's model per stem")
    installed = serializers.BooleanField()
    untrained = serializers.BooleanField()
    default = serializers.BooleanField()


class StemOutput(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.CharField()


class JobOutput(serializers.Serializer):
    job_id = serializers.UUIDField(source="id")
    status = serializers.CharField()
    progress = serializers.IntegerField()
    filename = serializers.CharField(source="original_filename")
    model = serializers.CharField()
    stems = serializers.CharField(source="stem_mode")
    format = serializers.CharField(source="output_format")
    cost = serializers.DecimalField(max_digits=10, decimal_places=2)
    duration_seconds = serializers.FloatField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()
    queue_position = serializers.SerializerMethodField(
        help_text="While the job waits, its place in the queue (1: it starts next); otherwise null"
    )
    download_url = serializers.SerializerMethodField()
    stem_files = serializers.SerializerMethodField()

    def _url(self, name, *args):
        return self.context["request"].build_absolute_uri(reverse(name, args=args))

    def get_queue_position(self, job) -> int | None:
        return self.context.get("queue_positions", {}).get(job.pk)

    def get_download_url(self, job) -> str | None:
        return self._url("api-download", job.pk) if job.zip_file else None

    @extend_schema_field(StemOutput(many=True))
    def get_stem_files(self, job) -> list[dict]:
        return [{"name": name, "url": self._url("api-download-stem", job.pk, name)} for name in job.stem_names]

    def to_representation(self, job) -> dict:
        """What the declared fields give (tests/test_list_query_counts.py compares the two), written out:
        DRF copies every declared field for each serializer it makes, which was a fifth of the cost
        of `GET /api/status/<id>`, the endpoint clients poll (bench/web.py). One reverse() for all the
        URLs: a stem's is its job's download URL and /<stem> (the api-download-stem route)."""
        names = job.stem_names
        download_url = self._url("api-download", job.pk) if job.zip_file or names else None
        return {
            "job_id": str(job.id),
            "status": str(job.status),
            "progress": int(job.progress),
            "filename": str(job.original_filename),
            "model": str(job.model),
            "stems": str(job.stem_mode),
            "format": str(job.output_format),
            "cost": _COST.to_representation(job.cost),
            "duration_seconds": float(job.duration_seconds),
            "created_at": _TIME.to_representation(job.created_at),
            "started_at": None if job.started_at is None else _TIME.to_representation(job.started_at),
            "finished_at": None if job.finished_at is None else _TIME.to_representation(job.finished_at),
            "error": str(job.error),
            "queue_position": self.context.get("queue_positions", {}).get(job.pk),
            "download_url": download_url if job.zip_file else None,
            "stem_files": [{"name": name, "url": f"{download_url}/{quote(name, safe=PATH_SAFE)}"} for name in names],
        }


# Unbound fields formatting values as the declared ones do (JobOutput.to_representation), and the
# characters reverse() leaves unquoted in a path.
PATH_SAFE = "!$&'()*+,;=~:@"
_COST = serializers.DecimalField(max_digits=10, decimal_places=2)
_TIME = serializers.DateTimeField()


class UploadInput(serializers.Serializer):
    file = serializers.FileField(help_text=f"WAV, MP3, FLAC or OGG, at most {settings.MAX_UPLOAD_MB} MB")
    model = serializers.CharField(required=False, help_text="A model name from /api/models")
    stems = serializers.CharField(required=False, default="all", help_text="all, or one stem for two-stem mode")
    format = serializers.ChoiceField(choices=Job.Format.values, required=False, default="wav")


class RefusalOutput(serializers.Serializer):
    detail = serializers.CharField(help_text="What is wrong, for a person")
    code = serializers.CharField(required=False, help_text="What is wrong, for a program (absent on field errors)")


class UploadOutput(serializers.Serializer):
    job_id = serializers.UUIDField()
    status = serializers.CharField()
    cost = serializers.DecimalField(max_digits=10, decimal_places=2)
    credits_remaining = serializers.DecimalField(max_digits=10, decimal_places=2)


@extend_schema(responses={200: ModelOutput(many=True)}, tags=["separation"])
@api_view(["GET"])
@permission_classes([AllowAny])
def models(request):
    """The catalogue: each model on offer, its stems, published quality, measured speed, price,
    licence, and whether it is installed here."""
    available = models_list()
    default = default_model_name(available)
    return Response(
        ModelOutput(
            [{**model.__dict__, "untrained": model.untrained, "default": model.name == default} for model in available],
            many=True,
        ).data
    )


@upload_view
@extend_schema(
    request={"multipart/form-data": UploadInput},
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            str,
            OpenApiParameter.HEADER,
            description="Retries with one key and the same file and options make one job; other content: 409",
        )
    ],
    responses={
        202: UploadOutput,
        200: OpenApiResponse(UploadOutput, description="The job an earlier request with this Idempotency-Key made"),
        400: OpenApiResponse(RefusalOutput, description="Bad options, no file, empty, too short or too long"),
        402: OpenApiResponse(RefusalOutput, description="Not enough credits: {detail, code, credits, cost}"),
        403: OpenApiResponse(RefusalOutput, description="Email not verified (EMAIL_VERIFICATION=mandatory)"),
        409: OpenApiResponse(RefusalOutput, description="Storage quota full, or an Idempotency-Key reused"),
        413: OpenApiResponse(RefusalOutput, description="Over MAX_UPLOAD_MB"),
        415: OpenApiResponse(RefusalOutput, description="Not audio we can read"),
        429: OpenApiResponse(RefusalOutput, description="Uploading too often (THROTTLE_UPLOAD); see Retry-After"),
        503: OpenApiResponse(RefusalOutput, description="The queue is unavailable; the charge was refunded"),
        507: OpenApiResponse(RefusalOutput, description="The server's disk is full; nothing was stored or charged"),
    },
    tags=["separation"],
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def upload(request):
    """Upload a song to separate. Before anything is stored or charged it is checked: the gate (a
    verified address, not uploading too often, credits for the cheapest song, room in the storage
    quota) before the body is read, then size, type by content and the true duration, decoded."""

    def read_fields():
        data = UploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        options = JobOptions(
            model=fields.get("model") or default_model_name(models_list()),
            stems=fields["stems"],
            output_format=fields["format"],
        )
        return fields["file"], options

    try:
        uploaded_file, options = upload_request_read(request, read_fields=read_fields)
        job, created = upload_accept(
            user=request.user,
            uploaded_file=uploaded_file,
            options=options,
            idempotency_key=request.headers.get("Idempotency-Key", "")[:100],
        )
    except UploadRefused as refused:
        return Response(
            upload_refusal_payload(refused),
            status=upload_refusal_status(refused),
            headers=upload_refusal_headers(refused),
        )
    if not created:  # an earlier job for this Idempotency-Key; job_create set the balance of a new one
        request.user.refresh_from_db(fields=["credits"])
    output = {"job_id": job.pk, "status": job.status, "cost": job.cost, "credits_remaining": request.user.credits}
    return Response(UploadOutput(output).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


@extend_schema(responses={200: JobOutput}, tags=["separation"])
@api_view(["GET"])
def job_status(request, job_id):
    """A job's status and progress; once completed, its download URLs."""
    job = job_get_for_user(user=request.user, job_id=job_id)
    context = {"request": request, "queue_positions": job_queue_positions(jobs=[job])}
    return Response(JobOutput(job, context=context).data)


@extend_schema(tags=["separation"])
class JobListView(generics.ListAPIView):
    """Your jobs, newest first."""

    serializer_class = JobOutput

    def get_queryset(self):
        return job_list_for_user(user=self.request.user)

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        context = {**self.get_serializer_context(), "queue_positions": job_queue_positions(jobs=page)}
        return self.get_paginated_response(JobOutput(page, many=True, context=context).data)


def _not_ready(job: Job) -> Response:
    if job.status == Job.Status.COMPLETED and job.files_deleted_at is not None:
        return Response({"detail": "The files of this job have been deleted."}, status=status.HTTP_410_GONE)
    return Response(
        {"detail": f"The job is not completed (status {job.status}).", "status": job.status},
        status=status.HTTP_409_CONFLICT,
    )


@extend_schema(
    responses={(200, "application/zip"): bytes, 409: OpenApiResponse(description="Not completed")}, tags=["separation"]
)
@api_view(["GET"])
def download(request, job_id):
    """All stems in one zip."""
    job = job_get_for_user(user=request.user, job_id=job_id)
    if not job.zip_file:
        return _not_ready(job)
    return file_response(request, Path(settings.MEDIA_ROOT) / job.zip_file, download_name=f"{job.title} - stems.zip")


@extend_schema(
    operation_id="download_stem",
    responses={(200, "audio/*"): bytes, 404: OpenApiResponse(description="No such stem")},
    tags=["separation"],
)
@api_view(["GET"])
def download_stem(request, job_id, stem):
    """One stem, with byte ranges for players."""
    job = job_get_for_user(user=request.user, job_id=job_id)
    if not job.stems:
        return _not_ready(job)
    found = job.stem(stem)
    if found is None:
        return Response({"detail": f"This job has no stem {stem!r}."}, status=status.HTTP_404_NOT_FOUND)
    path = Path(settings.MEDIA_ROOT) / found["file"]
    return file_response(request, path, download_name=f"{job.title} - {stem}{path.suffix}")


@extend_schema(responses={200: JobOutput}, tags=["separation"])
@api_view(["DELETE"])
def delete_job(request, job_id):
    """Cancel a waiting or running job (refunded), or delete a finished job's files. The job's
    record and its ledger rows stay."""
    job = job_cancel(job=job_get_for_user(user=request.user, job_id=job_id))
    return Response(JobOutput(job, context={"request": request}).data)
