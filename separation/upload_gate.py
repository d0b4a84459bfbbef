"""What is checked before an upload's body is stored: the address is verified, the user is not
uploading too often, can pay for the cheapest job (or has a free preview left) and has room left.
A refused upload's file is never written anywhere, not even to a temporary file.

The body of a form may be parsed before the view runs (the CSRF check reads the form's token, and
DRF parses on first access to `request.data`), so the gate runs inside the upload handler, which
Django calls at the start of every multipart parse, for the views marked with `@upload_view`; its
result is kept on the request, and the view answers with it. A view whose body was never parsed
calls `upload_gate_check` itself.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import UnreadablePostError
from rest_framework.throttling import SimpleRateThrottle

from accounts.selectors import user_needs_email_verification
from credits.subscriptions import subscription_covering
from separation.catalog import job_cost, models_list
from separation.services import previews_used_today
from separation.storage_quota import storage_check
from separation.upload_errors import (
    DISK_FULL,
    EmailNotVerified,
    FileTooLarge,
    NotEnoughCredits,
    ServerStorageFull,
    UploadRefused,
    UploadsThrottled,
    UploadTooSlow,
    amount,
)

logger = logging.getLogger(__name__)

# Room for the form's other fields around the file in a multipart body.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def upload_view(view):
    """Marks a view whose multipart body the upload gate guards."""
    view.upload_gate = True
    return view


class UploadThrottle(SimpleRateThrottle):
    """Uploads per user (THROTTLE_UPLOAD), counted before the body is stored."""

    scope = "upload"

    def get_rate(self):
        return settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][self.scope]

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


def max_upload_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024


def file_too_large() -> FileTooLarge:
    return FileTooLarge(f"The file is larger than the {settings.MAX_UPLOAD_MB} MB limit.")


def cheapest_job_cost() -> Decimal | None:
    """What the cheapest installed model charges for the shortest song; None when none is installed."""
    installed = [model for model in models_list() if model.installed]
    if not installed:
        return None
    return min(job_cost(model=model, duration_seconds=0) for model in installed)


def upload_gate(*, user, request) -> None:
    """Raises the refusal an upload by `user` gets before its body is read. Counts one upload
    against the user's throttle."""
    if user_needs_email_verification(user=user):
        raise EmailNotVerified()
    throttle = UploadThrottle()
    try:
        allowed = throttle.allow_request(request, None)
    except Exception:  # the cache (Redis) is down: the queue will say whether the upload can go on
        logger.warning("Upload throttle not checked: the cache is unavailable", exc_info=True)
        allowed = True
    if not allowed:
        raise UploadsThrottled(retry_after=max(1, int(throttle.wait() or 1)))
    cheapest = cheapest_job_cost()
    # The form's fields (preview=true among them) are not read yet: an account with a free preview
    # left goes on, and a paid upload it cannot pay for is refused once the fields are parsed.
    if (
        cheapest is not None
        and user.credits < cheapest
        and subscription_covering(user_id=user.pk) is None
        and previews_used_today(user=user) >= settings.PREVIEWS_PER_DAY
    ):
        raise NotEnoughCredits(
            balance=user.credits,
            required=cheapest,
            message=(
                f"Not enough credits: a song costs at least {amount(cheapest)} and you have {amount(user.credits)}."
            ),
        )
    storage_check(user=user, needed=1)


def upload_gate_check(request) -> UploadRefused | None:
    """The gate's answer for this request, worked out once (the upload handler may have done it)."""
    if not hasattr(request, "upload_refusal"):
        user = request.user
        refusal = None
        if user.is_authenticated:
            try:
                upload_gate(user=user, request=request)
            except UploadRefused as refused:
                refusal = refused
        request.upload_refusal = refusal
    return request.upload_refusal


def _guards_this_request(request) -> bool:
    match = getattr(request, "resolver_match", None)
    return match is not None and getattr(match.func, "upload_gate", False)


class UploadHandler(FileUploadHandler):
    """Installed for every request (FILE_UPLOAD_HANDLERS), before the temporary-file handler. On an
    upload view it runs the gate before the first byte of the body is read and drops the file parts
    of a refused upload (the form's other fields still parse); on every request it stops a body
    once it passes MAX_UPLOAD_MB, whatever its Content-Length claimed."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.too_large = content_length > max_upload_bytes() + MULTIPART_OVERHEAD_BYTES
        if _guards_this_request(self.request):
            # An anonymous upload is answered 401 or sent to the log-in page: nothing of it is kept either.
            refused = not self.request.user.is_authenticated or upload_gate_check(self.request) is not None
            self.discard = refused
        else:
            self.discard = False
        return None

    def receive_data_chunk(self, raw_data, start):
        if self.too_large or start + len(raw_data) > max_upload_bytes():
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=True)
        if self.discard:
            return None  # later handlers never see it: nothing of a refused upload is written
        return raw_data

    def file_complete(self, file_size):
        return None


def upload_request_read(request, *, read_fields):
    """The parsed fields of an upload request (`read_fields` reads them the caller's way: DRF's
    serializer or the form), or the UploadRefused it gets: too large, the disk full while the body
    was spooled, or the gate's refusal."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > max_upload_bytes() + MULTIPART_OVERHEAD_BYTES:
        raise file_too_large()  # before a byte of the body is read
    try:
        fields = read_fields()
    except UnreadablePostError as error:  # cut by the slow-client guard (or the client went away)
        _close_partial_files(request)
        raise UploadTooSlow() from error
    except OSError as error:
        if error.errno in DISK_FULL:
            _close_partial_files(request)
            raise ServerStorageFull() from error
        raise
    except Exception:
        if getattr(request, "upload_too_large", False):
            raise file_too_large() from None  # the missing file is the cut-off one
        refusal = upload_gate_check(request)
        if refusal is not None:
            raise refusal from None  # the missing file is the one the gate dropped
        raise
    if getattr(request, "upload_too_large", False):
        raise file_too_large()
    refusal = upload_gate_check(request)
    if refusal is not None:
        raise refusal
    return fields


def _close_partial_files(request) -> None:
    """The temporary file a full disk cut short is no upload yet (the parser never handed it over):
    closing it deletes it now rather than whenever the request is collected."""
    for handler in request.upload_handlers:
        partial = getattr(handler, "file", None)
        if partial is not None:
            partial.close()
