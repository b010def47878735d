"""Structured log lines for journald: `level=info logger=... msg="..." key=value ...` on stderr.

Fields are passed as `log.info("job done", extra=kv(job_id=..., frames=...))`. Values of keys that
look like secrets are replaced, so a careless call cannot leak a password into the journal.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_SECRET_KEY = re.compile(r"pass|secret|token|credential|private", re.IGNORECASE)
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")


def kv(**fields: Any) -> dict[str, Any]:
    """The `extra=` argument that attaches key=value fields to one log line."""
    return {"fields": fields}


def _redact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if _SECRET_KEY.search(k) else v) for k, v in fields.items()}


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if text and _BARE.match(text) else json.dumps(text)


class KeyValueFormatter(logging.Formatter):
    """One line per record; the timestamp is kept because the log may also go to a file."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _redact(getattr(record, "fields", {}) or {})
        parts = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **fields,
        }
        if record.exc_info:
            parts["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_redact(getattr(record, "fields", {}) or {}),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(level: str = "info", fmt: str = "kv") -> None:
    """Route every logger to stderr (journald captures it) in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # paho logs every packet at DEBUG; its errors reach us through callbacks instead.
    logging.getLogger("paho").setLevel(logging.WARNING)
