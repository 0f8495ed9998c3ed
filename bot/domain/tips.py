"""Tips at the counter: what the customer may add on top of the amount, in minor units.

A tip is booked separately from the amount (the invoice charges both; `CounterSale` keeps
the split). Percentages are whole numbers, so the page can show the same tip the server
books with integer arithmetic: percent of the amount, half up to the minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.domain.money import exponent

DEFAULT_TIP_PERCENTS: tuple[int, int, int] = (5, 10, 15)
MAX_TIP_PERCENT = 100


class TipKind(StrEnum):
    NONE = "none"
    PERCENT = "percent"
    ROUND_UP = "roundup"


class TipError(ValueError):
    """A tip choice that does not fit the merchant's settings."""


@dataclass(frozen=True, slots=True)
class Tip:
    kind: TipKind
    minor: int
    percent: int | None = None


def percent_tip(amount_minor: int, percent: int) -> int:
    """`percent` % of the amount, rounded half up to the minor unit (integers only)."""
    return (amount_minor * percent * 2 + 100) // 200


def round_up_step(currency: str) -> int:
    """Round-up goes to the next whole unit (the next 100 for currencies without decimals)."""
    places = exponent(currency)
    return 10**places if places > 0 else 100


def round_up_tip(amount_minor: int, currency: str) -> int:
    """What rounds the amount up to the next whole unit (a whole amount: one unit more)."""
    step = round_up_step(currency)
    return step - amount_minor % step


def choose_tip(
    amount_minor: int, currency: str, kind: str, percent: object, allowed: tuple[int, ...]
) -> Tip:
    """The tip a customer chose, checked against the merchant's percentages."""
    if kind == TipKind.NONE:
        return Tip(TipKind.NONE, 0)
    if kind == TipKind.ROUND_UP:
        return Tip(TipKind.ROUND_UP, round_up_tip(amount_minor, currency))
    if kind == TipKind.PERCENT:
        if isinstance(percent, bool) or not isinstance(percent, int) or percent not in allowed:
            raise TipError("percent not offered")
        return Tip(TipKind.PERCENT, percent_tip(amount_minor, percent), percent)
    raise TipError("unknown tip kind")


def parse_percents(words: list[str]) -> tuple[int, int, int]:
    """Three whole percentages from 1 to 100 (`/settings tips 5 10 15`); TipError else."""
    if len(words) != 3:
        raise TipError("three percentages")
    values: list[int] = []
    for word in words:
        text = word.strip().rstrip("%")
        if not text.isdigit() or not text.isascii() or len(text) > 3:
            raise TipError("not a whole number")
        value = int(text)
        if not 1 <= value <= MAX_TIP_PERCENT:
            raise TipError("out of range")
        values.append(value)
    return values[0], values[1], values[2]


@dataclass(frozen=True, slots=True)
class CounterSale:
    """The split of a counter invoice: the amount asked and the tip added on top."""

    invoice_id: int
    merchant_id: int
    amount_minor: int
    tip_minor: int
    tip_kind: TipKind
    currency: str


@dataclass(frozen=True, slots=True)
class DaySales:
    """A merchant's paid sales of one day in one currency."""

    currency: str
    count: int
    total_minor: int
    tips_minor: int
