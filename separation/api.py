from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.decorators import (
    api_view,
    content_negotiation_class,
    parser_classes,
    permission_classes,
    throttle_classes,
)
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from demucs_service.csv_export import FETCH_ROWS, FirstRendererNegotiation, csv_response, csv_text
from separation.catalog import default_model_name, models_list, stem_label
from separation.downloads import CONTENT_TYPES
from separation.job_files import stored_file_response
from separation.mixdowns import MAX_GAIN, MixRefused, job_mix
from separation.models import Job
from separation.previews import preview_full_song
from separation.scheduling import job_queue_positions
from separation.selectors import job_export_rows_for_user, job_get_for_user, job_list_for_user, job_refunds
from separation.services import job_cancel
from separation.upload_errors import (
    UploadRefused,
    upload_refusal_headers,
    upload_refusal_payload,
    upload_refusal_status,
)
from separation.upload_gate import upload_gate, upload_request_read, upload_view
from separation.uploads import JobOptions
from separation.url_import import upload_accept_source
from webhooks.services import WebhookRefused, callback_register, callback_url_check


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
    label = serializers.CharField(help_text='For people: "Instrumental (no vocals)" for no_vocals')
    url = serializers.CharField()


class AnalysisOutput(serializers.Serializer):
    bpm = serializers.FloatField(allow_null=True, required=False, help_text="Tempo in beats per minute")
    tempo_confidence = serializers.FloatField(required=False, help_text="0 to 1")
    key = serializers.CharField(allow_null=True, required=False, help_text='"C major", "A minor", ...')
    key_confidence = serializers.FloatField(required=False, help_text="0 to 1")
    seconds = serializers.FloatField(required=False, help_text="How much of the song was measured")
    error = serializers.CharField(required=False, help_text="Only when it could not be measured")


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
    preview = serializers.BooleanField(source="is_preview", help_text="A free preview of a 30-second excerpt")
    full_song_job_id = serializers.UUIDField(
        allow_null=True, help_text="For a preview: the paid job of its whole song, once made"
    )
    refunded = serializers.SerializerMethodField(help_text="Credits given back for this job (cancelled, failed)")
    expires_at = serializers.SerializerMethodField(help_text="When the files will be deleted; null once they are")
    files_deleted_at = serializers.DateTimeField(allow_null=True, help_text="When the files were deleted, or null")
    analysis = serializers.SerializerMethodField(
        help_text="Tempo and key, measured shortly after completion; null until then"
    )
    queue_position = serializers.SerializerMethodField(
        help_text="While the job waits, its place in the queue (1: it starts next); otherwise null"
    )
    download_url = serializers.SerializerMethodField()
    stem_files = serializers.SerializerMethodField()

    def _url(self, name, *args):
        # Without a request (a webhook's payload, built by a worker), links start with SITE_URL.
        request = self.context.get("request")
        path = reverse(name, args=args)
        return request.build_absolute_uri(path) if request is not None else f"{settings.SITE_URL}{path}"

    def get_queue_position(self, job) -> int | None:
        return self.context.get("queue_positions", {}).get(job.pk)

    @extend_schema_field(serializers.DecimalField(max_digits=10, decimal_places=2))
    def get_refunded(self, job) -> str:
        return _COST.to_representation(self.context.get("refunds", {}).get(job.pk, Decimal(0)))

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_expires_at(self, job):
        expires = job.files_expire_at
        return None if expires is None else _TIME.to_representation(expires)

    @extend_schema_field(AnalysisOutput(allow_null=True))
    def get_analysis(self, job) -> dict | None:
        return job.analysis

    def get_download_url(self, job) -> str | None:
        return self._url("api-download", job.pk) if job.zip_file else None

    @extend_schema_field(StemOutput(many=True))
    def get_stem_files(self, job) -> list[dict]:
        return [
            {"name": name, "label": stem_label(name), "url": self._url("api-download-stem", job.pk, name)}
            for name in job.stem_names
        ]

    def to_representation(self, job) -> dict:
        """What the declared fields give (tests/test_list_query_counts.py compares the two), written out:
        DRF copies every declared field for each serializer it makes, which was a fifth of the cost
        of `GET /api/status/<id>`, the endpoint clients poll (bench/web.py). One reverse() for all the
        URLs: a stem's is its job's download URL and /<stem> (the api-download-stem route)."""
        names = job.stem_names
        download_url = self._url("api-download", job.pk) if job.zip_file or names else None
        expires = job.files_expire_at
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
            "preview": bool(job.is_preview),
            "full_song_job_id": None if job.full_song_job_id is None else str(job.full_song_job_id),
            "refunded": _COST.to_representation(self.context.get("refunds", {}).get(job.pk, Decimal(0))),
            "expires_at": None if expires is None else _TIME.to_representation(expires),
            "files_deleted_at": None if job.files_deleted_at is None else _TIME.to_representation(job.files_deleted_at),
            "analysis": job.analysis,
            "queue_position": self.context.get("queue_positions", {}).get(job.pk),
            "download_url": download_url if job.zip_file else None,
            "stem_files": [
                {"name": name, "label": stem_label(name), "url": f"{download_url}/{quote(name, safe=PATH_SAFE)}"}
                for name in names
            ],
        }


