"""Structured logs: one JSON object per line, with the trace and run ids wherever a request is involved.

Field names follow the OpenTelemetry conventions where one exists (``http.request.method``, ``url.path``,
``http.response.status_code``), so a log line and the span it belongs to are queried with the same words; the
trace and span ids are the W3C hex strings every trace viewer searches by. Timestamps are ISO-8601 in UTC with
microseconds: sortable as text, unambiguous across hosts, and what log pipelines parse without a format hint.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final

import orjson

ACCESS_LOGGER = "agent_gateway.access"
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
TEXT_FIELDS: Final = ("trace_id", "run_id", "duration_ms")
"""The extras the text format appends as ``key=value`` (the JSON format carries every extra)."""


def iso_utc(created: float) -> str:
    """``2025-01-31T12:00:00.123456Z``: ``LogRecord.created`` as ISO-8601 UTC."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """``{"timestamp", "level", "logger", "message", ...extras}``; extras are what callers pass in ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``<ISO-8601 UTC> LEVEL logger message trace_id=… run_id=… duration_ms=…`` for a person at a terminal:
    the trace id finds the request in a trace viewer, the duration says whether it was slow."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_utc(record.created)} {record.levelname} {record.name} {record.getMessage()}"
        fields = " ".join(f"{name}={value}" for name in TEXT_FIELDS if (value := getattr(record, name, None)))
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
