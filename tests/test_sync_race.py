"""A message stored while its invoice moves (issue 12's race, seen in test_multi_instance):
`remember_message` stores the message, then reads the old status because the transition is
not committed yet, while `StatusSync.move` wrote its edits for the messages it read before.
The message must still be edited once the new status is visible: exactly one edit each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from bot.domain.models import (
    InvoiceKind,
    InvoiceMessage,
    InvoiceStatus,
    MessageRole,
    NewInvoice,
    OutboxKind,
    Transition,
)
from bot.domain.polling import PaymentPolicy
from bot.gateways.base import PaymentState, SessionStatus
from bot.services.alerts import Alerts
from bot.services.core import ServiceCore
from bot.services.sync import StatusSync
from storage.base import Repository
from tests.storage_fixtures import backend, repo

__all__ = ["backend", "repo"]  # fixtures, imported for pytest

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class MessageDuringTransition:
    """The real repository, where a message of the invoice is stored (as a concurrent
    `remember_message` would) just before the first transition is written."""

    def __init__(self, inner: Repository, message: InvoiceMessage) -> None:
        self._inner = inner
        self._message: InvoiceMessage | None = message
        self.stored: InvoiceMessage | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def transition(self, transition: Transition) -> Any:
        if self._message is not None:
            self.stored = await self._inner.add_message(self._message)
            self._message = None
        return await self._inner.transition(transition)


async def test_a_message_stored_during_the_transition_is_edited_once(repo: Repository) -> None:
    invoice = await repo.create_invoice(
        NewInvoice(
            public_token="tokRaceRace1",
            merchant_id=7,
            amount_minor=500,
            currency="EUR",
            description="Tea",
            gateway="mion",
            kind=InvoiceKind.CHECKOUT,
            created_at=T0,
        )
    )
    early = await repo.add_message(
        InvoiceMessage(invoice.id, MessageRole.MERCHANT, chat_id=7, message_id=1)
    )
    racing = MessageDuringTransition(
        repo, InvoiceMessage(invoice.id, MessageRole.CUSTOMER, chat_id=9, message_id=2)
    )
    core = ServiceCore(
        cast(Repository, racing), {}, PaymentPolicy(default_gateway="mion"), clock=lambda: T0
    )
    sync = StatusSync(core, Alerts(core))
    paid = SessionStatus(PaymentState.PAID, raw_status="paid", paid_at=T0)

    moved = await sync.move(invoice, InvoiceStatus.PAID, paid)

    assert moved.status is InvoiceStatus.PAID and racing.stored is not None
    edits = [o for o in await repo.outbox_items(invoice.id) if o.kind is OutboxKind.EDIT]
    edited = sorted(o.message_row_id for o in edits if o.message_row_id is not None)
    assert edited == sorted([early.id, racing.stored.id])
