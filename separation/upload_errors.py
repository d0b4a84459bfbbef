"""Why an upload was refused, and the one table that turns a refusal into an HTTP status.

Services raise these without knowing about HTTP; the API view and the page view both answer
through `upload_refusal_status` and `upload_refusal_payload`, so a refusal reads the same in JSON
and on the dashboard.
"""

from __future__ import annotations

import errno
from decimal import Decimal

from credits.services import InsufficientCredits

# OSError numbers of a full disk (or a full filesystem quota).
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class UploadRefused(Exception):
    """A refusal with a sentence for the person and a stable `code` for programs."""

    code = "upload_refused"

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.extra = extra


class NoFile(UploadRefused):
    code = "no_file"


class EmptyFile(UploadRefused):
    code = "empty_file"


class FileTooLarge(UploadRefused):
    code = "file_too_large"


class NotAudio(UploadRefused):
    code = "not_audio"


class BadDuration(UploadRefused):
    """Too long (measured by decoding, not from a header) or too short."""

    code = "bad_duration"


class BadOption(UploadRefused):
    code = "bad_option"


class EmailNotVerified(UploadRefused):
    code = "email_not_verified"

    def __init__(self):
        super().__init__(
            "Verify your email address before uploading: follow the link we emailed you, "
            "or ask for a new one (POST /api/auth/verify-email/resend, or the button on the site)."
        )


class UploadsThrottled(UploadRefused):
    code = "throttled"

    def __init__(self, *, retry_after: int):
        super().__init__(f"You are uploading too often. Please try again in {retry_after} seconds.")
        self.retry_after = retry_after


class NotEnoughCredits(UploadRefused):
    code = "insufficient_credits"

    def __init__(self, *, balance: Decimal, required: Decimal, message: str = ""):
        super().__init__(
            message or f"Not enough credits: this song costs {amount(required)} and you have {amount(balance)}.",
            credits=f"{balance:.2f}",
            cost=f"{required:.2f}",
        )
        self.balance = balance
        self.required = required

    @classmethod
    def from_ledger(cls, short: InsufficientCredits) -> NotEnoughCredits:
        return cls(balance=short.balance, required=short.required)


def amount(value: Decimal) -> str:
    """Credits as the pages show them (floatformat:"-2"): 1, 0, 7.50."""
    return f"{value:.0f}" if value == value.to_integral_value() else f"{value:.2f}"


class StorageQuotaExceeded(UploadRefused):
    code = "storage_quota_exceeded"


class ServerStorageFull(UploadRefused):
    """The server's disk is full: nothing was stored or charged."""

    code = "server_storage_full"

    def __init__(self):
        super().__init__(
            "The server has no room to store your song right now. Nothing was charged; please try again later."
        )


class ServerStorageUnavailable(UploadRefused):
    """The bucket (STORAGE_BACKEND=s3) did not take the upload: nothing was stored or charged."""

    code = "storage_unavailable"

    def __init__(self):
        super().__init__("The service could not store your song right now. Nothing was charged; please try again.")


class IdempotencyKeyReused(UploadRefused):
    code = "idempotency_key_reused"

    def __init__(self):
        super().__init__(
            "This Idempotency-Key was already used for another upload (another file or other options). "
            "Use a new key for a new upload."
        )


class UploadTooSlow(UploadRefused):
    """The body stalled or came in slower than UPLOAD_MIN_KBPS (demucs_service/middleware/slow_clients.py)."""

    code = "upload_too_slow"

    def __init__(self):
        super().__init__("The upload was too slow and was stopped. Please try again on a faster connection.")


class QueueUnavailable(UploadRefused):
    """The task queue could not take the job; it was failed and refunded."""

    code = "queue_unavailable"

    def __init__(self):
        super().__init__("The job queue is unavailable; please try again in a moment. Your credits were refunded.")


class UrlNotAllowed(UploadRefused):
    """URL import: an address the server does not fetch (not http(s), private, redirected elsewhere)."""

    code = "url_not_allowed"


class UrlFetchFailed(UploadRefused):
    """URL import: the address did not answer with a file (no such host, timeout, an HTTP error)."""

    code = "url_fetch_failed"


class PreviewLimitReached(UploadRefused):
    """PREVIEWS_PER_DAY free previews in the last 24 hours already."""

    code = "preview_limit_reached"

    def __init__(self, *, limit: int):
        if limit == 0:
            message = "Free previews are not offered on this server."
        else:
            message = (
                f"You have used your {limit} free preview{'s' if limit != 1 else ''} of the last 24 hours. "
                "Separate the full song, or try a preview again tomorrow."
            )
        super().__init__(message, limit=limit)


class NotAPreview(UploadRefused):
    """ "Separate the full song" asked of a job that is no preview, or whose song is gone."""

    code = "not_a_preview"


class UrlImportsBusy(UploadRefused):
    """URL import: the account already runs URL_IMPORT_MAX_CONCURRENT imports (each holds a web thread)."""

    code = "url_imports_busy"

    def __init__(self, *, limit: int):
        super().__init__(
            f"You already have {limit} imports from addresses downloading. Please wait until one has finished."
        )


STATUS = {
    NoFile: 400,
    EmptyFile: 400,
    BadDuration: 400,
    BadOption: 400,
    NotEnoughCredits: 402,
    EmailNotVerified: 403,
    FileTooLarge: 413,
    NotAudio: 415,
    StorageQuotaExceeded: 409,
    IdempotencyKeyReused: 409,
    UploadsThrottled: 429,
    PreviewLimitReached: 429,
    NotAPreview: 409,
    QueueUnavailable: 503,
    UploadTooSlow: 408,
    ServerStorageFull: 507,
    ServerStorageUnavailable: 503,
    UrlNotAllowed: 400,
    UrlFetchFailed: 422,
    UrlImportsBusy: 429,
}


def upload_refusal_status(refusal: UploadRefused) -> int:
    return STATUS.get(type(refusal), 400)


def upload_refusal_payload(refusal: UploadRefused) -> dict:
    return {"detail": str(refusal), "code": refusal.code, **refusal.extra}


def upload_refusal_headers(refusal: UploadRefused) -> dict[str, str]:
    if isinstance(refusal, UploadsThrottled):
        return {"Retry-After": str(refusal.retry_after)}
    return {}
