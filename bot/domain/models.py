"""What Tillbot stores: invoices, the messages that show them, the outbox, merchants, prefs.

Times are timezone-aware UTC datetimes (storage keeps them as integer epoch milliseconds:
`storage/times.py`).
Amounts are integer minor units (cents) of `currency`; never floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.domain.ledger import NewLedgerEntry

# The gateway whose invoices are tests: labelled so in every state, never counted as money.
SANDBOX_GATEWAY = "sandbox"


class InvoiceStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"


class InvoiceKind(StrEnum):
    CHECKOUT = "checkout"  # a checkout link (URL button)
    LIGHTNING = "lightning"  # a point-of-sale Lightning invoice shown as a QR photo
    ONCHAIN = "onchain"  # an address and an exact crypto amount shown as a QR photo


FINAL_STATUSES = frozenset(
    {InvoiceStatus.PAID, InvoiceStatus.EXPIRED, InvoiceStatus.FAILED, InvoiceStatus.CANCELLED}
)

# A payment is a payment: money that reaches the gateway after we gave up on the session
# (expired, failed, or cancelled here) still moves the invoice to paid, as a late payment.
# Nothing ever leaves `paid`.
ALLOWED_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.PENDING: frozenset(
        {InvoiceStatus.PAID, InvoiceStatus.EXPIRED, InvoiceStatus.FAILED, InvoiceStatus.CANCELLED}
    ),
    InvoiceStatus.EXPIRED: frozenset({InvoiceStatus.PAID}),
    InvoiceStatus.FAILED: frozenset({InvoiceStatus.PAID}),
    InvoiceStatus.CANCELLED: frozenset({InvoiceStatus.PAID}),
    InvoiceStatus.PAID: frozenset(),
}


def allowed_sources(target: InvoiceStatus) -> frozenset[InvoiceStatus]:
    """The statuses from which an invoice may move to `target`."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)


class MessageRole(StrEnum):
    MERCHANT = "merchant"  # the reply to /invoice or /pos in the merchant's chat
    CUSTOMER = "customer"  # the invoice a customer opened through the share link
    INLINE = "inline"  # an inline-mode card sent into any chat (inline_message_id)


class OutboxKind(StrEnum):
    EDIT = "edit"  # re-render one message of the invoice from the stored invoice
    RECEIPT = "receipt"  # a new message to a customer: the receipt of a payment
    ADMIN = "admin"  # a new message to an admin: paid, late, underpaid, failed, alerts
    MERCHANT = "merchant"  # a new message to the merchant: underpaid, failed, late


class OutboxEvent(StrEnum):
    PAID = "paid"
    LATE_PAID = "late_paid"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNDERPAID = "underpaid"
    RENEWED = "renewed"  # a new Lightning payment attempt replaced the QR
    GATEWAY_AUTH = "gateway_auth"  # a gateway rejects our credentials (sent once)
    GATEWAY_SETUP = "gateway_setup"  # a gateway's setup is incomplete (checked at start)
    COMPLIANCE = "compliance"  # the gateway blocks the payment until the customer gives details
    DAILY_SUMMARY = "daily_summary"
    MISMATCH = "mismatch"  # a gateway's "paid" names another payee/currency/amount (once)
    OVERPAID = "overpaid"  # more than due arrived (MixPay's surplus), told to the merchant


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NewInvoice:
    """What the payment service asks storage to create (before any gateway call)."""

    public_token: str
    merchant_id: int
    amount_minor: int
    currency: str
    description: str
    gateway: str
    kind: InvoiceKind
    created_at: datetime
    expires_at: datetime | None = None
    # When the watcher should first look at it: a creation cut short (no gateway session
    # attached by then) is found and closed even while the bot keeps running.
    next_poll_at: datetime | None = None
    # Who made the sale (a cashier of the shop); the shop's owner when None.
    created_by: int | None = None


