"""initData as Telegram's Mini App docs define it: HMAC-SHA256 under a key derived from the
bot token and "WebAppData", every field but `hash` sorted into the data-check string, and
`auth_date` at most 24 hours old."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import pytest

from bot.webapp.auth import InitDataError, from_header, sign, validate

TOKEN = "123456:TEST-token-for-initdata"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def fields(**extra: str) -> dict[str, str]:
    return {
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "user": json.dumps({"id": 279058397, "first_name": "Vlad", "language_code": "de"}),
        "auth_date": str(int(NOW.timestamp()) - 60),
        **extra,
    }


def test_a_hash_computed_by_the_docs_recipe_is_accepted() -> None:
    data = fields(start_param="i_abc")
    secret = hmac.new(b"WebAppData", TOKEN.encode(), hashlib.sha256).digest()
    check = "\n".join(f"{k}={v}" for k, v in sorted(data.items()))
    digest = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    user = validate(urlencode({**data, "hash": digest}), TOKEN, NOW)
    assert (user.user_id, user.first_name, user.language_code) == (279058397, "Vlad", "de")
    assert user.start_param == "i_abc"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: {**d, "user": d["user"].replace("279058397", "1")},  # another user
        lambda d: {**d, "hash": "0" * 64},  # a made-up hash
        lambda d: {k: v for k, v in d.items() if k != "hash"},  # no hash
        lambda d: {**d, "extra": "1"},  # a field added after signing
    ],
)
def test_forged_init_data_is_refused(tamper: object) -> None:
    signed = dict(parse_qsl(sign(fields(), TOKEN)))
    forged = urlencode(tamper(signed))  # type: ignore[operator]
    with pytest.raises(InitDataError):
        validate(forged, TOKEN, NOW)


def test_init_data_signed_with_another_token_is_refused() -> None:
    with pytest.raises(InitDataError):
        validate(sign(fields(), "654321:another-bot"), TOKEN, NOW)


def test_stale_and_future_auth_dates_are_refused() -> None:
    old = int((NOW - timedelta(hours=24, seconds=1)).timestamp())
    with pytest.raises(InitDataError):
        validate(sign(fields(auth_date=str(old)), TOKEN), TOKEN, NOW)
    almost = int((NOW - timedelta(hours=23, minutes=59)).timestamp())
    assert validate(sign(fields(auth_date=str(almost)), TOKEN), TOKEN, NOW).user_id == 279058397
    future = int((NOW + timedelta(minutes=5)).timestamp())
    for auth_date in (str(future), "999999999999", "0", "１２３"):
        with pytest.raises(InitDataError):
            validate(sign(fields(auth_date=auth_date), TOKEN), TOKEN, NOW)


@pytest.mark.parametrize(
    "raw",
    ["", "garbage", "user=%7B%7D&auth_date=1&hash=x", "a=1&a=2&hash=00", "x" * 9000],
)
def test_malformed_init_data_is_refused(raw: str) -> None:
    with pytest.raises(InitDataError):
        validate(raw, TOKEN, NOW)


def test_a_signed_init_data_without_a_user_is_refused() -> None:
    data = {k: v for k, v in fields().items() if k != "user"}
    with pytest.raises(InitDataError):
        validate(sign(data, TOKEN), TOKEN, NOW)


def test_the_authorization_header_scheme_is_tma() -> None:
    assert from_header("tma query_id=1&hash=2") == "query_id=1&hash=2"
    for header in (None, "", "tma", "tma   ", "Bearer abc", "Basic dG1h"):
        with pytest.raises(InitDataError):
            from_header(header)
