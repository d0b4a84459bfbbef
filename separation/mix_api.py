"""POST /api/jobs/<id>/mix: the stems mixed with the owner's gains, streamed (pages use it too)."""

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from separation.downloads import CONTENT_TYPES
from separation.mixdowns import MAX_GAIN, MixRefused, job_mix
from separation.models import Job
from separation.selectors import job_get_for_user
from separation.serializers import RefusalOutput


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
