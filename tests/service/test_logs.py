"""Structured log lines, with secrets kept out."""

from __future__ import annotations

import logging

from device.logs import KeyValueFormatter, kv


def format_line(message: str, **fields: object) -> str:
    record = logging.LogRecord("portrait", logging.INFO, __file__, 1, message, None, None)
    record.fields = fields
    return KeyValueFormatter().format(record)


def test_line_is_key_value_with_quoting() -> None:
    line = format_line("job done", job_id="abc", frames=25, reason="two words")
    assert 'level=info logger=portrait msg="job done" job_id=abc frames=25 reason="two words"' in line


def test_secret_looking_fields_are_masked() -> None:
    line = format_line("connecting", password="hunter2", mqtt_token="t0k", user="kiosk")
    assert "hunter2" not in line and "t0k" not in line and "user=kiosk" in line


def test_kv_builds_the_extra_argument() -> None:
    assert kv(a=1) == {"fields": {"a": 1}}
