"""URL import: a song fetched from an http(s) address a user gives, then accepted exactly as an
uploaded file is (separation/uploads.py: upload_accept), with the same refusals.

The fetch (separation/safe_fetch.py) only reaches public addresses unless URL_IMPORT_ALLOW_PRIVATE,
stops at MAX_UPLOAD_MB while the body arrives and within URL_IMPORT_TIMEOUT_SECONDS; the length
limit (MAX_DURATION_MINUTES) is held while it arrives too (DurationWatch), and by decoding the whole
file at the end, as for uploads. Nothing is charged or kept
before the audio is validated; the fetched file is a temporary file, deleted when it is closed.
Each import holds a web thread while it downloads, so one account runs at most
URL_IMPORT_MAX_CONCURRENT at once (`import_slot`), counted across processes and machines by
PostgreSQL session advisory locks, which the database drops by itself if a process dies.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.db import connection

from accounts.selectors import user_needs_email_verification
from separation import engine, safe_fetch
from separation.filenames import display_filename
from separation.models import Job
from separation.upload_errors import (
    BadOption,
    EmailNotVerified,
    NotAudio,
    UrlFetchFailed,
    UrlImportsBusy,
    UrlNotAllowed,
)
from separation.upload_gate import file_too_large, max_upload_bytes
from separation.uploads import JobOptions, job_options_validate, too_long, upload_accept

logger = logging.getLogger(__name__)

# Answers that say by their type they are a page or data, not a song; anything else is decoded.
NOT_AUDIO_TYPES = ("text/", "application/json", "application/xml", "application/xhtml", "image/", "video/")
MAX_URL_LENGTH = 2048


def _refuse_pages(content_type: str) -> None:
    if content_type.startswith(NOT_AUDIO_TYPES):
        raise NotAudio(
            f"The address answered with {content_type}, not audio. Give the address of the audio file itself."
        )


class DurationWatch:
    """Holds MAX_DURATION_MINUTES while the song downloads: each time the download has doubled (from
    1 MB on) it decodes what has arrived, stopping just past the limit, so a song that is too long
    is refused after about twice the bytes of the limit, not after MAX_UPLOAD_MB. The doubling keeps
    the decoding to about twice that of the file once. The whole file is decoded again at the end."""

    FIRST_CHECK_BYTES = 1024 * 1024

    def __init__(self, file):
        self.file = file
        self.next_check = self.FIRST_CHECK_BYTES

    def __call__(self, size: int) -> None:
        if size < self.next_check:
            return
        self.next_check = size * 2
        self.file.flush()
        try:
            engine.probe_audio(Path(self.file.name), max_seconds=settings.MAX_DURATION_MINUTES * 60)
        except engine.AudioTooLong:
            raise too_long() from None
        except (engine.AudioDecodeError, OSError, ValueError, RuntimeError):
            pass  # a file cut off mid-way may not decode yet; the whole file is judged once it is in


# The first key of the two-key advisory locks of URL import slots (the second is the account):
# "URLI" plus the slot number, apart from the project's one-key locks.
SLOT_LOCK_BASE = 0x55524C00
_local_slots: Counter = Counter()  # without PostgreSQL (SQLite, one process): per account
_local_lock = threading.Lock()


@contextmanager
def import_slot(*, user):
    """Hold one of the account's URL_IMPORT_MAX_CONCURRENT import slots while the block runs, or
    raise UrlImportsBusy at once. The locks are the session's, not a transaction's, so no
    transaction stays open during the download."""
    limit = settings.URL_IMPORT_MAX_CONCURRENT
    if connection.vendor != "postgresql":
        with _local_lock:
            if _local_slots[user.pk] >= limit:
                raise UrlImportsBusy(limit=limit)
            _local_slots[user.pk] += 1
        try:
            yield
        finally:
            with _local_lock:
                _local_slots[user.pk] -= 1
        return
    account = user.pk % 2**31  # the lock's key is an int4; accounts past it share slots
    with connection.cursor() as cursor:
        for slot in range(limit):
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SLOT_LOCK_BASE + slot, account])
            if cursor.fetchone()[0]:
                break
        else:
            raise UrlImportsBusy(limit=limit)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SLOT_LOCK_BASE + slot, account])


def upload_accept_url(*, user, url: str, options: JobOptions, idempotency_key: str = "") -> tuple[Job, bool]:
    """Fetch the song at `url` and accept it as upload_accept does: (job, created) or an
    UploadRefused. The cheap checks (a verified address, the options) come before any request."""
    if user_needs_email_verification(user=user):
        raise EmailNotVerified()
    job_options_validate(options=options)
    if len(url) > MAX_URL_LENGTH:
        raise UrlNotAllowed(f"The address is longer than {MAX_URL_LENGTH} characters.")
    upload = TemporaryUploadedFile("upload", "application/octet-stream", 0, None)
    try:
        try:
            with import_slot(user=user):
                fetched = safe_fetch.fetch_to_file(
                    url,
                    into=upload.file,
                    max_bytes=max_upload_bytes(),
                    deadline_seconds=settings.URL_IMPORT_TIMEOUT_SECONDS,
                    allow_private=settings.URL_IMPORT_ALLOW_PRIVATE,
                    refuse_content_type=_refuse_pages,
                    progress=DurationWatch(upload.file),
                )
        except safe_fetch.FetchTooLarge:
            raise file_too_large() from None
        except safe_fetch.FetchRefused as refused:
            raise UrlNotAllowed(str(refused)) from None
        except safe_fetch.FetchFailed as failed:
            raise UrlFetchFailed(f"The song could not be fetched: {failed}") from None
        upload.file.flush()
        upload.size = fetched.size
        upload.name = display_filename(fetched.filename or "song")
        upload.seek(0)
        logger.info("URL import fetched %s bytes (%s)", fetched.size, fetched.content_type or "no type")
        return upload_accept(user=user, uploaded_file=upload, options=options, idempotency_key=idempotency_key)
    finally:
        upload.close()


def upload_accept_source(
    *, user, uploaded_file, url: str, options: JobOptions, idempotency_key: str = ""
) -> tuple[Job, bool]:
    """A form's or request's song, as a file or an address (one of them): accepted either way."""
    if uploaded_file is not None and url:
        raise BadOption("Give either a file or a url, not both.")
    if url:
        return upload_accept_url(user=user, url=url, options=options, idempotency_key=idempotency_key)
    return upload_accept(user=user, uploaded_file=uploaded_file, options=options, idempotency_key=idempotency_key)
