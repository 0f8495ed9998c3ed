"""The ledger: what each payment brought in, as the gateway reported it, append-only.

An entry is a *movement*: the first one books a payment (or the part of it that arrived),
later ones correct it (an underpayment made good, a report that differs). The sum of an
invoice's entries is what the gateway last reported for it; the sum of every entry is the
shop's takings. Nothing is ever updated or deleted: a correction is a new entry. A refund
made is an entry of kind `refund` with a negative amount (bot/domain/refunds.py); gateway
reports are compared with the payments and corrections only, so a later report never books
a refund back.

Money is exact: fiat in integer minor units of the invoice's currency; crypto amounts,
what reached the merchant and rates as `Decimal` (stored as text), never through a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation, localcontext
from enum import StrEnum
from typing import Any

from bot.domain.money import to_decimal

MSAT_PER_BTC = Decimal(10) ** 11
RATE_DIGITS = 12  # significant digits of a stored rate (fiat per one unit of the crypto asset)


class LedgerKind(StrEnum):
    PAYMENT = "payment"  # the first booking of money that arrived for an invoice
    CORRECTION = "correction"  # a later report of the same payment that differs
    REFUND = "refund"  # money sent back (a negative amount), recorded by a manager


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a gateway reports about money that arrived, beside the status (each field None
    when the gateway does not say). Fiat amounts are minor units of the invoice's currency."""

    fiat_minor: int | None = None  # what was paid, in the invoice's currency
    crypto_amount: Decimal | None = None  # what the payer sent
    crypto_asset: str | None = None  # "BTC", "USDT", a chain id ("eth")
    fee_minor: int | None = None  # the gateway's fee or commission, in the invoice's currency
    charged_minor: int | None = None  # what the payer was charged, a commission included
    net_amount: Decimal | None = None  # what reached the merchant ...
    net_asset: str | None = None  # ... in this asset (a currency code or a crypto symbol)


@dataclass(frozen=True, slots=True)
class Booking:
    """The totals one invoice should have in the ledger after a gateway's report."""

    fiat_minor: int
    tip_minor: int = 0
    crypto_amount: Decimal | None = None
    crypto_asset: str | None = None
    fee_minor: int | None = None
    net_amount: Decimal | None = None
    net_asset: str | None = None
    charged_minor: int | None = None


@dataclass(frozen=True, slots=True)
class NewLedgerEntry:
    invoice_id: int
    merchant_id: int  # the shop
    cashier_id: int  # who made the sale (the invoice's creator)
    seq: int  # 0, 1, ... per invoice: a second writer of the same seq loses (compare-and-set)
    kind: LedgerKind
    gateway: str
    currency: str
    fiat_minor: int
    occurred_at: datetime  # when the money arrived (paidAt), else when it was seen
    recorded_at: datetime
    tip_minor: int = 0
    crypto_amount: Decimal | None = None
    crypto_asset: str | None = None
    rate: Decimal | None = None  # fiat per crypto unit, as the two amounts imply
    fee_minor: int | None = None
    net_amount: Decimal | None = None
    net_asset: str | None = None
    charged_minor: int | None = None  # what the payer was charged (MiraclePay: commission in)
    note: str = ""  # what the entry is (raw status, "backfill", ...)


@dataclass(frozen=True, slots=True)
class LedgerEntry(NewLedgerEntry):
    id: int = 0
    description: str = field(default="", compare=False)  # the invoice's, for exports


def implied_rate(fiat_minor: int, currency: str, crypto: Decimal | None) -> Decimal | None:
    """Fiat per one unit of the crypto asset, as the two reported amounts imply it."""
    if crypto is None or crypto <= 0 or fiat_minor <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = RATE_DIGITS
        return (to_decimal(fiat_minor, currency) / crypto).normalize()


def msat_to_btc(msat: int) -> Decimal:
    return Decimal(msat) / MSAT_PER_BTC  # exact: a power of ten


def decimal_or_none(value: Any) -> Decimal | None:
    """A gateway's decimal string ("0.010013") or integer as Decimal; None otherwise (never
    a float: its binary value is not what the gateway wrote)."""
    if isinstance(value, bool | float):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = Decimal(value.strip())
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() and parsed >= 0 else None