# Unbound fields formatting values as the declared ones do (JobOutput.to_representation), and the
# characters reverse() leaves unquoted in a path.
PATH_SAFE = "!$&'()*+,;=~:@"
_COST = serializers.DecimalField(max_digits=10, decimal_places=2)
_TIME = serializers.DateTimeField()


class UploadInput(serializers.Serializer):
    file = serializers.FileField(
        required=False, help_text=f"WAV, MP3, FLAC or OGG, at most {settings.MAX_UPLOAD_MB} MB; or give `url`"
    )
    # Checked by the fetch's own rules (separation/safe_fetch.py), as the page's field is.
    url = serializers.CharField(
        required=False,
        max_length=2048,
        help_text="Instead of `file`: an http(s) address the server fetches the song from (public addresses only)",
    )
    model = serializers.CharField(required=False, help_text="A model name from /api/models")
    stems = serializers.CharField(required=False, default="all", help_text="all, or one stem for two-stem mode")
    format = serializers.ChoiceField(choices=Job.Format.values, required=False, default="wav")
    callback_url = serializers.CharField(
        required=False,
        max_length=2000,
        help_text="An http(s) URL told when this job ends (job.completed, job.failed, job.cancelled), signed "
        "with the callback_secret of the answer, as webhooks are",
    )
    preview = serializers.BooleanField(
        required=False, default=False, help_text="Separate a free 30-second excerpt (PREVIEWS_PER_DAY a day)"
    )
    preview_start = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        help_text="Where the preview's excerpt starts, in seconds; by default the song's most energetic 30 seconds",
    )


class RefusalOutput(serializers.Serializer):
    detail = serializers.CharField(help_text="What is wrong, for a person")
    code = serializers.CharField(required=False, help_text="What is wrong, for a program (absent on field errors)")


class UploadOutput(serializers.Serializer):
    job_id = serializers.UUIDField()
    status = serializers.CharField()
    cost = serializers.DecimalField(max_digits=10, decimal_places=2)
    credits_remaining = serializers.DecimalField(max_digits=10, decimal_places=2)
    callback_secret = serializers.CharField(
        required=False, help_text="With a callback_url: the whsec_ secret its deliveries are signed with"
    )


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


class UploadUrlInput(serializers.Serializer):
    url = serializers.CharField(max_length=2048, help_text="An http(s) address the server fetches the song from")
    model = serializers.CharField(required=False, help_text="A model name from /api/models")
    stems = serializers.CharField(required=False, default="all", help_text="all, or one stem for two-stem mode")
    format = serializers.ChoiceField(choices=Job.Format.values, required=False, default="wav")


