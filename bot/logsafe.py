"""Logging that never shows a secret.

`install_redaction(secrets)` wraps the log-record factory, so every record of every logger
(python-telegram-bot's httpx logs request URLs, which contain the bot token) is redacted
when it is created, before any handler (files, stderr, pytest's capture) sees it.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

# A bot token anywhere in a text: digits, a colon, and a 30+ character secret.
_TOKEN_RE = re.compile(r"\d{3,}:[A-Za-z0-9_-]{30,}")
REDACTED = "[REDACTED]"
# An invoice's public token is a bearer link (whoever has it sees the invoice, and pays a
# sandbox one): too many to register one by one, so redacted where they travel - deep links
# (`?start=`, and URL-encoded inside a Share button's t.me/share URL), the Mini App's
# `/app/?i=`, `/start <token>` and the `sim:`/`chk:` buttons - in every log line, at DEBUG too.
_BEARER_RE = re.compile(
    r"(?P<lead>[?&]start=|%3[Ff]start%3[Dd]|/app/\?i=|/start(?:@\w+)?\s+|\b(?:sim|chk):)"
    r"(?P<token>[A-Za-z0-9_-]{8,})"
)

_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False


def redact(text: str) -> str:
    """`text` with every registered secret, anything shaped like a bot token, and invoices'
    public tokens (bearer links) removed."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _BEARER_RE.sub(lambda m: m.group("lead") + REDACTED, text)
    return _TOKEN_RE.sub(REDACTED, text)


def install_redaction(secrets: Iterable[str]) -> None:
    """Register secrets (at least 4 characters) and install the redacting record factory."""
    global _installed
    with _lock:
        _secrets.update(s for s in secrets if len(s) >= 4)
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a broken format string: keep the template only
                message = str(record.msg)
            record.msg, record.args = redact(message), None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
                record.exc_info = None
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    """Root logging to stderr, redacted; the chatty HTTP and SQL loggers only from WARNING."""
    install_redaction(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiosqlite logs every statement with its parameters at DEBUG: public tokens included.
    for noisy in ("httpx", "httpcore", "apscheduler", "aiohttp.access", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