def booking_for(
    invoice_amount_minor: int,
    currency: str,
    payment: Mapping[str, Any],
    settlement: Settlement | None,
    *,
    paid_in_full: bool,
) -> Booking | None:
    """What the ledger should hold for an invoice after this report: the reported fiat
    amount (the invoice's amount when paid in full and the gateway names none), the crypto
    sent (reported, else what the invoice asked for: Mion's `amountMsat`, MixPay's on-chain
    amount), the fee (reported, else MiraclePay's `commissionAmount` kept at creation), the
    tip (`payment["tip_minor"]`, part of the amount) and what reached the merchant. None when
    nothing is known to have arrived."""
    s = settlement or Settlement()
    fiat = s.fiat_minor
    if fiat is None and paid_in_full:
        fiat = invoice_amount_minor
    if fiat is None or fiat <= 0:
        return None
    crypto, asset = s.crypto_amount, s.crypto_asset
    if crypto is None and paid_in_full:
        msat = _int(payment.get("amount_msat"))
        if msat:
            crypto, asset = msat_to_btc(msat), "BTC"
        elif (amount := decimal_or_none(payment.get("crypto_amount"))) is not None:
            crypto, asset = amount, _text(payment.get("crypto_symbol")) or asset
    fee, charged = s.fee_minor, s.charged_minor
    net, net_asset = s.net_amount, s.net_asset
    commission = _int(payment.get("commission_minor"))
    checkout = _int(payment.get("checkout_amount_minor"))
    if paid_in_full and fee is None and commission is not None and checkout:
        # MiraclePay: the prompt's amount (commission included when the customer pays it)
        # and its commission; the merchant gets the rest (payer "merchant": less than asked).
        fee, charged = commission, checkout
        if net is None:
            net, net_asset = to_decimal(checkout - commission, currency), currency
    tip = _int(payment.get("tip_minor")) or 0
    return Booking(
        fiat_minor=fiat,
        tip_minor=min(tip, fiat) if paid_in_full else 0,
        crypto_amount=crypto,
        crypto_asset=asset,
        fee_minor=fee,
        net_amount=net,
        net_asset=net_asset,
        charged_minor=charged,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums of ledger entries (fiat in minor units of `currency`)."""

    count: int = 0  # invoices with money in the ledger
    fiat_minor: int = 0
    tip_minor: int = 0
    fee_minor: int = 0
    crypto: Mapping[str, Decimal] = field(default_factory=dict)
    net: Mapping[str, Decimal] = field(default_factory=dict)


def invoice_totals(entries: Iterable[NewLedgerEntry]) -> Booking | None:
    """What the ledger holds for one invoice (the sum of its entries)."""
    fiat = tip = 0
    fee: int | None = None
    charged: int | None = None
    crypto: Decimal | None = None
    net: Decimal | None = None
    crypto_asset = net_asset = None
    seen = False
    for e in entries:
        seen = True
        fiat += e.fiat_minor
        tip += e.tip_minor
        if e.fee_minor is not None:
            fee = (fee or 0) + e.fee_minor
        if e.charged_minor is not None:
            charged = (charged or 0) + e.charged_minor
        if e.crypto_amount is not None:
            crypto = (crypto or Decimal(0)) + e.crypto_amount
        crypto_asset = e.crypto_asset or crypto_asset
        if e.net_amount is not None:
            net = (net or Decimal(0)) + e.net_amount
            net_asset = e.net_asset or net_asset
    if not seen:
        return None
    return Booking(fiat, tip, crypto, crypto_asset, fee, net, net_asset, charged)


def _delta(new: Any, old: Any) -> Any:
    if new is None:
        return None
    return new - (old or 0)


def next_entry(
    existing: Sequence[NewLedgerEntry],
    target: Booking,
    *,
    invoice_id: int,
    merchant_id: int,
    cashier_id: int,
    gateway: str,
    currency: str,
    occurred_at: datetime,
    recorded_at: datetime,
    note: str = "",
) -> NewLedgerEntry | None:
    """The entry that brings an invoice's ledger from `existing` to `target` (None when it
    already holds exactly that): the first is a payment, every later one a correction."""
    reported = [e for e in existing if e.kind is not LedgerKind.REFUND]
    held = invoice_totals(reported) or Booking(fiat_minor=0)
    fiat = target.fiat_minor - held.fiat_minor
    tip = target.tip_minor - held.tip_minor
    fee = _delta(target.fee_minor, held.fee_minor)
    charged = _delta(target.charged_minor, held.charged_minor)
    same_crypto = target.crypto_asset == held.crypto_asset or held.crypto_amount is None
    crypto = _delta(target.crypto_amount, held.crypto_amount if same_crypto else None)
    same_net = target.net_asset == held.net_asset or held.net_amount is None
    net = _delta(target.net_amount, held.net_amount if same_net else None)
    if not (fiat or tip or fee or charged or crypto or net):
        return None
    return NewLedgerEntry(
        invoice_id=invoice_id,
        merchant_id=merchant_id,
        cashier_id=cashier_id,
        seq=len(existing),
        kind=LedgerKind.CORRECTION if reported else LedgerKind.PAYMENT,
        gateway=gateway,
        currency=currency,
        fiat_minor=fiat,
        tip_minor=tip,
        crypto_amount=crypto or None,
        crypto_asset=target.crypto_asset if crypto or not reported else None,
        rate=implied_rate(target.fiat_minor, currency, target.crypto_amount) if crypto else None,
        fee_minor=fee or None,
        charged_minor=charged or None,
        net_amount=net or None,
        net_asset=target.net_asset if net else None,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        note=note[:100],
    )


def sum_entries(entries: Iterable[NewLedgerEntry]) -> dict[str, Totals]:
    """Totals per currency (invoices counted once each, by their entries' net fiat)."""
    per_invoice: dict[tuple[str, int], list[NewLedgerEntry]] = {}
    for e in entries:
        per_invoice.setdefault((e.currency, e.invoice_id), []).append(e)
    out: dict[str, Totals] = {}
    for (currency, _), group in per_invoice.items():
        one = invoice_totals(group)
        if one is None:
            continue
        t = out.get(currency, Totals())
        crypto = dict(t.crypto)
        net = dict(t.net)
        if one.crypto_amount is not None and one.crypto_asset:
            crypto[one.crypto_asset] = crypto.get(one.crypto_asset, Decimal(0)) + one.crypto_amount
        if one.net_amount is not None and one.net_asset:
            net[one.net_asset] = net.get(one.net_asset, Decimal(0)) + one.net_amount
        out[currency] = Totals(
            count=t.count + (1 if one.fiat_minor > 0 else 0),
            fiat_minor=t.fiat_minor + one.fiat_minor,
            tip_minor=t.tip_minor + one.tip_minor,
            fee_minor=t.fee_minor + (one.fee_minor or 0),
            crypto=crypto,
            net=net,
        )
    return out


__all__ = [
    "Booking",
    "LedgerEntry",
    "LedgerKind",
    "NewLedgerEntry",
    "Settlement",
    "Totals",
    "booking_for",
    "decimal_or_none",
    "implied_rate",
    "invoice_totals",
    "msat_to_btc",
    "next_entry",
    "sum_entries",
]
