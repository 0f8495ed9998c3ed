"""Amounts: text in, `Decimal` parsing, integer minor units out; and formatting for people.

Never a float: `parse_amount("12,50", "EUR")` is 1250 cents, `format_amount(1250, "EUR", "de")`
is "12,50 €".
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents of the currencies Tillbot shows; anything else has 2.
_EXPONENTS: dict[str, int] = {
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "CLP": 0,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}
# ISO 4217 currencies whose minor unit is a hundredth, spelled out so that a code nobody
# listed is known to be unknown (`known_exponent`): a gateway quoting in it must not guess.
_TWO_DECIMALS = frozenset(
    {
        "AED", "ARS", "AUD", "BDT", "BGN", "BRL", "CAD", "CHF", "CNY", "COP", "CZK", "DKK",
        "EGP", "EUR", "GBP", "GEL", "HKD", "HUF", "IDR", "ILS", "INR", "KES", "KZT", "MAD",
        "MXN", "MYR", "NGN", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RSD",
        "RUB", "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "UAH", "USD", "ZAR",
    }
)
CURRENCY_SIGNS: dict[str, str] = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF"}
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3,5}$")
# Digits with at most one decimal separator; no sign, exponent, spaces or thousands groups.
_AMOUNT_RE = re.compile(r"^(?P<int>[0-9]+)(?:[.,](?P<frac>[0-9]*))?$")

KNOWN_CURRENCIES = frozenset(
    {
        "EUR",
        "USD",
        "GBP",
        "CHF",
        "JPY",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "CAD",
        "AUD",
        "NZD",
        "BRL",
        "INR",
        "TRY",
        "ZAR",
        "SGD",
        "HKD",
        "MXN",
        "USDT",
        "USDC",
    }
)


class AmountError(ValueError):
    """Why an amount was refused: `code` names the reason, `params` fill the reply text."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


def exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has (EUR 2, JPY 0)."""
    return _EXPONENTS.get(currency.upper(), 2)


def known_exponent(currency: str) -> int | None:
    """The currency's decimals when Tillbot knows them for certain (JPY 0, KWD 3, EUR 2),
    else None: for amounts a gateway quotes in its own unit, where a guess would misbook."""
    code = currency.upper()
    if code in _EXPONENTS:
        return _EXPONENTS[code]
    return 2 if code in _TWO_DECIMALS else None


def minor_from_plain(text: object, currency: str) -> int | None:
    """An API's decimal ('12.5', '1250', 10, or a JSON number read as Decimal) in minor
    units of `currency`, exactly; None when absent, a float, not a plain non-negative
    decimal, or finer than the currency's minor unit."""
    places = known_exponent(currency)
    if places is None or isinstance(text, bool) or not isinstance(text, str | int | Decimal):
        return None
    if isinstance(text, Decimal):
        if not text.is_finite():
            return None
        text = format(text, "f")
    cleaned = str(text).strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", cleaned):
        return None
    value = Decimal(cleaned).scaleb(places)
    if value != value.to_integral_value():
        return None
    return int(value)


def is_currency_code(text: str) -> bool:
    return bool(_CURRENCY_RE.match(text)) and text.upper() in KNOWN_CURRENCIES


def parse_amount(text: str, currency: str, maximum: Decimal) -> int:
    """Parse what a merchant typed into minor units of `currency`; raise AmountError.

    Accepts `12.50`, `12,50` and `12`; refuses exponents, signs, NaN, infinity, more
    decimals than the currency has, zero, and anything above `maximum`.
    """
    cleaned = text.strip()
    places = exponent(currency)
    match = _AMOUNT_RE.match(cleaned)
    if not match or len(cleaned) > 32:
        if cleaned.startswith("-"):
            raise AmountError("not_positive")
        raise AmountError("not_a_number", text=cleaned[:20])
    frac = match.group("frac") or ""
    if len(frac) > places:
        raise AmountError("too_many_decimals", count=places)
    try:
        value = Decimal(f"{match.group('int')}.{frac or '0'}")
    except InvalidOperation:  # pragma: no cover - the regex admits only digits
        raise AmountError("not_a_number", text=cleaned[:20]) from None
    if value <= 0:
        raise AmountError("not_positive")
    if value > maximum:
        raise AmountError("too_large", maximum=maximum)  # written in the reader's language
    return int(value.scaleb(places))


def to_decimal(minor: int, currency: str) -> Decimal:
    """Minor units back to an exact Decimal (1250 EUR cents -> Decimal('12.50'))."""
    return Decimal(minor).scaleb(-exponent(currency))


def plain_decimal(minor: int, currency: str) -> str:
    """The shortest exact decimal string for APIs: 1000 -> '10', 1250 -> '12.5'."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError("minor must be an int")
    return decimal_text(to_decimal(minor, currency))


def decimal_text(value: Decimal) -> str:
    """The shortest exact plain text of a decimal: 10.00 -> '10', 12.50 -> '12.5'."""
    if not value.is_finite():
        raise ValueError("amount must be finite")
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
