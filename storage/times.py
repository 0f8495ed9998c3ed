"""Times in the database: integer milliseconds since the epoch, so both backends store
them the same way and compare them exactly; timezone-aware UTC datetimes in Python."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(value: datetime | None) -> int | None:
    """UTC datetime to integer epoch milliseconds (the database representation), exactly."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime: Tillbot stores timezone-aware UTC times only")
    return (value - EPOCH) // timedelta(milliseconds=1)


def from_ms(value: int | None) -> datetime | None:
    if value is None:
        return None
    seconds, millis = divmod(int(value), 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
