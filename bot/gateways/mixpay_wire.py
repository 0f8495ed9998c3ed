"""What MixPay's wire values mean: the assets that need a memo, the API's codes, amounts as
text. Shared by the adapter (`bot/gateways/mixpay.py`) and the settings check at start."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.domain.money import decimal_text, known_exponent

# On-chain payment assets (Mixin asset ids) whose transfers need a memo or a tag: (symbol,
# field, whether a QR payment URI carries it; bot/telegram/qr.py builds those URIs).
XRP = "23dfb5a5-5d7b-48b6-905f-3970e3176e27"
XLM = "56e63c06-b506-4ec5-885a-4a5ac17b83c1"
EOS = "6cfe566e-4aad-470b-8c9a-2fd35b49c68d"
MEMO_ASSETS: dict[str, tuple[str, str, bool]] = {
    XRP: ("XRP", "tag", True),  # ripple:<address>?dt=<tag>
    XLM: ("XLM", "memo", True),  # SEP-0007 web+stellar:pay?...&memo=<memo>
    EOS: ("EOS", "memo", False),  # no payment URI a wallet scans carries an EOS memo
}

# Top-level API codes (MixPay's error-codes page).
RATE_LIMITED_CODES = {1429}
UNAVAILABLE_CODES = {-1, 10008, 10034, 40009, 40011}
PAYEE_CODES = {2000, 10000, 10001, 10074, 40001}
NOT_FOUND_CODES = {404, 10062, 40022}


def code_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def currency_of(asset_id: str) -> str:
    """MixPay's fiat quote ids are lowercase ISO codes ('usd'); crypto ones are UUIDs."""
    return asset_id.upper() if len(asset_id) == 3 and asset_id.isalpha() else asset_id


def quote_asset_problem(quote_asset_id: str) -> str | None:
    """Why MIXPAY_QUOTE_ASSET_ID cannot be used (its decimals are unknown), or None."""
    asset = quote_asset_id.strip().lower()
    if known_exponent(currency_of(asset)) is None:
        return (
            f"quote asset {asset!r} has decimals Tillbot does not know; use a fiat currency "
            "id such as usd, eur, jpy or kwd"
        )
    return None


def payment_asset_problem(payment_asset_id: str | None) -> str | None:
    """Why MIXPAY_PAYMENT_ASSET_ID cannot be used (it needs a memo no QR can carry), or None."""
    known = MEMO_ASSETS.get((payment_asset_id or "").strip().lower())
    if known is not None and not known[2]:
        return (
            f"payment asset {known[0]} needs a {known[1]} with every transfer and Tillbot "
            "cannot put it in a QR code; choose another asset"
        )
    return None


def positive_amount(value: Any) -> Decimal | None:
    """A positive decimal amount from MixPay's text ('0.0001'), else None."""
    if value is None or isinstance(value, bool | float):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount > 0 else None


def amount_text(value: Any, symbol: Any) -> str | None:
    """'0.00008333 BTC' from MixPay's amount and symbol; None when nothing (or 0) is there."""
    amount = positive_amount(value)
    if amount is None:
        return None
    unit = symbol.strip() if isinstance(symbol, str) else ""
    return f"{decimal_text(amount)} {unit}".strip()
