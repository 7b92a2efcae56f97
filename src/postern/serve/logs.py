"""Logging of a postern process, configured in one place: ``postern serve`` and each
mail worker process call ``configure`` (``POSTERN_LOG_LEVEL``, ``POSTERN_LOG_FORMAT``).

``text`` writes one readable line per event; ``json`` writes one JSON object per line (time, level, logger, message
and the fields) for log shippers. The fields are what a caller passes as
``extra={...}``; the transaction lines (HTTP requests, SMTP/LMTP transactions,
IMAP/POP3 logins, outbound attempts) carry them. Callers never pass a password, a
token or a key, in the message or the fields.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# The attributes every LogRecord has: anything else on a record came through ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a caller attached to a record (``extra=``)."""
    attributes = record.__dict__
    return {key: attributes[key] for key in attributes.keys() - _STANDARD if not key.startswith("_")}


class TextFormatter(logging.Formatter):
    """``time level logger: message``. The transaction lines' messages say what their
    fields hold, in words: the fields themselves go only into JSON."""

    def __init__(self, suffix: str = "") -> None:
        super().__init__(f"%(asctime)s %(levelname)s %(name)s{suffix}: %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the fields."""

    def __init__(self, process: str = "serve") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process != "serve":
            document["process"] = self.process
        for key, value in fields(record).items():
            document.setdefault(key, value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def configure(level: str = "info", fmt: str = "text", *, worker: bool = False, stream: Any = None) -> None:
    """Set the root logger's one handler (replacing any before) and quiet the chatty
    libraries: aiosmtpd announces every connection's AUTH mechanisms at INFO and
    warns about its own deprecated attribute on every login; uvicorn's access log is
    replaced by postern's own request line (``postern.http.access``); httpx writes
    every URL it asks for."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter("worker" if worker else "serve"))
    else:
        handler.setFormatter(TextFormatter("[worker]" if worker else ""))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every URL it asks for at INFO (a URL may hold a token).
    logging.getLogger("httpx").setLevel(logging.WARNING)
