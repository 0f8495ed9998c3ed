"""Reusable payment links and receipts: what they are, and what a receipt shows.

A payment link (`https://t.me/<bot>?start=l_<token>`) never expires: each customer who opens
it gets a fresh invoice of their own, for the link's amount or, for an open amount, the
amount the customer names. A receipt (`?start=r_<token>`) shows one paid invoice again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.domain.models import Invoice, InvoiceKind
from bot.domain.money import to_decimal

LINK_PREFIX = "l_"
RECEIPT_PREFIX = "r_"
# 96 bits; "l_"/"r_" + 16 characters = 18, never the 22 of an invoice's public token.
TOKEN_BYTES = 12
TOKEN_LENGTH = 16
MSAT_PER_BTC = 100_000_000_000


def new_token() -> str:
    """An unguessable token of a link or a receipt (letters, digits, - and _)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_in(payload: str, prefix: str) -> str | None:
    """The token a `/start` payload names after `prefix` (None when it is not one)."""
    if not payload.startswith(prefix):
        return None
    token = payload[len(prefix) :]
    if len(token) != TOKEN_LENGTH or not all(c.isalnum() or c in "-_" for c in token):
        return None
    return token


@dataclass(frozen=True, slots=True)
class NewLink:
    token: str
    merchant_id: int
    amount_minor: int | None  # None: an open amount, the customer names it
    currency: str
    description: str
    gateway: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentLink:
    token: str
    merchant_id: int
    amount_minor: int | None
    currency: str
    description: str
    gateway: str
    created_at: datetime
    disabled_at: datetime | None = None
    # Paid invoices opened from the link: how many, and their amounts together.
    sales_count: int = 0
    sales_total_minor: int = 0

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None

    @property
    def open_amount(self) -> bool:
        return self.amount_minor is None


@dataclass(frozen=True, slots=True)
class CryptoLeg:
    """What was paid in crypto and at which rate (one `rate_unit` in the fiat)."""

    amount: str
    symbol: str
    rate: Decimal | None
    rate_unit: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a receipt image shows, from the stored invoice (and what the ledger adds)."""

    invoice_id: int
    token: str
    merchant: str
    note: str
    amount_minor: int
    currency: str
    paid_at: datetime | None
    reference: str
    crypto: CryptoLeg | None = None
    # Booked separately from the amount where tips exist; None when there is none.
    tip_minor: int | None = None

    @property
    def total_minor(self) -> int:
        return self.amount_minor + (self.tip_minor or 0)


def crypto_leg(invoice: Invoice) -> CryptoLeg | None:
    """The crypto side of a payment as the invoice records it today: the Lightning
    attempt's millisatoshis, or an on-chain amount and symbol; the rate is fiat per unit."""
    payment: dict[str, Any] = invoice.payment
    fiat = to_decimal(invoice.amount_minor, invoice.currency)
    msat = payment.get("amount_msat")
    if invoice.kind is InvoiceKind.LIGHTNING and isinstance(msat, int) and msat > 0:
        btc = Decimal(msat) / MSAT_PER_BTC
        sats = Decimal(msat) / 1000
        text = f"{sats:f}".rstrip("0").rstrip(".") if msat % 1000 else str(msat // 1000)
        return CryptoLeg(amount=text, symbol="sats", rate=_rate(fiat, btc), rate_unit="BTC")
    amount, symbol = payment.get("crypto_amount"), payment.get("crypto_symbol")
    if amount and symbol:
        try:
            crypto = Decimal(str(amount))
        except ArithmeticError:
            crypto = Decimal(0)
        return CryptoLeg(
            amount=str(amount), symbol=str(symbol), rate=_rate(fiat, crypto), rate_unit=str(symbol)
        )
    return None


def _rate(fiat: Decimal, crypto: Decimal) -> Decimal | None:
    if not crypto.is_finite() or crypto <= 0:
        return None
    return (fiat / crypto).quantize(Decimal("0.01"))


def tip_of(invoice: Invoice) -> int | None:
    """The invoice's tip in minor units where one is booked (a `tip_minor` field or the
    payment's `tip_minor`); None otherwise."""
    value = getattr(invoice, "tip_minor", None)
    if value is None:
        value = invoice.payment.get("tip_minor")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
