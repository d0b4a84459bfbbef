"""What the separation API reads and answers: its Input and Output serializers (the job's status
payload is also what webhooks deliver)."""

from decimal import Decimal
from urllib.parse import quote

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from separation.catalog import stem_label
from separation.models import Job


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
        return COST_FIELD.to_representation(self.context.get("refunds", {}).get(job.pk, Decimal(0)))

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_expires_at(self, job):
        expires = job.files_expire_at
        return None if expires is None else TIME_FIELD.to_representation(expires)

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
            "cost": COST_FIELD.to_representation(job.cost),
            "duration_seconds": float(job.duration_seconds),
            "created_at": TIME_FIELD.to_representation(job.created_at),
            "started_at": None if job.started_at is None else TIME_FIELD.to_representation(job.started_at),
            "finished_at": None if job.finished_at is None else TIME_FIELD.to_representation(job.finished_at),
            "error": str(job.error),
            "preview": bool(job.is_preview),
            "full_song_job_id": None if job.full_song_job_id is None else str(job.full_song_job_id),
            "refunded": COST_FIELD.to_representation(self.context.get("refunds", {}).get(job.pk, Decimal(0))),
            "expires_at": None if expires is None else TIME_FIELD.to_representation(expires),
            "files_deleted_at": None
            if job.files_deleted_at is None
            else TIME_FIELD.to_representation(job.files_deleted_at),
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
# Amounts and times as the API writes them (also the CSV export's columns).
COST_FIELD = serializers.DecimalField(max_digits=10, decimal_places=2)
TIME_FIELD = serializers.DateTimeField()


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
