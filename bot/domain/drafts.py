"""A merchant's request for an invoice, before validation; how our ids look to gateways."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain.models import Invoice, InvoiceKind
from bot.domain.money import currency_in, normalize_amount, split_currency
from bot.ids import parse_invoice_id

# Which gateways serve a kind of payment, in order of preference.
KIND_GATEWAYS: dict[InvoiceKind, tuple[str, ...]] = {
    InvoiceKind.LIGHTNING: ("mion", "sandbox"),
    InvoiceKind.ONCHAIN: ("mixpay",),
}
_PLAIN_AMOUNT = re.compile(r"[0-9]+(\.[0-9]*)?")  # ASCII digits only: never `١٢`


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
    args: Sequence[str], kind: InvoiceKind = InvoiceKind.CHECKOUT, group: str = ","
) -> InvoiceDraft:
    """`12.50 Coffee`, `12 USD Lamp`, `EUR 12`, `€3.50`, `3,50 € Tea`, `1.234,50`: amount,
    optional currency (code or sign, before or after), description. The amount is read with
    the thousands `group` mark of the writer's language and kept as plain digits (`1234.50`); a code
    in capitals that no gateway may take (`12 BTC Lamp`) is still the currency, for the
    gateway to refuse by name, never part of the description."""
    words = [w for w in args if w]
    if not words:
        raise InputError("amount_missing")
    currency: str | None = None
    if len(words) > 1 and currency_in(words[0]) and not currency_in(words[1]):
        currency, words = currency_in(words[0]), words[1:]
    number, glued = split_currency(words[0])
    currency = _one_currency(currency, glued)
    rest = words[1:]
    if rest and currency_in(rest[0]):
        currency, rest = _one_currency(currency, currency_in(rest[0])), rest[1:]
    return InvoiceDraft(
        amount_text=normalize_amount(number, group),
        description=" ".join(rest),
        currency=currency,
        kind=kind,
    )


def _one_currency(first: str | None, second: str | None) -> str | None:
    if first and second and first != second:
        raise InputError("two_currencies", first=first, second=second)
    return first or second


def looks_like_amount(text: str) -> bool:
    """Whether a message is an amount on its own (`3.50`, `€3.50`, `12,50 €`, `5 USD`), the
    start of an invoice the bot can offer to make."""
    words = text.split()
    if not 1 <= len(words) <= 2:
        return False
    try:
        draft = parse_invoice_args(words)
    except InputError:
        return False
    return not draft.description and _PLAIN_AMOUNT.fullmatch(draft.amount_text) is not None


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
