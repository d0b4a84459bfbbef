from pathlib import Path

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.decorators import (
    api_view,
    parser_classes,
    permission_classes,
)
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from separation.catalog import default_model_name, models_list
from separation.job_files import stored_file_response
from separation.models import Job
from separation.previews import preview_full_song
from separation.scheduling import job_queue_positions
from separation.selectors import job_get_for_user, job_list_for_user, job_refunds
from separation.serializers import JobOutput, ModelOutput, RefusalOutput, UploadInput, UploadOutput
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
