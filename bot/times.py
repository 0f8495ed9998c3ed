"""Times on the wire: the one parser of gateway (and stored) times, and the one writer.

The rule for a time without an offset: it is UTC. Every gateway documents its times in UTC
(Mion `2019-08-24T14:15:22Z`, MiraclePay `2025-01-29T14:30:00.000Z`, MixPay Unix seconds),
and what Tillbot stores itself is written with `iso_z`; so a naive ISO 8601 text is taken
as UTC, never as this machine's local time. Every parsed time is aware, in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: object) -> datetime | None:
    """ISO 8601 (with `Z`, an offset, or none: UTC) or Unix seconds (int or digits) -> an
    aware UTC datetime; None for anything else (absent, empty, 0, booleans, junk)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _from_unix(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return _from_unix(int(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _from_unix(seconds: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
    except (OverflowError, OSError, ValueError):  # beyond year 9999
        return None


def iso_z(value: datetime) -> str:
    """Aware datetime -> '2026-11-21T22:00:00Z' (UTC, whole seconds)."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
