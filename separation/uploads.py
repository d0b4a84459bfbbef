"""Checking an uploaded song before anything is charged: size while it streams in, then
type by content and duration."""

import re
import unicodedata
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from separation import engine

MIN_DURATION_SECONDS = 1.0
# Room for the form's other fields around the file in a multipart body.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class UploadRejected(Exception):
    def __init__(self, message: str, status_code: int):
        super().__init__(message)
        self.status_code = status_code


class EmailNotVerified(UploadRejected):
    """EMAIL_VERIFICATION=mandatory and the uploader has no verified email address."""

    code = "email_not_verified"

    def __init__(self):
        super().__init__(
            "Verify your email address before uploading: follow the link we emailed you, "
            "or ask for a new one (POST /api/auth/verify-email/resend, or the button on the site).",
            403,
        )


def upload_check_email_verified(*, user) -> None:
    """The email verification gate: checked before the body is read or anything is charged."""
    from accounts.selectors import user_needs_email_verification

    if user_needs_email_verification(user=user):
        raise EmailNotVerified()


def max_upload_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024


def too_large() -> UploadRejected:
    return UploadRejected(f"The file is larger than the {settings.MAX_UPLOAD_MB} MB limit.", 413)


class SizeLimitedUploadHandler(FileUploadHandler):
    """Stops an upload once it passes MAX_UPLOAD_MB, whatever its Content-Length claimed,
    so an oversized file is never written to disk in full. Installed for every request
    (FILE_UPLOAD_HANDLERS), since the CSRF check may read a form's body before the view."""

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > max_upload_bytes():
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None


def upload_check_declared_size(request) -> None:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > max_upload_bytes() + MULTIPART_OVERHEAD_BYTES:
        raise too_large()


def display_filename(name: str) -> str:
    """The client's file name made safe to show and to put in a download name: no folders,
    no control characters, at most 255 characters (keeping the extension)."""
    name = PurePosixPath(name.replace("\\", "/")).name
    name = "".join(char for char in name if unicodedata.category(char)[0] != "C").strip(" .")
    if len(name) > 255:
        stem, dot, extension = name.rpartition(".")
        name = f"{stem[: 254 - len(extension)]}.{extension}" if dot and len(extension) <= 10 else name[:255]
    return name or "upload"


def storage_extension(filename: str) -> str:
    """A short alphanumeric extension from the client's name, or none: never a path part."""
    extension = PurePosixPath(filename).suffix.lower()
    return extension if re.fullmatch(r"\.[a-z0-9]{1,5}", extension) else ""


def upload_validate(*, uploaded_file) -> engine.AudioInfo:
    if uploaded_file.size == 0:
        raise UploadRejected("The file is empty.", 400)
    if uploaded_file.size > max_upload_bytes():
        raise too_large()
    try:
        audio = engine.probe_audio(Path(uploaded_file.temporary_file_path()))
    except engine.AudioDecodeError:
        raise UploadRejected("This file is not audio we can read. Upload a WAV, MP3, FLAC or OGG file.", 415) from None
    if audio.duration_seconds > settings.MAX_DURATION_MINUTES * 60:
        raise UploadRejected(
            f"The song is {audio.duration_seconds / 60:.1f} minutes long; "
            f"the limit is {settings.MAX_DURATION_MINUTES} minutes.",
            400,
        )
    if audio.duration_seconds < MIN_DURATION_SECONDS:
        raise UploadRejected(f"The audio is shorter than {MIN_DURATION_SECONDS:g} second.", 400)
    return audio


def job_options_validate(*, model_name: str, stems: str, output_format: str):
    """The requested model, stem mode and format, or UploadRejected (400) saying what is wrong."""
    from separation.catalog import model_get, models_list
    from separation.models import Job

    model = model_get(model_name)
    if model is None:
        names = ", ".join(model.name for model in models_list())
        raise UploadRejected(f"Unknown model {model_name!r}; choose one of: {names}.", 400)
    if not model.installed:
        raise UploadRejected(f"The model {model_name!r} is not installed on this server.", 400)
    if stems != "all" and stems not in model.stems:
        raise UploadRejected(
            f"The model {model_name!r} has no stem {stems!r}; choose all or one of: {', '.join(model.stems)}.", 400
        )
    if output_format not in Job.Format.values:
        raise UploadRejected(f"Unknown format {output_format!r}; choose one of: {', '.join(Job.Format.values)}.", 400)
    return model


def upload_accept(request, *, read_fields, idempotency_key: str = ""):
    """The one upload flow behind the API and the page: size while streaming, options, content and
    duration, then the job with its charge. `read_fields` parses the body (the caller's parser)
    and returns (file, model, stems, format). Raises UploadRejected, InsufficientCredits or
    QueueUnavailable; returns (job, created)."""
    from separation.services import job_create

    upload_check_email_verified(user=request.user)
    upload_check_declared_size(request)
    try:
        uploaded_file, model_name, stems, output_format = read_fields()
    except Exception:
        if getattr(request, "upload_too_large", False):
            raise too_large() from None  # the missing file is the cut-off one
        raise
    if getattr(request, "upload_too_large", False):
        raise too_large()
    if uploaded_file is None:
        raise UploadRejected("Choose an audio file to upload (form field `file`).", 400)
    model = job_options_validate(model_name=model_name, stems=stems, output_format=output_format)
    audio = upload_validate(uploaded_file=uploaded_file)
    return job_create(
        user=request.user,
        uploaded_file=uploaded_file,
        audio=audio,
        model=model,
        stem_mode=stems,
        output_format=output_format,
        idempotency_key=idempotency_key,
    )
