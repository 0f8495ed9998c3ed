"""The one money module (bot/domain/money.py) and the one parser of gateway times (bot/times.py),
with the variants the gateways' public docs show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from bot.domain.money import decimal_text, minor_from_plain, plain_decimal
from bot.times import iso_z, parse_time

NOW = datetime(2026, 11, 21, 22, 0, 0, tzinfo=UTC)


# -- money on the wire ------------------------------------------------------------------------
def test_decimal_helpers_are_exact() -> None:
    assert plain_decimal(1000, "USD") == "10"
    assert plain_decimal(1250, "USD") == "12.5"
    assert plain_decimal(1234, "USD") == "12.34"
    assert plain_decimal(5, "USD") == "0.05"
    assert plain_decimal(100000000, "USD") == "1000000"
    assert decimal_text(Decimal("0.00025836")) == "0.00025836"
    assert minor_from_plain("12.5", "USD") == 1250
    assert minor_from_plain("10", "USD") == 1000
    assert minor_from_plain(10, "USD") == 1000
    assert minor_from_plain("0.001", "USD") is None
    assert minor_from_plain(12.5, "USD") is None  # never a float
    assert minor_from_plain("abc", "USD") is None and minor_from_plain(None, "USD") is None
    with pytest.raises(TypeError):
        plain_decimal(12.5, "USD")  # type: ignore[arg-type]


def test_amounts_in_the_quote_assets_own_decimals() -> None:
    """MixPay quotes in the asset's decimals (JPY 0, KWD 3), not always 2."""
    assert plain_decimal(1234, "JPY") == "1234"
    assert plain_decimal(1234, "KWD") == "1.234"
    assert minor_from_plain("1.234", "KWD") == 1234
    assert minor_from_plain("12.5", "JPY") is None
    assert minor_from_plain("1", "BTC") is None  # decimals unknown: never guessed


def test_json_numbers_read_as_decimal() -> None:
    """MiraclePay sends amounts as JSON numbers, read with parse_float=Decimal."""
    assert minor_from_plain(Decimal("103.52"), "USD") == 10352
    assert minor_from_plain(Decimal("1E+2"), "USD") == 10000
    assert minor_from_plain(Decimal("3.021"), "USD") is None
    assert minor_from_plain(Decimal("NaN"), "USD") is None
    assert minor_from_plain(Decimal("-1"), "USD") is None


# -- times on the wire ------------------------------------------------------------------------
def test_time_helpers() -> None:
    assert parse_time("2019-08-24T14:15:22Z") == datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert parse_time("2025-01-29T14:30:00.000Z") == datetime(2025, 1, 29, 14, 30, tzinfo=UTC)
    assert parse_time(1647179141) == datetime.fromtimestamp(1647179141, UTC)
    assert parse_time("1647179141") == datetime.fromtimestamp(1647179141, UTC)
    junk: list[Any] = [None, "", "yesterday", 0, True, [], {}]
    for value in junk:
        assert parse_time(value) is None
    assert iso_z(NOW + timedelta(microseconds=5)) == "2026-11-21T22:00:00Z"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Mion: paidAt, expiresAt, expiry of a payment attempt
        ("2019-08-24T14:15:22Z", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),
        # MiraclePay: expiresAt, createdAt with milliseconds
        ("2025-01-29T14:30:00.000Z", datetime(2025, 1, 29, 14, 30, tzinfo=UTC)),
        # MixPay: `date`, `expire` in Unix seconds, as a number or as text
        (1656513302, datetime(2022, 6, 29, 14, 35, 2, tzinfo=UTC)),
        ("1647179141", datetime(2022, 3, 13, 13, 45, 41, tzinfo=UTC)),
        # an offset: converted to UTC
        ("2019-08-24T16:15:22+02:00", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),
        ("2019-08-24t14:15:22z", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),
        # no offset at all: UTC, the one rule (never the machine's local time)
        ("2019-08-24T14:15:22", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),
        ("2019-08-24 14:15:22.5", datetime(2019, 8, 24, 14, 15, 22, 500000, tzinfo=UTC)),
        (" 2019-08-24T14:15:22Z ", datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)),
    ],
)
def test_every_documented_time_form_parses_to_aware_utc(
    value: object, expected: datetime
) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [10**20, "99999999999999999999", -5, "-5", "١٢٣", 1.5e9, "2019-13-01T00:00:00Z", "  "],
)
def test_times_beyond_reason_are_none_not_a_crash(value: object) -> None:
    assert parse_time(value) is None


def test_a_stored_attempt_expiry_round_trips() -> None:
    """What the adapters store (`iso_z`) reads back as the same aware moment."""
    moment = datetime(2026, 11, 21, 23, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert parse_time(iso_z(moment)) == moment
