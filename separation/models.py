import uuid
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models


def job_folder(job_id) -> str:
    """Where a job's files live, relative to MEDIA_ROOT."""
    return f"jobs/{job_id}"


class Job(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING", "Waiting"
        PROCESSING = "PROCESSING", "Separating"
        COMPLETED = "COMPLETED", "Done"
        FAILED = "FAILED", "Failed"
        CANCELLED = "CANCELLED", "Cancelled"

    class Format(models.TextChoices):
        WAV = "wav", "WAV (16-bit)"
        FLAC = "flac", "FLAC (lossless)"
        MP3 = "mp3", "MP3 (320 kbps)"

    ACTIVE = (Status.PENDING, Status.PROCESSING)
    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    original_filename = models.CharField(max_length=255)
    # Relative to MEDIA_ROOT; emptied when the files are deleted.
    input_file = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=50)
    # "all", or the stem kept in two-stem mode (the rest is mixed into no_<stem>).
    stem_mode = models.CharField(max_length=30, default="all")
    output_format = models.CharField(max_length=4, choices=Format.choices, default=Format.WAV)
    cost = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    duration_seconds = models.FloatField()
    # Our own count of claims: django-q2 does not count attempts killed by SIGKILL or the OOM killer.
    # It only grows: each run writes its own folder and every write of a run is fenced by its number.
    attempts = models.PositiveSmallIntegerField(default=0)
    # Claims allowed in all: JOB_MAX_ATTEMPTS, raised (never rewound) by an operator's requeue.
    attempt_budget = models.PositiveSmallIntegerField(default=0)
    # Stems in output order: [{"name", "file", "waveform"}], paths relative to MEDIA_ROOT.
    stems = models.JSONField(default=list, blank=True)
    zip_file = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    # What the key was used for (the file's hash and the options): the same key with other content is refused.
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)
    # Bytes counted against the owner's storage quota: the upload and an estimate of the outputs and
    # temporary files while the job runs, what is on disk once it ends, 0 once the files are deleted.
    storage_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set when retention (or the owner) deleted the files; the job and its ledger rows stay.
    files_deleted_at = models.DateTimeField(null=True, blank=True)
    # A free preview separates only an excerpt (its input_file, cut from the decoded song at upload)
    # and costs nothing; the whole song stays in source_file for "Separate the full song".
    is_preview = models.BooleanField(default=False)
    preview_start_seconds = models.FloatField(null=True, blank=True)
    source_file = models.CharField(max_length=255, blank=True)
    # The paid job made from this preview's song: at most one per preview.
    full_song_job = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="preview_of"
    )
    # Tempo and key, measured after completion on the maintenance cluster (separation/analysis.py):
    # {bpm, tempo_confidence, key, key_confidence, seconds}, or {error}; null until then.
    analysis = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="job_user_newest"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
            models.Index(fields=["user", "status"], name="job_user_status"),
            models.Index(fields=["user", "started_at"], name="job_user_started"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="job_progress_at_most_100"),
            # Only a preview is free, and a preview is always free.
            models.CheckConstraint(
                condition=models.Q(is_preview=False, cost__gt=0) | models.Q(is_preview=True, cost=0),
                name="job_cost_positive_unless_preview",
            ),
            models.CheckConstraint(condition=models.Q(storage_bytes__gte=0), name="job_storage_not_negative"),
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="job_user_idempotency_key_unique",
            ),
        ]

    def __str__(self):
        return f"{self.original_filename} ({self.get_status_display()})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def expires_at(self):
        """When retention deletes the files of a finished job (separation/maintenance.py)."""
        if self.finished_at is None:
            return None
        return self.finished_at + timedelta(days=settings.JOB_RETENTION_DAYS)

    @property
    def title(self) -> str:
        """The original file name without its extension, for display and download names."""
        return PurePosixPath(self.original_filename).stem or "song"

    @property
    def files_expire_at(self):
        """When retention deletes the files of a finished job (maintenance.jobs_delete_expired);
        None while it runs and once they are gone."""
        if self.status not in self.FINISHED or self.finished_at is None or self.files_deleted_at is not None:
            return None
        return self.finished_at + timedelta(days=settings.JOB_RETENTION_DAYS)

    @property
    def stem_names(self) -> list[str]:
        return [stem["name"] for stem in self.stems]

    def stem(self, name: str) -> dict | None:
        return next((stem for stem in self.stems if stem["name"] == name), None)
