"""A merchant's request for an invoice, before validation; how our ids look to gateways."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain.models import Invoice, InvoiceKind
from bot.domain.money import is_currency_code
from bot.ids import parse_invoice_id

# Which gateways serve a kind of payment, in order of preference.
KIND_GATEWAYS: dict[InvoiceKind, tuple[str, ...]] = {
    InvoiceKind.LIGHTNING: ("mion", "sandbox"),
    InvoiceKind.ONCHAIN: ("mixpay",),
}


class InputError(ValueError):
    """A merchant's request cannot be done as written; `code` and `params` make the reply."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


class NotAllowed(PermissionError):
    """The user may not do this (not a merchant, not their invoice)."""


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """What a merchant asked for, before validation."""

    amount_text: str
    description: str = ""
    currency: str | None = None
    gateway: str | None = None
    kind: InvoiceKind = InvoiceKind.CHECKOUT


def parse_invoice_args(
    args: Sequence[str], kind: InvoiceKind = InvoiceKind.CHECKOUT
) -> InvoiceDraft:
    """`12.50 Coffee`, `12 USD Lamp`, `EUR 12`: amount, optional currency, description."""
    words = [w for w in args if w]
    if not words:
        raise InputError("amount_missing")
    currency: str | None = None
    if len(words) > 1 and is_currency_code(words[0]) and not is_currency_code(words[1]):
        currency, words = words[0].upper(), [words[1], *words[2:]]
    amount, rest = words[0], words[1:]
    if rest and is_currency_code(rest[0]):
        currency, rest = rest[0].upper(), rest[1:]
    return InvoiceDraft(
        amount_text=amount, description=" ".join(rest), currency=currency, kind=kind
    )


def new_public_token() -> str:
    """An unguessable token for customer links (128 bits; letters, digits, - and _)."""
    return secrets.token_urlsafe(16)


def reference_for(invoice: Invoice) -> str:
    """Our invoice id as gateways see it: `tb-<id>-<8 hex>`; the suffix keeps references
    unique when a database is reset, without revealing the public token."""
    suffix = hashlib.sha256(invoice.public_token.encode()).hexdigest()[:8]
    return f"tb-{invoice.id}-{suffix}"


def invoice_id_in(reference: str) -> int | None:
    """The invoice id a `tb-<id>-<8 hex>` reference names (check it with `reference_for`)."""
    parts = reference.split("-")
    return parse_invoice_id(parts[1]) if len(parts) == 3 and parts[0] == "tb" else None
