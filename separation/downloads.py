"""Serving a job's files: as attachments, with byte ranges so players can seek."""

import re
from pathlib import Path

from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".zip": "application/zip",
    ".png": "image/png",
}
CHUNK = 64 * 1024


def _chunks(file, length: int):
    with file:
        while length > 0:
            data = file.read(min(CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The (start, end) of a single `bytes=` range, or None when there is none to honour."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or not any(match.groups()):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None  # not a valid range: serve the whole file (RFC 9110 14.2)
    else:
        start, end = max(size - int(last), 0), size - 1
    return start, end


def file_response(request, path: Path, *, download_name: str, attachment: bool = True) -> HttpResponse:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise Http404("The file is no longer available.") from None
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    byte_range = _byte_range(request.META.get("HTTP_RANGE", ""), size)
    if byte_range is None:
        response = FileResponse(path.open("rb"), as_attachment=attachment, filename=download_name)
        response["Content-Type"] = content_type
    else:
        start, end = byte_range
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        file = path.open("rb")
        file.seek(start)
        response = StreamingHttpResponse(_chunks(file, end - start + 1), status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
        response["Content-Disposition"] = content_disposition_header(attachment, download_name)
    response["Accept-Ranges"] = "bytes"
    return response
