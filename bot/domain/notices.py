"""What to tell whom when an invoice moves: the outbox rows, decided here and nowhere else.

Each row carries a dedupe key, so deciding twice (a retry, a second instance) never tells
anyone twice; the notifier turns the rows into Telegram messages and edits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import date

from bot.domain.models import (
    Invoice,
    InvoiceMessage,
    InvoiceStatus,
    MessageRole,
    NewOutbox,
    OutboxEvent,
    OutboxItem,
    OutboxKind,
)
from bot.gateways.base import SessionStatus


def event_for_move(status: InvoiceStatus, late: bool) -> OutboxEvent:
    """The event an invoice moving to `status` is told as."""
    if status is InvoiceStatus.PAID:
        return OutboxEvent.LATE_PAID if late else OutboxEvent.PAID
    return OutboxEvent(status.value)


def event_for(invoice: Invoice) -> OutboxEvent:
    """The event a message showing `invoice` as it is now is edited for."""
    if invoice.status is InvoiceStatus.PENDING:
        return OutboxEvent.UNDERPAID if invoice.underpaid else OutboxEvent.RENEWED
    return event_for_move(invoice.status, invoice.late)


def edits(
    invoice: Invoice,
    event: OutboxEvent,
    *,
    messages: Iterable[InvoiceMessage],
    suffix: str = "",
) -> list[NewOutbox]:
    """Re-render every stored message that shows the invoice."""
    return [
        NewOutbox(
            kind=OutboxKind.EDIT,
            event=event,
            invoice_id=invoice.id,
            chat_id=m.chat_id,
            message_row_id=m.id,
            dedupe_key=f"i{invoice.id}:{event}{suffix}:edit:m{m.id}",
        )
        for m in messages
        if m.id is not None
    ]


def catch_up_edit(current: Invoice, message: InvoiceMessage) -> NewOutbox:
    """A message sent while the invoice moved on: one edit to show it as it is now."""
    return NewOutbox(
        kind=OutboxKind.EDIT,
        event=event_for(current),
        invoice_id=current.id,
        chat_id=message.chat_id,
        message_row_id=message.id,
        dedupe_key=f"i{current.id}:catchup:{current.status}:m{message.id}",
    )


def notices(
    invoice: Invoice,
    event: OutboxEvent,
    messages: Sequence[InvoiceMessage],
    status: SessionStatus,
    admin_ids: Iterable[int],
    previous: InvoiceStatus | None = None,
) -> list[NewOutbox]:
    """The new messages an event sends: receipts to customers, notices to the merchant
    and to admins."""
    admins = sorted(admin_ids)
    detail = {
        "raw_status": status.raw_status,
        "reason": status.failure_reason,
        "detail": status.detail,
        "paid_amount_minor": status.paid_amount_minor,
        "received": status.received,
        "due": status.due,
        "refund_due": status.refund_due or None,
        "surplus": status.surplus,
        "surplus_status": status.surplus_status,
    }
    payload: dict[str, object] = {k: v for k, v in detail.items() if v is not None}
    if previous is not None:
        payload["previous"] = previous.value
    customers = sorted(
        {m.chat_id for m in messages if m.role is MessageRole.CUSTOMER and m.chat_id is not None}
    )

    def row(kind: OutboxKind, chat: int, key: str, told: OutboxEvent = event) -> NewOutbox:
        return NewOutbox(
            kind=kind,
            event=told,
            invoice_id=invoice.id,
            chat_id=chat,
            payload=payload,
            dedupe_key=f"i{invoice.id}:{key}",
        )

    paid = event in (OutboxEvent.PAID, OutboxEvent.LATE_PAID)
    rows: list[NewOutbox] = []
    if event is OutboxEvent.UNDERPAID and status.received:
        # The customer is told what arrived and that the rest is still due.
        rows += [row(OutboxKind.RECEIPT, chat, f"underpaid:c{chat}") for chat in customers]
    if paid and status.surplus:
        rows.append(
            row(OutboxKind.MERCHANT, invoice.merchant_id, "overpaid:merchant", OutboxEvent.OVERPAID)
        )
    if paid:
        rows += [row(OutboxKind.RECEIPT, chat, f"receipt:c{chat}") for chat in customers]
    sellers = payment_ping_chats(invoice, messages) if event is OutboxEvent.PAID else []
    # A payment pings the merchant and whoever made the sale with a new message (edits are
    # silent); an admin who is one of them gets that ping instead of the admin notice.
    rows += [row(OutboxKind.MERCHANT, chat, f"ping:{chat}") for chat in sellers]
    if paid or event in (OutboxEvent.UNDERPAID, OutboxEvent.FAILED):
        rows += [
            row(OutboxKind.ADMIN, admin, f"{event}:admin:{admin}")
            for admin in admins
            if admin not in sellers
        ]
    if event in (OutboxEvent.LATE_PAID, OutboxEvent.UNDERPAID, OutboxEvent.FAILED) and (
        invoice.merchant_id not in admins
    ):
        rows.append(row(OutboxKind.MERCHANT, invoice.merchant_id, f"{event}:merchant"))
    return rows


def payment_ping_chats(invoice: Invoice, messages: Sequence[InvoiceMessage]) -> list[int]:
    """Who hears of a payment with a new message: the shop's owner, the person who made the
    sale (a cashier), and whoever showed the invoice as its seller in a private chat of
    their own; each once."""
    chats = {invoice.merchant_id, invoice.seller_id}
    chats |= {
        m.chat_id
        for m in messages
        if m.role is MessageRole.MERCHANT
        and m.chat_id is not None
        and m.user_id is not None
        and m.chat_id == m.user_id
    }
    return sorted(chats)


def mismatch_alerts(
    invoice: Invoice, status: SessionStatus, admin_ids: Iterable[int]
) -> list[NewOutbox]:
    """Each admin, once: a gateway's "paid" names another payee, currency or amount."""
    got = {
        "payee": status.payee or "—",
        "currency": status.currency or "—",
        "amount_minor": status.amount_minor,
        "raw_status": status.raw_status,
    }
    return [
        NewOutbox(
            kind=OutboxKind.ADMIN,
            event=OutboxEvent.MISMATCH,
            invoice_id=invoice.id,
            chat_id=admin,
            payload=got,
            dedupe_key=f"i{invoice.id}:mismatch:admin:{admin}",
        )
        for admin in sorted(admin_ids)
    ]


