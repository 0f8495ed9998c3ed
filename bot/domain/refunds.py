"""Refunds: money a shop sends back for an invoice, recorded, not executed.

None of the gateways documents a refund API, so Tillbot records a refund and its life; the
money itself is sent by a person outside Tillbot:

    due ──────────> address_given ──> refunded
     │  └──────────────────────────────^
     └──> cancelled <── address_given (also address_given -> address_given: a new address)

- due: a manager marked the invoice for refund (amount, reason); the customer is asked for
  an address through the deep link `?start=rf_<token>`;
- address_given: the customer named where the money should go;
- refunded: the manager sent it and recorded the transaction reference; a ledger entry of
  kind `refund` (negative fiat) is appended at that moment. A refund may be recorded
  without an address (handed back in cash at the counter, an address given by phone);
- cancelled: not refunded after all (its amount is refundable again).

What may be refunded is what the ledger says arrived for the invoice (payments and
corrections, a tip included), minus every refund open or made: open refunds hold their
amount, so the refunds of an invoice never add up to more than was paid.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.domain.drafts import InputError
from bot.domain.ledger import LedgerKind, NewLedgerEntry
from bot.text import strip_controls

REFUND_PREFIX = "rf_"
TOKEN_BYTES = 12
TOKEN_LENGTH = 16  # "rf_" + 16 = 19 characters: never a link's 18 or an invoice's 22
REASON_MAX = 200
TX_REF_MAX = 200
ADDRESS_MIN, ADDRESS_MAX = 3, 1000
# Addresses of every chain, Lightning addresses and invoices, LNURLs, IBANs, payment URIs:
# one word of these characters. No chain's checksum is checked (the person sending the
# money does that); this only keeps out what is no address at all.
_ADDRESS_RE = re.compile(r"[A-Za-z0-9:@._+\-/?=&%~#]+")


class RefundState(StrEnum):
    DUE = "due"
    ADDRESS_GIVEN = "address_given"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"


ALLOWED_MOVES: dict[RefundState, frozenset[RefundState]] = {
    RefundState.DUE: frozenset(
        {RefundState.ADDRESS_GIVEN, RefundState.REFUNDED, RefundState.CANCELLED}
    ),
    RefundState.ADDRESS_GIVEN: frozenset(
        {RefundState.ADDRESS_GIVEN, RefundState.REFUNDED, RefundState.CANCELLED}
    ),
    RefundState.REFUNDED: frozenset(),
    RefundState.CANCELLED: frozenset(),
}
OPEN_STATES = frozenset({RefundState.DUE, RefundState.ADDRESS_GIVEN})
# States whose amount counts against what may still be refunded.
HOLDING_STATES = OPEN_STATES | {RefundState.REFUNDED}


def sources_of(target: RefundState) -> frozenset[RefundState]:
    """The states from which a refund may move to `target`."""
    return frozenset(s for s, targets in ALLOWED_MOVES.items() if target in targets)


def new_refund_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def refund_token_in(payload: str) -> str | None:
    """The token of a `/start rf_<token>` payload; None when it is none."""
    if not payload.startswith(REFUND_PREFIX):
        return None
    token = payload[len(REFUND_PREFIX) :]
    if len(token) != TOKEN_LENGTH or not all(c.isalnum() or c in "-_" for c in token):
        return None
    return token


@dataclass(frozen=True, slots=True)
class NewRefund:
    invoice_id: int
    shop_id: int
    amount_minor: int
    currency: str
    reason: str
    token: str
    requested_by: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Refund:
    id: int
    invoice_id: int
    shop_id: int
    amount_minor: int
    currency: str
    reason: str
    token: str
    state: RefundState
    requested_by: int
    created_at: datetime
    updated_at: datetime
    invoice_number: int = 0  # the shop's number of the invoice (what people see)
    gateway: str = ""  # the invoice's
    address: str | None = None
    customer_id: int | None = None  # who gave the address (or opened the link last)
    awaiting_until: datetime | None = None  # their next message is the address until then
    tx_ref: str | None = None
    settled_by: int | None = None  # who recorded it refunded or cancelled it
    settled_at: datetime | None = None
    ledger_seq: int | None = None  # the invoice's ledger entry of this refund

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


def paid_minor(entries: Iterable[NewLedgerEntry]) -> int:
    """What arrived for an invoice: its payments and corrections (refunds left out)."""
    return sum(e.fiat_minor for e in entries if e.kind is not LedgerKind.REFUND)


def held_minor(refunds: Iterable[Refund]) -> int:
    """What an invoice's refunds hold: every one open or made."""
    return sum(r.amount_minor for r in refunds if r.state in HOLDING_STATES)


def refundable_minor(entries: Iterable[NewLedgerEntry], refunds: Iterable[Refund]) -> int:
    return max(0, paid_minor(entries) - held_minor(refunds))


def check_amount(amount_minor: int, refundable: int, currency: str) -> None:
    """Raise InputError unless 0 < amount <= what may still be refunded."""
    if refundable <= 0:
        raise InputError("refund_nothing_left")
    if amount_minor <= 0:
        raise InputError("amount_not_positive")
    if amount_minor > refundable:
        # `refundable_minor` in minor units of `currency`: the reply writes it as an amount.
        raise InputError("refund_too_much", refundable_minor=refundable, currency=currency)


def clean_reason(text: str) -> str:
    reason = strip_controls(text)
    if not reason:
        raise InputError("refund_reason_missing")
    if len(reason) > REASON_MAX:
        raise InputError("refund_reason_too_long", count=REASON_MAX)
    return reason


def clean_tx_ref(text: str) -> str:
    ref = strip_controls(text)
    if not ref:
        raise InputError("refund_tx_missing")
    if len(ref) > TX_REF_MAX:
        raise InputError("refund_tx_too_long", count=TX_REF_MAX)
    return ref


def clean_address(text: str) -> str:
    """One word of address characters, 3 to 1000 long; InputError otherwise."""
    address = text.strip()
    if not ADDRESS_MIN <= len(address) <= ADDRESS_MAX or not _ADDRESS_RE.fullmatch(address):
        raise InputError("refund_address_invalid", min=ADDRESS_MIN, max=ADDRESS_MAX)
    return address


def refund_entry(
    refund: Refund,
    *,
    seq: int,
    gateway: str,
    recorded_by: int,
    at: datetime,
    tx_ref: str,
) -> NewLedgerEntry:
    """The ledger entry of a refund made: its amount negative, booked when it was recorded;
    `cashier` is who recorded it."""
    return NewLedgerEntry(
        invoice_id=refund.invoice_id,
        merchant_id=refund.shop_id,
        cashier_id=recorded_by,
        seq=seq,
        kind=LedgerKind.REFUND,
        gateway=gateway,
        currency=refund.currency,
        fiat_minor=-refund.amount_minor,
        occurred_at=at,
        recorded_at=at,
        note=f"refund {refund.id}: {tx_ref}"[:100],
    )


__all__ = [
    "ALLOWED_MOVES",
    "HOLDING_STATES",
    "OPEN_STATES",
    "REFUND_PREFIX",
    "NewRefund",
    "Refund",
    "RefundState",
    "check_amount",
    "clean_address",
    "clean_reason",
    "clean_tx_ref",
    "held_minor",
    "new_refund_token",
    "paid_minor",
    "refund_entry",
    "refund_token_in",
    "refundable_minor",
    "sources_of",
]
