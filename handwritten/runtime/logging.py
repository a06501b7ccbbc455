"""Logging for services: one line per event, readable as text or as one JSON object per line.

Text lines read like a short story of what the service did (`✅ trash-processor ready ...`,
`🗑️ file 3f2a9c1e... moved to trash`); JSON lines carry the same message plus any `extra=`
fields, for log shippers.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from handwritten.runtime import tracing

LogFormat = Literal["text", "json"]

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
"""Attributes every LogRecord has; anything else on a record came from `extra=`."""


def short_id(value: UUID | str) -> str:
    """The first 8 characters and an ellipsis: enough to grep for, short enough to read."""
    text = str(value)
    return text if len(text) <= 8 else f"{text[:8]}..."


def log_batch_count(
    logger: logging.Logger, line: str, count: int, sequences: Sequence[int], step: str
) -> None:
    """One line for `count` messages of a batch: `line` (a fixed text with one `%d`, the
    count) and the batch's stream sequences as `[seq: first..last]`; nothing when it is 0."""
    if count:
        logger.info(
            line + " [seq: %d..%d]",
            count,
            min(sequences),
            max(sequences),
            extra={"step": step, "count": count},
        )


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


class TextFormatter(logging.Formatter):
    """`12:04:05 INFO  trash-processor: message`, tracebacks indented below."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, `extra` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _one_line(record.getMessage()),
        }
        entry.update(tracing.log_fields())
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(fmt: LogFormat = "text", level: int | str = "INFO") -> None:
    """Route all logging to stderr in the given format; safe to call more than once."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_filetrash", False):
            root.removeHandler(existing)
    handler._filetrash = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record is emitted, not to the stream it was
    at setup (one that may be closed by then, as a test's captured stderr is)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass
