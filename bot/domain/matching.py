"""Whether a gateway's status is about this invoice, and whether it pays all of it."""

from __future__ import annotations

import logging

from bot.domain.models import Invoice
from bot.gateways.base import SessionStatus

log = logging.getLogger(__name__)


def matches(invoice: Invoice, status: SessionStatus, expected_payee: str | None) -> bool:
    """A status is about this invoice: payee and currency agree where the gateway says;
    with `strict_match`, payee, currency and amount must all be present and equal."""
    if status.strict_match and (
        status.payee is None
        or status.payee != expected_payee
        or status.currency is None
        or status.currency.upper() != invoice.currency.upper()
        or status.amount_minor != invoice.amount_minor
    ):
        log.warning("invoice %s: paid status does not match the invoice; ignored", invoice.id)
        return False
    if status.payee is not None and expected_payee is not None and status.payee != expected_payee:
        log.warning("invoice %s: status names another payee; ignored", invoice.id)
        return False
    if status.currency is not None and status.currency.upper() != invoice.currency.upper():
        log.warning("invoice %s: status in another currency; ignored", invoice.id)
        return False
    return True


def is_short(invoice: Invoice, status: SessionStatus) -> bool:
    """The gateway reports less than the invoice's amount (in a currency it names)."""
    return (
        status.amount_minor is not None
        and status.currency is not None
        and status.amount_minor < invoice.amount_minor
    )
