"""CSV downloads that stream: rows are written as the database cursor hands them over, so a
100,000-row export holds a few rows in memory, not the whole file (bench/csv_export.py measures it).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from django.http import StreamingHttpResponse
from rest_framework.negotiation import BaseContentNegotiation

# Rows fetched per round trip of the server-side cursor, and bytes gathered before a chunk is sent.
FETCH_ROWS = 2000
CHUNK_BYTES = 64 * 1024
# A cell starting with one of these is a formula to a spreadsheet ("CSV injection"): text a user
# chose (a file name) is prefixed with ' so it stays text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A free-text cell, made safe to open in a spreadsheet."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


class _Lines:
    """csv.writer's file: keeps what it is given until the generator sends it."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


def csv_chunks(*, header: list[str], rows: Iterable[Iterable]) -> Iterator[bytes]:
    """The CSV text of a header and rows, in chunks of about CHUNK_BYTES."""
    lines = _Lines()
    writer = csv.writer(lines)
    writer.writerow(header)
    size = 0
    for row in rows:
        writer.writerow(row)
        size += len(lines.parts[-1])
        if size >= CHUNK_BYTES:
            yield "".join(lines.parts).encode()
            lines.parts.clear()
            size = 0
    yield "".join(lines.parts).encode()


def csv_response(*, filename: str, header: list[str], rows: Iterable[Iterable]) -> StreamingHttpResponse:
    """A streamed `text/csv` attachment. `rows` should be a lazy iterator (a queryset's .iterator())."""
    response = StreamingHttpResponse(csv_chunks(header=header, rows=rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


class FirstRendererNegotiation(BaseContentNegotiation):
    """For the export views: the answer is CSV whatever Accept says (a client asking for text/csv
    is not refused with 406), and an error before it (401) is JSON, as everywhere in the API."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
