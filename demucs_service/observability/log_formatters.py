"""Log formatters: one JSON object per line (LOG_FORMAT=json) or readable text (the default).

Both scrub what looks like a bearer token, a JWT or a password value from the message and the
traceback, as a last line of defence: the code never logs headers, bodies or passwords.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

CONTEXT_FIELDS = ("request_id", "user_id", "job_id")
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", *CONTEXT_FIELDS}
_SECRETS = re.compile(
    r"(?P<keep>(?i:bearer)\s+)[\w.~+/=-]+"
    r"|(?P<keep2>(?i:password\w*|secret\w*|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+"
    r"|eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*"
)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda match: (match.group("keep") or match.group("keep2") or "") + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    """timestamp, level, logger, message, request_id, user_id, job_id, exception; plus any extra
    fields holding plain values (e.g. status_code, duration_ms)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            **{name: getattr(record, name, None) for name in CONTEXT_FIELDS},
            "exception": redact(self.formatException(record.exc_info)) if record.exc_info else None,
        }
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        for name, value in vars(record).items():
            if name in _RECORD_FIELDS or name.startswith("_") or name in payload:
                continue
            if isinstance(value, bool | int | float):
                payload[name] = value
            elif isinstance(value, str):
                payload[name] = redact(value)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """`2026-01-01 12:00:00,000 INFO logger [req=... user=3 job=...] message`, for people."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        labels = {"request_id": "req", "user_id": "user", "job_id": "job"}
        parts = [
            f"{labels[name]}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return redact(super().format(record))