def auth_alerts(
    gateway_name: str, message: str, day: date, admin_ids: Iterable[int]
) -> list[NewOutbox]:
    """Each admin, once per gateway and day: the gateway rejects our credentials."""
    return [
        NewOutbox(
            kind=OutboxKind.ADMIN,
            event=OutboxEvent.GATEWAY_AUTH,
            chat_id=admin,
            payload={"gateway": gateway_name, "message": message[:300]},
            dedupe_key=f"gwauth:{gateway_name}:{day.isoformat()}:{admin}",
        )
        for admin in sorted(admin_ids)
    ]


def setup_alerts(
    gateway_name: str, problems: Sequence[str], day: date, admin_ids: Iterable[int]
) -> list[NewOutbox]:
    """Each admin, once per problem and day: what a gateway's setup check found."""
    rows = []
    for problem in problems:
        digest = hashlib.sha256(problem.encode()).hexdigest()[:8]
        rows += [
            NewOutbox(
                kind=OutboxKind.ADMIN,
                event=OutboxEvent.GATEWAY_SETUP,
                chat_id=admin,
                payload={"gateway": gateway_name, "message": problem[:300]},
                dedupe_key=f"gwsetup:{gateway_name}:{day.isoformat()}:{digest}:{admin}",
            )
            for admin in sorted(admin_ids)
        ]
    return rows


def compliance_notice(invoice: Invoice, missing_fields: Sequence[str]) -> NewOutbox:
    """The merchant, once: the gateway blocks new attempts until the customer gives details."""
    return NewOutbox(
        kind=OutboxKind.MERCHANT,
        event=OutboxEvent.COMPLIANCE,
        invoice_id=invoice.id,
        chat_id=invoice.merchant_id,
        payload={"reason": ", ".join(missing_fields)} if missing_fields else {},
        dedupe_key=f"i{invoice.id}:compliance:merchant",
    )


def daily_summary(day: date, admin: int, lines: str) -> NewOutbox:
    """One admin's summary of a day's invoices (the lines in the admin's language)."""
    return NewOutbox(
        kind=OutboxKind.ADMIN,
        event=OutboxEvent.DAILY_SUMMARY,
        chat_id=admin,
        payload={"date": day.isoformat(), "lines": lines},
        dedupe_key=f"daily:{day.isoformat()}:{admin}",
    )


# At most this many payments in one admin digest (one Telegram message stays well short of
# its 4,096 characters).
DIGEST_MAX = 25


def digestible(item: OutboxItem) -> bool:
    """An admin's payment notice: when payments come faster than the admin's chat takes
    messages (one a second), those waiting go together in one digest."""
    return item.kind is OutboxKind.ADMIN and item.event in (
        OutboxEvent.PAID,
        OutboxEvent.LATE_PAID,
    )
