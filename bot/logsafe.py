"""Logging that never shows a secret: redacts configured secret values and bot tokens
(python-telegram-bot's httpx logs request URLs, which contain the token)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_TOKEN_RE = re.compile(r"\d{3,}:[A-Za-z0-9_-]{20,}")
REDACTED = "[REDACTED]"


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with every secret replaced; attach to handlers."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _TOKEN_RE.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.msg, record.args = self.redact(message), None
        record.exc_info = None if record.exc_text else record.exc_info
        return True


def configure_logging(level: str, secrets: Iterable[str]) -> RedactingFilter:
    """Root logging to stderr through the redacting filter; quiet the chatty HTTP loggers."""
    redactor = RedactingFilter(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for noisy in ("httpx", "httpcore", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor


def install_redactor(secrets: Iterable[str]) -> RedactingFilter:
    """Add the filter to every handler the root logger has (tests' capture handlers too)."""
    redactor = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    return redactor
