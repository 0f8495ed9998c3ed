"""Booking payments in the ledger (bot/domain/ledger.py) as gateways report them.

A paid transition carries its entry in the same transaction as the status change
(`Transition.ledger`); an underpayment, which changes no status, is appended on its own,
compare-and-set on the invoice's next `seq` (a racing writer's entry wins; this one re-reads
and books only what is still missing).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from bot.domain.ledger import NewLedgerEntry, Settlement, booking_for, next_entry
from bot.domain.models import Invoice
from bot.gateways.base import SessionStatus
from storage.base import Repository

log = logging.getLogger(__name__)

SANDBOX = "sandbox"  # its payments are booked like any other but never counted in totals
_ATTEMPTS = 5


def settlement_of(status: SessionStatus) -> Settlement:
    settlement = status.settlement or Settlement()
    if settlement.fiat_minor is None and status.paid_amount_minor:
        settlement = replace(settlement, fiat_minor=status.paid_amount_minor)
    return settlement


class LedgerBook:
    """Turns gateway reports into ledger entries."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    async def entry_for(
        self, invoice: Invoice, status: SessionStatus, *, paid_in_full: bool, now: datetime
    ) -> NewLedgerEntry | None:
        """The entry that books this report (None when the ledger already holds it)."""
        payment = invoice.payment
        # A counter sale keeps its tip beside the invoice (counter_sales), not in `payment`.
        sale = await self.repo.counter_sale(invoice.id)
        if sale is not None and sale.tip_minor:
            payment = {**payment, "tip_minor": sale.tip_minor}
        target = booking_for(
            invoice.amount_minor,
            invoice.currency,
            payment,
            settlement_of(status),
            paid_in_full=paid_in_full,
        )
        if target is None:
            return None
        existing = await self.repo.ledger_for_invoice(invoice.id)
        return next_entry(
            existing,
            target,
            invoice_id=invoice.id,
            merchant_id=invoice.merchant_id,
            cashier_id=invoice.seller_id,
            gateway=invoice.gateway,
            currency=invoice.currency,
            occurred_at=status.paid_at or now,
            recorded_at=now,
            note=status.raw_status,
        )

    async def book_underpayment(
        self, invoice: Invoice, status: SessionStatus, now: datetime
    ) -> NewLedgerEntry | None:
        """Append what arrived of an underpaid invoice (nothing when it is not known)."""
        for _ in range(_ATTEMPTS):
            entry = await self.entry_for(invoice, status, paid_in_full=False, now=now)
            if entry is None or await self.repo.ledger_append(entry):
                return entry
        log.warning("invoice %s: the ledger kept changing under a booking", invoice.id)
        return None
