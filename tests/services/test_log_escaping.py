"""Client-supplied text in text logs: one line per record, controls escaped, length capped."""

from __future__ import annotations

import json
import logging

from services.logs import (
    LOG_TEXT_MAX_CHARS,
    JsonFormatter,
    LogText,
    TextFormatter,
    escape_log_text,
    log_context,
)

FORGED = 'GetMe\n2026-01-01 00:00:00,000 ERROR web: admin login failed user="root"\x1b[2J'


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("web", logging.INFO, __file__, 1, message, args, None)


def test_escape_log_text_shows_controls_as_escapes() -> None:
    assert escape_log_text("a\nb\rc\td\x1be\x00f\x7fg") == "a\\nb\\rc\\td\\x1be\\x00f\\x7fg"
    assert escape_log_text("line\u2028sep\u202eevil") == "line\\u2028sep\\u202eevil"
    assert escape_log_text("plain text, ünïcode ✓") == "plain text, ünïcode ✓"


def test_escape_log_text_escapes_backslash_so_a_literal_escape_is_not_a_forged_one() -> None:
    assert escape_log_text("a\\nb") == "a\\\\nb"
    assert escape_log_text("a\\nb") != escape_log_text("a\nb")


def test_escape_log_text_caps_length_and_says_how_much_was_dropped() -> None:
    text = "x" * (LOG_TEXT_MAX_CHARS + 1234)
    escaped = escape_log_text(text)
    assert escaped.startswith("x" * LOG_TEXT_MAX_CHARS)
    assert escaped.endswith("…[+1234 chars]")
    assert len(escaped) < LOG_TEXT_MAX_CHARS + 20
    assert escape_log_text("abcdef", max_chars=3) == "abc…[+3 chars]"


def test_log_text_argument_cannot_forge_a_text_log_line() -> None:
    line = TextFormatter().format(_record("operation %s failed", LogText(FORGED)))
    assert "\n" not in line and "\x1b" not in line
    assert "GetMe\\n2026-01-01" in line and "\\x1b[2J" in line


def test_text_log_context_field_cannot_forge_a_line() -> None:
    with log_context(operation=FORGED, request_id="r1"):
        line = TextFormatter().format(_record("request done"))
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith("\\x1b[2J request_id=r1")


def test_json_log_keeps_the_escaped_text_in_one_object() -> None:
    line = JsonFormatter().format(_record("operation %s failed", LogText(FORGED)))
    assert "\n" not in line
    assert json.loads(line)["message"].startswith("operation GetMe\\n2026")
