"""Telegram Mini App `initData`, checked as Telegram's docs say.

    secret_key = HMAC_SHA256(key="WebAppData", msg=bot_token)
    hash       = hex(HMAC_SHA256(key=secret_key, msg=data_check_string))

`data_check_string` is every received field but `hash`, as `key=value` (values URL-decoded),
sorted by key and joined by newlines. The hashes are compared in constant time, and an
`auth_date` older than `max_age` (24 hours) or in the future (beyond a minute of clock skew)
is refused. Every API call carries the raw string as `Authorization: tma <initData>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode

MAX_AGE = timedelta(hours=24)
CLOCK_SKEW = timedelta(minutes=1)
MAX_INIT_DATA = 8192


class InitDataError(ValueError):
    """initData missing, malformed, forged or stale (the reason is for logs, not the caller)."""


@dataclass(frozen=True, slots=True)
class WebAppUser:
    user_id: int
    first_name: str
    language_code: str | None
    start_param: str | None
    auth_date: datetime


def secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def data_check_string(fields: dict[str, str]) -> str:
    return "\n".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "hash")


def sign(fields: dict[str, str], bot_token: str) -> str:
    """initData as Telegram would send it for `fields` (tests and the demo sign with it)."""
    digest = hmac.new(
        secret_key(bot_token), data_check_string(fields).encode(), hashlib.sha256
    ).hexdigest()
    return urlencode({**fields, "hash": digest})


def from_header(value: str | None) -> str:
    """The initData of an `Authorization: tma <initData>` header."""
    scheme, _, rest = (value or "").strip().partition(" ")
    if scheme.lower() != "tma" or not rest.strip():
        raise InitDataError("no tma authorization")
    return rest.strip()


def validate(init_data: str, bot_token: str, now: datetime, max_age: timedelta = MAX_AGE) -> WebAppUser:
    """The user of a genuine, fresh initData; InitDataError otherwise."""
    if not init_data or len(init_data) > MAX_INIT_DATA:
        raise InitDataError("empty or too long")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InitDataError("not a query string") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InitDataError("a field given twice")
    given = fields.get("hash", "")
    expected = hmac.new(
        secret_key(bot_token), data_check_string(fields).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise InitDataError("hash mismatch")
    auth_text = fields.get("auth_date", "")
    if not (auth_text.isascii() and auth_text.isdigit()) or len(auth_text) > 12:
        raise InitDataError("no auth_date")
    auth_seconds, now_seconds = int(auth_text), now.timestamp()
    if not now_seconds - max_age.total_seconds() <= auth_seconds <= now_seconds + CLOCK_SKEW.total_seconds():
        raise InitDataError("stale auth_date")
    auth_date = datetime.fromtimestamp(auth_seconds, tz=now.tzinfo)
    try:
        user = json.loads(fields.get("user", ""))
    except ValueError:
        raise InitDataError("no user") from None
    user_id = user.get("id") if isinstance(user, dict) else None
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        raise InitDataError("no user id")
    first_name = user.get("first_name")
    language_code = user.get("language_code")
    return WebAppUser(
        user_id=user_id,
        first_name=first_name if isinstance(first_name, str) else "",
        language_code=language_code if isinstance(language_code, str) else None,
        start_param=fields.get("start_param") or None,
        auth_date=auth_date,
    )