@dataclass(frozen=True, slots=True)
class Invoice:
    id: int
    public_token: str
    merchant_id: int
    amount_minor: int
    currency: str
    description: str
    gateway: str
    kind: InvoiceKind
    status: InvoiceStatus
    created_at: datetime
    updated_at: datetime
    gateway_session_id: str | None = None
    checkout_url: str | None = None
    # What the customer needs besides a link, by kind: lightning invoice, msat, attempt expiry;
    # on-chain address, crypto amount and symbol. Gateway specific, shown by the views.
    payment: dict[str, Any] = field(default_factory=dict)
    raw_status: str | None = None
    expires_at: datetime | None = None
    paid_at: datetime | None = None
    failure_reason: str | None = None
    late: bool = False  # paid after it had expired, failed or been cancelled
    underpaid: bool = False  # the gateway reported less than the amount (notified once)
    next_poll_at: datetime | None = None
    poll_count: int = 0
    # Consecutive "no such session" answers of the gateway, and when the first of them came.
    not_found_count: int = 0
    not_found_since: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    # The merchant's own invoice number (their first invoice is #1), allocated at creation;
    # 0 only for an invoice stored before numbers existed and not yet numbered. `id` stays
    # internal (gateway references may use it), `shown_number` is what people see.
    number: int = 0
    # Who made the sale (the shop's owner, a manager or a cashier); see `seller_id`.
    created_by: int | None = None

    @property
    def seller_id(self) -> int:
        """The person who made the sale: its creator, else (stored before staff) the owner."""
        return self.merchant_id if self.created_by is None else self.created_by

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def shown_number(self) -> int:
        """The number every user-visible "#N" shows: the merchant's own numbering."""
        return self.number or self.id

    @property
    def is_sandbox(self) -> bool:
        """A test invoice of the sandbox gateway: never money, never in totals."""
        return self.gateway == SANDBOX_GATEWAY


@dataclass(frozen=True, slots=True)
class InvoiceMessage:
    """One Telegram message that shows an invoice (a view of the stored invoice)."""

    invoice_id: int
    role: MessageRole
    chat_id: int | None = None
    message_id: int | None = None
    inline_message_id: str | None = None
    user_id: int | None = None  # who the message is for (the customer who opened the link)
    is_photo: bool = False  # a QR photo: edited with editMessageCaption / editMessageMedia
    language: str | None = None  # the language the message is rendered in
    id: int | None = None  # assigned by storage


@dataclass(frozen=True, slots=True)
class NewOutbox:
    kind: OutboxKind
    event: OutboxEvent
    invoice_id: int | None = None
    chat_id: int | None = None
    message_row_id: int | None = None  # for EDIT: the InvoiceMessage.id to re-render
    payload: dict[str, Any] = field(default_factory=dict)
    # Dedupe key: an outbox row with the same key is never written twice (e.g. the
    # "credentials wrong" alert for one gateway, or an event's notice per admin).
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    kind: OutboxKind
    event: OutboxEvent
    invoice_id: int | None
    chat_id: int | None
    message_row_id: int | None
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None = None
    last_error: str | None = None
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True)
class Merchant:
    user_id: int
    added_by: int | None
    added_at: datetime
    name: str | None = None


@dataclass(frozen=True, slots=True)
class UserPrefs:
    user_id: int
    language: str | None = None  # None: follow Telegram's language_code
    gateway: str | None = None  # None: DEFAULT_GATEWAY
    telegram_language: str | None = None  # the language_code Telegram last sent for the user
    name: str | None = None  # the user's display name as Telegram last sent it


@dataclass(frozen=True, slots=True)
class Transition:
    """A compare-and-set status change and the notifications written with it."""

    invoice_id: int
    expected: frozenset[InvoiceStatus]
    new_status: InvoiceStatus
    at: datetime
    raw_status: str | None = None
    paid_at: datetime | None = None
    failure_reason: str | None = None
    late: bool = False
    outbox: tuple[NewOutbox, ...] = ()
    ledger: NewLedgerEntry | None = None  # the money it books, in the same transaction


# -- the sandbox gateway ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SandboxSession:
    """A payment session of the built-in sandbox gateway, stored in the bot's own database so
    that every instance sharing it sees the same sessions (`bot.gateways.sandbox_api`).

    `status` is Mion's vocabulary ("created", "funded", "expired", ...); `version` counts the
    stored changes, for compare-and-set (`Repository.sandbox_update`)."""

    session_id: str
    reference: str | None
    amount_minor: int
    currency: str
    retail_pos: bool
    status: str
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None = None
    payment_method: str | None = None
    attempts: int = 0
    attempt_expires_at: datetime | None = None
    auto_pay_at: datetime | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A Telegram update as stored before Telegram was told it arrived (the inbox), with
    how far handling it got: the placeholder reply, the invoice it created."""

    update_id: int
    body: str  # the update as Telegram sent it (JSON)
    received_at: datetime
    command_key: str | None = None  # chat, user and text of a command: resends share it
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    attempts: int = 0
    done_at: datetime | None = None
    invoice_id: int | None = None
    reply_chat_id: int | None = None  # the placeholder ("Creating invoice…") reply
    reply_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class Instance:
    """A running bot process as registered in storage: claimed work names its `id`.

    `process` identifies the OS process where it can be checked from the same machine
    ("<boot id>:<pid namespace>:<pid>:<start ticks>"), None elsewhere."""

    id: str
    name: str
    started_at: datetime
    last_seen: datetime
    process: str | None = None
