"""Ids typed by people or carried in button data: ASCII digits within range, or nothing.

`str.isdigit()` and `int()` accept far more than ids: `"²".isdigit()` is True and `int("²")`
raises, `int("١٢٣")` is 123 (Arabic-Indic digits), and a 25-digit number overflows the
database's 64-bit integers. Every id from user input goes through `parse_id`.
"""

from __future__ import annotations

import re

# Telegram: user and chat ids have at most 52 significant bits (safe in an int64 or a double).
TELEGRAM_ID_MAX = 2**52 - 1
# Invoice ids are the database's positive 64-bit integers.
INVOICE_ID_MAX = 2**63 - 1
# Pages of /invoices: far beyond any real list, and small enough for an SQL OFFSET.
PAGE_MAX = 10**6

_ASCII_DIGITS = re.compile(r"[0-9]+")


def parse_id(text: str, maximum: int, *, minimum: int = 1) -> int | None:
    """`text` as an integer in [minimum, maximum] written in ASCII digits 0-9; else None."""
    if len(text) > len(str(maximum)) or not _ASCII_DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


def parse_user_id(text: str) -> int | None:
    """A Telegram user id: positive (group ids are negative), at most 52 bits."""
    return parse_id(text, TELEGRAM_ID_MAX)


def parse_invoice_id(text: str) -> int | None:
    return parse_id(text, INVOICE_ID_MAX)


def parse_page(text: str) -> int | None:
    return parse_id(text, PAGE_MAX, minimum=0)
