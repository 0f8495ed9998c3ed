"""The repository interface every storage backend implements (SQLite, PostgreSQL).

The database is the source of truth; Telegram messages are views of it. Rules every
backend keeps, checked by the contract suite in tests/test_storage_contract.py:

- A status change is compare-and-set (`transition`): it happens once, even when a callback
  and a poll see the same payment at the same moment, and the outbox rows describing it are
  written in the same transaction, or not at all.
- Work is claimed by an instance (`claim_due_invoices`, `claim_outbox`): a claimed row is
  invisible to other claimers while its owner is alive, so several bot instances never poll
  the same invoice or send the same notification at once. Owners are registered instances
  that heartbeat (`register_instance`, `heartbeat`); `take_over` frees the claims of one
  whose heartbeat is stale (or that is gone) for the live ones. A lease's end is only its
  owner's own retry time: a lapsed lease is claimed again by its owner, never by another
  live instance.
- Reads of due work cost what is due, not what is pending (indexes on next poll time).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from types import EllipsisType
from typing import Any

from bot.domain.ledger import LedgerEntry, NewLedgerEntry
from bot.domain.links import NewLink, PaymentLink
from bot.domain.models import (
    InboxEntry,
    Instance,
    Invoice,
    InvoiceMessage,
    InvoiceStatus,
    Merchant,
    NewInvoice,
    NewOutbox,
    OutboxItem,
    SandboxSession,
    Transition,
    UserPrefs,
)
from bot.domain.shop import ShopSettings
from bot.domain.staff import JoinResult, Role, ShopMember, StaffInvite
from bot.domain.tips import CounterSale, DaySales


class StorageError(Exception):
    """The database could not do what was asked (locked, read-only, unreachable)."""


class Repository(ABC):
    """Async repository. Open with `storage.open_repository(url)`; call `close()` at shutdown."""

    # -- lifecycle ------------------------------------------------------------------------
    @abstractmethod
    async def migrate(self) -> int:
        """Apply pending migrations; return the schema version now in force."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> bool:
        """True when the database answers a trivial query (for /healthz)."""

    # Set by migrate(): True when it found no schema at all (a database created just now).
    created_new: bool = False

    @abstractmethod
    async def check_write(self, owner: str, now: datetime) -> None:
        """Write and commit one small row (for /healthz); raises StorageError when storage
        does not take writes."""

    def file_problem(self) -> str | None:
        """For a database in a file: "removed" or "replaced" when the file this repository
        opened is no longer at its path; None otherwise (and for servers)."""
        return None

    # -- invoices -------------------------------------------------------------------------
    @abstractmethod
    async def create_invoice(self, new: NewInvoice) -> Invoice:
        """Insert a pending invoice (not yet at a gateway) and return it with its id."""

    @abstractmethod
    async def attach_session(
        self,
        invoice_id: int,
        *,
        gateway_session_id: str,
        checkout_url: str | None,
        payment: Mapping[str, Any],
        expires_at: datetime | None,
        next_poll_at: datetime,
        now: datetime,
    ) -> Invoice:
        """Record the gateway session created for a pending invoice (expires_at None keeps
        the invoice's own expiry). Raises LookupError for an unknown invoice."""

    @abstractmethod
    async def update_payment(
        self, invoice_id: int, payment: Mapping[str, Any], now: datetime
    ) -> Invoice:
        """Replace the customer-facing payment data (e.g. a renewed Lightning attempt)."""

    @abstractmethod
    async def record_observation(
        self,
        invoice_id: int,
        *,
        raw_status: str | None,
        now: datetime,
        underpaid: bool | None = None,
    ) -> None:
        """Keep the gateway's latest raw status (and underpaid flag) without a transition;
        None leaves the stored value as it is."""

    @abstractmethod
    async def record_not_found(
        self, invoice_id: int, *, count: int, since: datetime | None
    ) -> None:
        """Keep how many consecutive "no such session" answers the gateway gave and when the
        first came (0 and None: the session was found again)."""

    @abstractmethod
    async def get_invoice(self, invoice_id: int) -> Invoice | None: ...

    @abstractmethod
    async def get_invoice_by_token(self, public_token: str) -> Invoice | None: ...

    @abstractmethod
    async def get_invoice_by_session(self, gateway: str, session_id: str) -> Invoice | None: ...

    @abstractmethod
    async def list_invoices(
        self, merchant_id: int, *, limit: int, offset: int = 0, created_by: int | None = None
    ) -> list[Invoice]:
        """A shop's invoices (only those `created_by` made, when given), newest first."""

    @abstractmethod
    async def count_invoices(self, merchant_id: int, *, created_by: int | None = None) -> int: ...

    @abstractmethod
    async def invoices_created_between(
        self, merchant_id: int | None, start: datetime, end: datetime
    ) -> list[Invoice]:
        """Invoices created in [start, end), oldest first; all merchants when None."""

    @abstractmethod
    async def count_by_status(self) -> dict[InvoiceStatus, int]: ...

    @abstractmethod
    async def pending_invoices(self, *, limit: int, after_id: int = 0) -> list[Invoice]:
        """Pending invoices by id, for resuming after a start (paged by `after_id`)."""

    # -- polling --------------------------------------------------------------------------
    @abstractmethod
    async def claim_due_invoices(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> list[Invoice]:
        """Claim invoices whose next poll is due (next_poll_at <= now) and that are not
        claimed (or claimed by `owner` with its lease lapsed), soonest due first; set
        lease_owner=owner, lease_until=now+lease.

        Claimed are pending invoices and also expired, cancelled or failed ones that still have a
        next_poll_at: `transition` clears next_poll_at for every final status, and the
        payment service may `reschedule` such an invoice to keep watching it for a late
        payment for a while (it stops by rescheduling with next_poll_at=None).

        A row with an unexpired lease is skipped, whoever holds it (`owner` included): it
        is in flight. A row another owner holds is skipped even when its lease lapsed: the
        claims of a dead owner are freed by `take_over`, never stolen from a live one.
        Claiming also moves next_poll_at to the end of the lease, so a claimed invoice is due
        again for its owner when its lease lapses, and `next_due_at` never reports leased
        work as due now. The owner ends the lease with `reschedule` or `transition`."""

    @abstractmethod
    async def reschedule(
        self, invoice_id: int, *, next_poll_at: datetime | None, owner: str, now: datetime
    ) -> None:
        """Set the next poll time, count the poll, and release `owner`'s lease.

        Works on any status (None stops polling). A lease held by another owner (after
        `owner`'s lapsed and was taken over) is left to that owner."""

    @abstractmethod
    async def next_due_at(self) -> datetime | None:
        """The earliest next_poll_at among the invoices `claim_due_invoices` would claim
        (None when there are none); for a leased invoice that is its lease's end."""

    # -- instances: who owns claimed work ----------------------------------------------
    @abstractmethod
    async def register_instance(self, instance: Instance) -> None:
        """Add (or renew) a running instance; its claims are safe while it heartbeats."""

    @abstractmethod
    async def heartbeat(self, instance_id: str, *, now: datetime) -> bool:
        """Set the instance's last_seen to `now`. False (and nothing written) when it is not
        registered: it was taken for dead and its claims taken over."""

    @abstractmethod
    async def list_instances(self) -> list[Instance]:
        """The registered instances, oldest first."""

    @abstractmethod
    async def retire_instances(self, instance_ids: Sequence[str]) -> int:
        """Forget instances known to be dead (a restart under the same name, a process that
        is no longer running): the next `take_over` frees their claims. Returns how many."""

    @abstractmethod
    async def take_over(
        self, *, now: datetime, stale_before: datetime, alive: str | None = None
    ) -> int:
        """Forget instances whose last heartbeat is before `stale_before` (never `alive`,
        the caller itself), and free every claim whose owner is not a registered instance:
        such invoices and unsent outbox rows become due at `now` (an invoice no longer
        polled stays so). Claims of registered, fresh instances are never touched. Returns
        how many claims were freed. Cheap when there is nothing to take over (reads only)."""

    @abstractmethod
    async def deregister_instance(self, instance_id: str, *, now: datetime) -> int:
        """A clean shutdown: free the instance's claims (due at `now`) and forget it.
        Returns how many claims were freed."""

    # -- status ---------------------------------------------------------------------------
    @abstractmethod
    async def transition(self, change: Transition) -> Invoice | None:
        """Compare-and-set the status; write the outbox rows in the same transaction.

        Returns the updated invoice, or None when the invoice's status was not in
        `change.expected` (someone else moved it first): then nothing is written.
        Statuses in `change.expected` from which ALLOWED_TRANSITIONS forbids the move are
        ignored (nothing ever leaves paid).
        Clears the invoice's lease and, for a final status, its next poll time.
        raw_status, paid_at and failure_reason keep their stored value when the change
        gives None; paid_at defaults to `change.at` for a move to paid; late is set from
        the change. Outbox rows whose dedupe_key exists are skipped; an outbox row without
        an invoice_id gets the changed invoice's id.
        """

    # -- messages -------------------------------------------------------------------------
    @abstractmethod
    async def add_message(self, message: InvoiceMessage) -> InvoiceMessage:
        """Remember a message that shows an invoice; returns it with its id. Adding the same
        chat/message (or inline message) again returns the existing row."""

    @abstractmethod
    async def messages_for(self, invoice_id: int) -> list[InvoiceMessage]: ...

    @abstractmethod
    async def get_message(self, message_row_id: int) -> InvoiceMessage | None: ...

    @abstractmethod
    async def replace_message(self, message_row_id: int, *, chat_id: int, message_id: int) -> None:
        """Point a message row at a new Telegram message (the old one could not be edited)."""

    # -- outbox ---------------------------------------------------------------------------
    @abstractmethod
    async def enqueue(self, items: Sequence[NewOutbox], now: datetime) -> int:
        """Add outbox rows outside a transition; rows whose dedupe_key exists are skipped.
        Returns how many were added."""

    @abstractmethod
    async def claim_outbox(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        """Claim unsent rows that are due (next_attempt_at <= now) and not claimed (or claimed
        by `owner` with its lease lapsed), longest waiting first (next_attempt_at, then id).
        Like `claim_due_invoices`,
        claiming moves next_attempt_at to the lease's end; `complete_outbox` or
        `retry_outbox` end the lease."""

    @abstractmethod
    async def complete_outbox(self, item_id: int, *, now: datetime) -> None: ...

    @abstractmethod
    async def retry_outbox(
        self, item_id: int, *, next_attempt_at: datetime, error: str, now: datetime
    ) -> None:
        """Count a failed attempt, release the lease and schedule the next attempt."""

    @abstractmethod
    async def outbox_items(self, invoice_id: int | None = None) -> list[OutboxItem]:
        """All outbox rows (of one invoice), for tests and the admin summary."""

    # -- merchants and preferences ---------------------------------------------------------
    @abstractmethod
    async def add_merchant(
        self, user_id: int, *, added_by: int | None, now: datetime, name: str | None = None
    ) -> bool:
        """True when added, False when already a merchant."""

    @abstractmethod
    async def remove_merchant(self, user_id: int) -> bool: ...

    @abstractmethod
    async def list_merchants(self) -> list[Merchant]: ...

    @abstractmethod
    async def is_merchant(self, user_id: int) -> bool: ...

    # -- a shop's staff (storage/staff_sql.py) ----------------------------------------------
    @abstractmethod
    async def staff_member(self, user_id: int) -> ShopMember | None:
        """The user's stored seat (owners added in the bot have one too); None otherwise."""

    @abstractmethod
    async def staff_of(self, shop_id: int) -> list[ShopMember]:
        """The shop's stored members, in the order they joined."""

    @abstractmethod
    async def staff_counts(self) -> dict[int, int]:
        """How many stored members each shop has."""

    @abstractmethod
    async def staff_invite_add(self, invite: StaffInvite) -> None: ...

    @abstractmethod
    async def staff_join(
        self, token_hash: str, user_id: int, now: datetime
    ) -> tuple[JoinResult, StaffInvite | None]:
        """Use the invite: the user joins its shop in its role, and the invite is spent, in
        one transaction; anything else (unknown, used, expired, already in a shop) changes
        nothing."""

    @abstractmethod
    async def staff_set_role(self, shop_id: int, user_id: int, role: Role) -> bool:
        """Give a member (never the owner) of the shop another role; False when none such."""

    @abstractmethod
    async def staff_remove(self, shop_id: int, user_id: int) -> bool:
        """Remove a member (never the owner) from the shop; False when none such."""

    @abstractmethod
    async def get_prefs(self, user_id: int) -> UserPrefs: ...

    @abstractmethod
    async def set_prefs(
        self,
        user_id: int,
        *,
        language: str | EllipsisType | None = ...,
        gateway: str | EllipsisType | None = ...,
        telegram_language: str | EllipsisType | None = ...,
        name: str | EllipsisType | None = ...,
    ) -> UserPrefs:
        """Update the given fields (`...` leaves a field as it is; None resets it).

        `language` and `gateway` are the user's own choices (/settings);
        `telegram_language` and `name` are what Telegram last said about the user."""

    # -- users seen ------------------------------------------------------------------------
    @abstractmethod
    async def note_username(self, user_id: int, username: str | None, now: datetime) -> None:
        """Remember the user's @username (case-insensitive; None forgets theirs); a name
        seen with another user before now points to this one."""

    @abstractmethod
    async def user_by_username(self, username: str) -> int | None:
        """The id of the user last seen with this @username (with or without the @)."""

    # -- the sandbox gateway -----------------------------------------------------------------
    @abstractmethod
    async def sandbox_insert(self, session: SandboxSession) -> bool:
        """Store a new sandbox session (its version as given); False, storing nothing, when
        its id or its reference is already taken."""

    @abstractmethod
    async def sandbox_get(self, session_id: str) -> SandboxSession | None: ...

    @abstractmethod
    async def sandbox_by_reference(self, reference: str) -> SandboxSession | None: ...

    @abstractmethod
    async def sandbox_update(self, current: SandboxSession, changed: SandboxSession) -> bool:
        """Compare-and-set: store `changed` (all but its id) with version current.version + 1
        if the stored row still has `current.version`; False when someone changed it first."""

    # -- the inbox of Telegram updates (storage/inbox_sql.py) ------------------------------
    @abstractmethod
    async def inbox_accept(
        self,
        update_id: int,
        body: str,
        *,
        command_key: str | None,
        owner: str,
        now: datetime,
        lease_until: datetime,
    ) -> bool:
        """Store an update claimed by `owner` (durable when this returns). True when the
        caller is to handle it: new, or a redelivery not done whose lease lapsed."""

    @abstractmethod
    async def inbox_claim(
        self, *, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[InboxEntry]:
        """Lease updates not done that were abandoned: the claim lapsed, or its owner is
        not a registered instance (taken for dead). Oldest first."""

    @abstractmethod
    async def inbox_get(self, update_id: int) -> InboxEntry | None: ...

    @abstractmethod
    async def inbox_earlier_underway(self, entry: InboxEntry) -> InboxEntry | None:
        """An older update with the same command key that is not done (a resend's original)."""

    @abstractmethod
    async def inbox_set_reply(self, update_id: int, chat_id: int, message_id: int) -> None:
        """Remember the placeholder reply sent for this update."""

    @abstractmethod
    async def inbox_done(self, update_id: int, now: datetime) -> None: ...

    @abstractmethod
    async def inbox_release(self, *, owner: str | None = None) -> int:
        """Make unfinished updates claimable now (all, or `owner`'s); how many."""

    @abstractmethod
    async def inbox_purge(self, *, done_before: datetime) -> int:
        """Forget updates done before then (Telegram redelivers for 24 hours at most)."""

    @abstractmethod
    async def inbox_create_invoice(self, update_id: int, new: NewInvoice) -> tuple[Invoice, bool]:
        """The invoice of this update's command, created and linked in one transaction, or
        the one linked before: (invoice, created_now)."""

    @abstractmethod
    async def inbox_entries(self, update_ids: Sequence[int] = ()) -> list[InboxEntry]: ...

    # -- payment links and receipts (storage/links_sql.py) ------------------------------------
    @abstractmethod
    async def link_create(self, new: NewLink) -> PaymentLink: ...

    @abstractmethod
    async def link_get(self, token: str) -> PaymentLink | None:
        """The link with its sales (paid invoices opened from it)."""

    @abstractmethod
    async def links_of(self, merchant_id: int, limit: int) -> Sequence[PaymentLink]:
        """A merchant's links with their sales, newest first."""

    @abstractmethod
    async def link_disable(self, token: str, merchant_id: int, now: datetime) -> bool:
        """Disable the merchant's enabled link; False when there is none such."""

    @abstractmethod
    async def link_add_invoice(self, token: str, invoice_id: int) -> None:
        """Book an invoice as opened from the link (its sales count it once paid)."""

    @abstractmethod
    async def receipt_token(self, invoice_id: int, token: str, now: datetime) -> str:
        """The invoice's receipt token: `token` stored when it has none yet, else the one
        it has (one per invoice, whoever asks first)."""

    @abstractmethod
    async def receipt_invoice(self, token: str) -> int | None:
        """The invoice id a receipt token names."""

    # -- the counter (Mini App) ------------------------------------------------------------
    @abstractmethod
    async def counter_add_sale(self, sale: CounterSale, now: datetime) -> None:
        """Keep the amount/tip split of a counter invoice (once per invoice)."""

    @abstractmethod
    async def counter_sale(self, invoice_id: int) -> CounterSale | None: ...

    @abstractmethod
    async def counter_day(
        self, merchant_id: int, start: datetime, end: datetime, *, created_by: int | None = None
    ) -> list[DaySales]:
        """The shop's invoices paid in [start, end) (only `created_by`'s, when given), per
        currency: count, total, tips."""

    @abstractmethod
    async def tip_percents(self, user_id: int) -> tuple[int, int, int]:
        """The merchant's three tip percentages (5, 10, 15 until set)."""

    @abstractmethod
    async def set_tip_percents(self, user_id: int, percents: tuple[int, int, int]) -> None: ...
    # -- the ledger and the shops (storage/ledger_sql.py) ----------------------------------
    @abstractmethod
    async def ledger_append(self, entry: NewLedgerEntry) -> bool:
        """Append one ledger entry; False, storing nothing, when the invoice already has an
        entry with its `seq` (someone else booked first: re-read and decide again)."""

    @abstractmethod
    async def ledger_for_invoice(self, invoice_id: int) -> list[LedgerEntry]: ...

    @abstractmethod
    async def ledger_between(
        self, merchant_id: int | None, start: datetime | None, end: datetime
    ) -> list[LedgerEntry]:
        """Entries whose money arrived in [start, end) (start None: since ever), of one shop
        or of all, in the order they happened."""

    @abstractmethod
    async def get_shop_settings(self, merchant_id: int) -> ShopSettings: ...

    @abstractmethod
    async def set_shop_settings(
        self,
        merchant_id: int,
        *,
        timezone: str | EllipsisType | None = ...,
        closing_hour: int | EllipsisType | None = ...,
    ) -> ShopSettings: ...

    @abstractmethod
    async def list_shop_settings(self) -> list[ShopSettings]: ...

    @abstractmethod
    async def mark_closed(self, merchant_id: int, day: date) -> bool:
        """Record that the close of local `day` was sent; False when it already was."""
    # -- the shared Telegram budget (bot/telegram/budget.py; microseconds, database clock) ----
    @abstractmethod
    async def budget_take(self, count: int, interval_us: int) -> tuple[int, int, int]:
        """Book `count` global send slots `interval_us` apart, none before a pause ends;
        returns (first slot, the database's now, the pause's end)."""

    @abstractmethod
    async def budget_chat(self, chat: str, spacing_us: int) -> tuple[int, int]:
        """Book one message to `chat` at its pace; returns (its next free slot, now)."""

    @abstractmethod
    async def budget_chat_sent(self, chat: str, not_before_us: int) -> None:
        """Keep the chat's next slot at or after `not_before_us`."""

    @abstractmethod
    async def budget_pause(self, pause_us: int) -> tuple[int, int]:
        """Pause every instance's sends for `pause_us`; returns (the pause's end, now)."""

    @abstractmethod
    async def budget_prune(self, idle_us: int) -> int:
        """Forget chats idle for more than `idle_us`; returns how many."""