@upload_view
@extend_schema(
    request={"multipart/form-data": UploadInput, "application/json": UploadUrlInput},
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
        400: OpenApiResponse(
            RefusalOutput,
            description="Bad options, no file, empty, too short or too long; a `url` the server does not fetch "
            "(not http(s), a private address, a redirect to another host)",
        ),
        402: OpenApiResponse(RefusalOutput, description="Not enough credits: {detail, code, credits, cost}"),
        403: OpenApiResponse(RefusalOutput, description="Email not verified (EMAIL_VERIFICATION=mandatory)"),
        409: OpenApiResponse(RefusalOutput, description="Storage quota full, or an Idempotency-Key reused"),
        413: OpenApiResponse(RefusalOutput, description="Over MAX_UPLOAD_MB"),
        415: OpenApiResponse(RefusalOutput, description="Not audio we can read"),
        422: OpenApiResponse(
            RefusalOutput, description="The `url` did not answer with a file (no host, error, timeout)"
        ),
        429: OpenApiResponse(
            RefusalOutput,
            description="Uploading too often (THROTTLE_UPLOAD; see Retry-After), or no free preview left today",
        ),
        503: OpenApiResponse(RefusalOutput, description="The queue is unavailable; the charge was refunded"),
        507: OpenApiResponse(RefusalOutput, description="The server's disk is full; nothing was stored or charged"),
    },
    tags=["separation"],
)
@api_view(["POST"])
@parser_classes([MultiPartParser, JSONParser])
def upload(request):
    """Upload a song to separate, as a multipart `file`, or as `url` (multipart or JSON) for the server
    to fetch. Before anything is stored or charged it is checked: the gate (a verified address, not
    uploading too often, credits for the cheapest song, room in the storage quota) before the body
    is read or the address fetched, then size, type by content and the true duration, decoded."""

    def read_fields():
        data = UploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        options = JobOptions(
            model=fields.get("model") or default_model_name(models_list()),
            stems=fields["stems"],
            output_format=fields["format"],
            preview=fields["preview"],
            preview_start=fields["preview_start"] if fields["preview"] else None,
        )
        if fields.get("callback_url"):
            try:
                callback_url_check(url=fields["callback_url"])  # before anything is stored or charged
            except WebhookRefused as refused:
                raise serializers.ValidationError({"callback_url": [str(refused)]}) from None
        return fields.get("file"), fields.get("url", ""), options, fields.get("callback_url", "")

    try:
        uploaded_file, url, options, callback_url = upload_request_read(request, read_fields=read_fields)
        idempotency_key = request.headers.get("Idempotency-Key", "")[:100]
        job, created = upload_accept_source(
            user=request.user, uploaded_file=uploaded_file, url=url, options=options, idempotency_key=idempotency_key
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
    if callback_url:
        # Right after the job commits, long before its separation can end; a retry with the same
        # Idempotency-Key keeps the first callback (and answers its secret again).
        output["callback_secret"] = callback_register(job=job, url=callback_url).secret
    return Response(UploadOutput(output).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


@extend_schema(
    request=None,
    responses={
        202: UploadOutput,
        200: OpenApiResponse(UploadOutput, description="The full song's job, made before"),
        402: OpenApiResponse(RefusalOutput, description="Not enough credits: {detail, code, credits, cost}"),
        409: OpenApiResponse(RefusalOutput, description="Not a preview, its song deleted, or the storage quota full"),
        429: OpenApiResponse(RefusalOutput, description="Uploading too often (THROTTLE_UPLOAD); see Retry-After"),
    },
    tags=["separation"],
)
@api_view(["POST"])
def full_song(request, job_id):
    """Separate the whole song of a free preview, charged like an upload of it, without uploading
    it again (once per preview: asking again returns the same job)."""
    preview = job_get_for_user(user=request.user, job_id=job_id)
    try:
        upload_gate(user=request.user, request=request)  # counted as an upload: it decodes a whole song
        job, created = preview_full_song(preview=preview)
    except UploadRefused as refused:
        return Response(
            upload_refusal_payload(refused),
            status=upload_refusal_status(refused),
            headers=upload_refusal_headers(refused),
        )
    request.user.refresh_from_db(fields=["credits"])
    output = {"job_id": job.pk, "status": job.status, "cost": job.cost, "credits_remaining": request.user.credits}
    return Response(UploadOutput(output).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


@extend_schema(responses={200: JobOutput}, tags=["separation"])
@api_view(["GET"])
def job_status(request, job_id):
    """A job's status and progress; once completed, its download URLs."""
    job = job_get_for_user(user=request.user, job_id=job_id)
    context = {
        "request": request,
        "queue_positions": job_queue_positions(jobs=[job]),
        "refunds": job_refunds(jobs=[job]),
    }
    return Response(JobOutput(job, context=context).data)


@extend_schema(tags=["separation"])
class JobListView(generics.ListAPIView):
    """Your jobs, newest first."""

    serializer_class = JobOutput

    def get_queryset(self):
        return job_list_for_user(user=self.request.user)

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        context = {
            **self.get_serializer_context(),
            "queue_positions": job_queue_positions(jobs=page),
            "refunds": job_refunds(jobs=page),
        }
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
    return stored_file_response(request, job.zip_file, download_name=f"{job.title} - stems.zip")


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
    suffix = Path(found["file"]).suffix
    return stored_file_response(request, found["file"], download_name=f"{job.title} - {stem}{suffix}")


@extend_schema(responses={200: JobOutput}, tags=["separation"])
@api_view(["DELETE"])
def delete_job(request, job_id):
    """Cancel a waiting or running job (refunded), or delete a finished job's files. The job's
    record and its ledger rows stay."""
    job = job_cancel(job=job_get_for_user(user=request.user, job_id=job_id))
    return Response(JobOutput(job, context={"request": request, "refunds": job_refunds(jobs=[job])}).data)


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
        _COST.to_representation(cost),
        float(duration),
        _TIME.to_representation(created),
        "" if started is None else _TIME.to_representation(started),
        "" if finished is None else _TIME.to_representation(finished),
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


class MixThrottle(SimpleRateThrottle):
    """Mixes per user (THROTTLE_MIX): each one is a pass over every stem on a web worker."""

    scope = "mix"

    def get_rate(self):
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class MixInput(serializers.Serializer):
    gains = serializers.DictField(
        child=serializers.FloatField(min_value=0, max_value=MAX_GAIN),
        required=False,
        default=dict,
        help_text=f"Stem name -> gain from 0 (muted) to {MAX_GAIN:g}; a stem left out keeps 1",
    )
    format = serializers.ChoiceField(
        choices=Job.Format.values, required=False, allow_null=True, default=None, help_text="Default: the job's"
    )


def mix_response(job: Job, gains: dict, output_format: str | None):
    """The mix streamed as an attachment; pages and API alike. Raises MixRefused."""
    mix = job_mix(job=job, gains=gains, output_format=output_format)
    response = StreamingHttpResponse(mix.chunks, content_type=CONTENT_TYPES[f".{mix.output_format}"])
    response["Content-Disposition"] = content_disposition_header(True, mix.download_name)
    return response


@extend_schema(
    request=MixInput,
    responses={
        (200, "audio/*"): bytes,
        400: OpenApiResponse(RefusalOutput, description="An unknown stem, a gain out of range, a bad format"),
        404: OpenApiResponse(description="No such job of yours"),
        409: OpenApiResponse(RefusalOutput, description="The job is not completed"),
        410: OpenApiResponse(RefusalOutput, description="The job's files have been deleted"),
        429: OpenApiResponse(RefusalOutput, description="Mixing too often (THROTTLE_MIX)"),
    },
    tags=["separation"],
)
@api_view(["POST"])
@throttle_classes([MixThrottle])
def mix(request, job_id):
    """One file of the stems mixed with the given gains (the sum of the stems times their gains,
    clipped to 16 bits), in the job's format unless another is asked for, streamed as it is made."""
    job = job_get_for_user(user=request.user, job_id=job_id)
    data = MixInput(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        return mix_response(job, data.validated_data["gains"], data.validated_data["format"])
    except MixRefused as refused:
        return Response({"detail": str(refused)}, status=refused.status)
