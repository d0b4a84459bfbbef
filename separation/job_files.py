"""A job's files where STORAGE_BACKEND keeps them: under MEDIA_ROOT, or in a bucket.

Names are relative (`jobs/<id>/input.wav`, `jobs/<id>/stems-2/vocals.wav`) and the same in both:
the database holds names, never paths. With a bucket, MEDIA_ROOT is each machine's scratch space:
a worker copies the input there (`input_fetch`), separates into a local folder, sends the outputs
up (`outputs_store`) before the job completes, and removes its scratch copies (`scratch_remove`).
Downloads are redirects to short-lived presigned URLs, which answer byte ranges themselves.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.utils.http import content_disposition_header

from separation.downloads import CONTENT_TYPES, file_response
from separation.models import job_folder

logger = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """The bucket did not answer or refused a transfer."""


def in_bucket() -> bool:
    return settings.STORAGE_BACKEND == "s3"


def local_path(name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / name


def _bucket_errors() -> tuple[type[BaseException], ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (Boto3Error, BotoCoreError, ClientError, OSError)


def _key(name: str) -> str:
    location = default_storage.location
    return f"{location.rstrip('/')}/{name}" if location else name


def stored_file_response(request, name: str, *, download_name: str, attachment: bool = True) -> HttpResponse:
    """The file `name` for the person who may have it: served from MEDIA_ROOT with byte ranges, or
    a redirect to a presigned URL of the bucket that names the download and its type."""
    if not in_bucket():
        return file_response(request, local_path(name), download_name=download_name, attachment=attachment)
    if not name:
        raise Http404("The file is no longer available.")
    parameters = {
        "ResponseContentDisposition": content_disposition_header(attachment, download_name),
        "ResponseContentType": CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream"),
    }
    response = HttpResponseRedirect(default_storage.url(name, parameters=parameters))
    response["Cache-Control"] = "private, no-store"  # the URL carries a signature that expires
    return response


def stored_file_exists(name: str) -> bool:
    if not name:
        return False
    if not in_bucket():
        return local_path(name).is_file()
    try:
        return default_storage.exists(name)
    except _bucket_errors():
        logger.warning("Could not check %s in the bucket", name)
        return False


def stored_file_size(name: str) -> int:
    """Bytes stored under `name`; 0 when it is gone."""
    try:
        return default_storage.size(name) if name else 0
    except Exception:  # gone from the disk or the bucket
        return 0


@contextmanager
def local_copy(name: str) -> Iterator[Path | None]:
    """A stored file as a local path for as long as the block runs (copied from the bucket to a
    temporary file, removed after); None when it is not stored."""
    if not in_bucket():
        path = local_path(name) if name else None
        yield path if path is not None and path.is_file() else None
        return
    with tempfile.TemporaryDirectory(dir=settings.MEDIA_ROOT if Path(settings.MEDIA_ROOT).is_dir() else None) as folder:
        path = Path(folder) / Path(name).name
        try:
            default_storage.bucket.download_file(_key(name), str(path))
        except _bucket_errors():
            yield None
            return
        yield path


@contextmanager
def local_copies(names: list[str]) -> Iterator[dict[str, Path] | None]:
    """Several stored files as local paths ({name: path}) for as long as the block runs; None when
    any of them is not stored."""
    with ExitStack() as stack:
        paths = {name: stack.enter_context(local_copy(name)) for name in names}
        yield None if any(path is None for path in paths.values()) else paths


def job_files_remove(job_id) -> None:
    """Everything stored for the job: its folder under MEDIA_ROOT (scratch, with a bucket) and its
    objects in the bucket."""
    shutil.rmtree(local_path(job_folder(job_id)), ignore_errors=True)
    if in_bucket():
        prefix_remove(f"{job_folder(job_id)}/")


def prefix_remove(prefix: str, *, keep: str | None = None) -> None:
    """Delete the bucket's objects under `prefix`, except those under `keep`."""
    try:
        objects = default_storage.bucket.objects.filter(Prefix=_key(prefix))
        doomed = [{"Key": item.key} for item in objects if keep is None or not item.key.startswith(_key(keep))]
        for start in range(0, len(doomed), 1000):
            default_storage.bucket.delete_objects(Delete={"Objects": doomed[start : start + 1000], "Quiet": True})
    except _bucket_errors() as error:
        logger.warning("Could not delete %s* from the bucket: %s", prefix, error)


def _scratch_input(name: str, attempt: int) -> Path:
    path = local_path(name)
    return path.with_name(f"{path.stem}-{attempt}{path.suffix}")


def input_fetch(name: str, *, attempt: int) -> Path:
    """The job's input as a local file: in MEDIA_ROOT already, or copied there from the bucket
    (one copy per attempt: a run taken for dead never shares files with the run after it)."""
    if not in_bucket():
        return local_path(name)
    path = _scratch_input(name, attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        default_storage.bucket.download_file(_key(name), str(path))
    except _bucket_errors() as error:
        path.unlink(missing_ok=True)
        raise StorageUnavailable(f"Could not fetch {name} from the bucket: {error}") from error
    return path


def outputs_store(folder: Path) -> None:
    """Send every file of a finished attempt's local folder to the bucket, under the same names.
    Nothing to do on local storage. Raises StorageUnavailable (what was sent is removed)."""
    if not in_bucket():
        return
    media = Path(settings.MEDIA_ROOT)
    prefix = f"{folder.relative_to(media)}/"
    try:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
                default_storage.bucket.upload_file(
                    str(path), _key(str(path.relative_to(media))), ExtraArgs={"ContentType": content_type}
                )
    except _bucket_errors() as error:
        prefix_remove(prefix)
        raise StorageUnavailable(f"Could not store {prefix} in the bucket: {error}") from error


def attempts_remove(job_id, *, keep: Path) -> None:
    """What earlier runs of the job taken for dead left behind, locally and in the bucket."""
    for earlier in local_path(job_folder(job_id)).glob("stems-*"):
        if earlier != keep:
            shutil.rmtree(earlier, ignore_errors=True)
    if in_bucket():
        media = Path(settings.MEDIA_ROOT)
        prefix_remove(f"{job_folder(job_id)}/stems-", keep=f"{keep.relative_to(media)}/")


def scratch_remove(*, input_name: str, attempt: int, output_dir: Path) -> None:
    """With a bucket, an attempt's local copies, once stored or not needed. A run removes only its own."""
    if in_bucket():
        _scratch_input(input_name, attempt).unlink(missing_ok=True)
        shutil.rmtree(output_dir, ignore_errors=True)
        try:
            output_dir.parent.rmdir()  # the job's scratch folder, unless another run still uses it
        except OSError:
            pass
