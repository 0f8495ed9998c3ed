"""The inbox of Telegram updates in SQL, written once for both dialects (issue 12).

Every update is stored (keyed by `update_id`) before Telegram is told it arrived; the
instance that stores or takes it over holds a lease on it (`claimed_by`, `claimed_until`)
until its handler returned (`done_at`). A redelivered update finds its row: handled again
only when it is not done and its lease lapsed. `invoice_id` and `reply_*` record how far a
command got, so that a creation cut short is resumed, not repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.domain.models import InboxEntry, Invoice, NewInvoice
from storage.dialect import Conn, Record, marks, ms
from storage.migrations.columns import INVOICE_COLUMNS, invoice_from_row
from storage.numbers_sql import NumbersSql
from storage.times import from_ms

INBOX_COLUMNS = (
    "update_id, body, received_at, command_key, claimed_by, claimed_until, attempts,"
    " done_at, invoice_id, reply_chat_id, reply_message_id"
)


# An update is abandoned when its claim lapsed or its owner is no longer a registered
# instance (bot/liveness.py: an instance whose heartbeat went stale is forgotten, and a
# restart under the same name retires its predecessor), so a live instance takes it over
# within the liveness horizon (seconds), not only when the lease runs out.
ABANDONED = (
    "(claimed_until IS NULL OR claimed_until < ? OR claimed_by IS NULL"
    " OR claimed_by NOT IN (SELECT id FROM instances))"
)


def inbox_from_row(row: Record) -> InboxEntry:
    received = from_ms(row["received_at"])
    assert received is not None
    return InboxEntry(
        update_id=int(row["update_id"]),
        body=str(row["body"]),
        received_at=received,
        command_key=row["command_key"],
        claimed_by=row["claimed_by"],
        claimed_until=from_ms(row["claimed_until"]),
        attempts=int(row["attempts"]),
        done_at=from_ms(row["done_at"]),
        invoice_id=row["invoice_id"],
        reply_chat_id=row["reply_chat_id"],
        reply_message_id=row["reply_message_id"],
    )


class InboxSql(NumbersSql[Conn]):
    """The `inbox_*` repository methods (storage/base.py) and the one invoice INSERT."""

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
        """Store an update (claimed by `owner`). True when the caller is to handle it now:
        a new update, or a redelivery of one not done whose lease lapsed."""
        async with self._write() as db:
            added = await self._changes(
                db,
                f"INSERT INTO inbox (update_id, body, received_at, command_key, claimed_by,"
                f" claimed_until, attempts) VALUES ({marks(7)}) ON CONFLICT DO NOTHING",
                (update_id, body, ms(now), command_key, owner, ms(lease_until), 1),
            )
        if added:
            return True
        async with self._write() as db:  # a redelivery: take it only if it was abandoned
            taken = await self._changes(
                db,
                "UPDATE inbox SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1"
                " WHERE update_id = ? AND done_at IS NULL"
                " AND (claimed_until IS NULL OR claimed_until < ?)",
                (owner, ms(lease_until), update_id, ms(now)),
            )
        return taken > 0

    async def inbox_claim(
        self, *, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[InboxEntry]:
        """Lease up to `limit` updates not done that were abandoned (their claim lapsed or
        their owner is not a registered instance: it died), oldest first."""
        async with self._read() as db:  # idle: one indexed read, no write lock
            rows = await self._all(
                db,
                f"SELECT update_id FROM inbox WHERE done_at IS NULL AND {ABANDONED}"
                " ORDER BY update_id LIMIT ?",
                (ms(now), limit),
            )
        claimed: list[InboxEntry] = []
        for row in rows:  # each a compare-and-set: another instance may take it first
            async with self._write() as db:
                taken = await self._all(
                    db,
                    "UPDATE inbox SET claimed_by = ?, claimed_until = ?,"
                    " attempts = attempts + 1 WHERE update_id = ? AND done_at IS NULL"
                    f" AND {ABANDONED} RETURNING {INBOX_COLUMNS}",
                    (owner, ms(lease_until), row["update_id"], ms(now)),
                )
            claimed.extend(inbox_from_row(r) for r in taken)
        return claimed

    async def inbox_get(self, update_id: int) -> InboxEntry | None:
        async with self._read() as db:
            row = await self._one(
                db, f"SELECT {INBOX_COLUMNS} FROM inbox WHERE update_id = ?", (update_id,)
            )
        return None if row is None else inbox_from_row(row)

    async def inbox_earlier_underway(self, entry: InboxEntry) -> InboxEntry | None:
        """The oldest update with the same command, older than `entry` and not done."""
        if entry.command_key is None:
            return None
        async with self._read() as db:
            row = await self._one(
                db,
                f"SELECT {INBOX_COLUMNS} FROM inbox WHERE command_key = ? AND update_id < ?"
                " AND done_at IS NULL ORDER BY update_id LIMIT 1",
                (entry.command_key, entry.update_id),
            )
        return None if row is None else inbox_from_row(row)

    async def inbox_set_reply(self, update_id: int, chat_id: int, message_id: int) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "UPDATE inbox SET reply_chat_id = ?, reply_message_id = ? WHERE update_id = ?",
                (chat_id, message_id, update_id),
            )

    async def inbox_done(self, update_id: int, now: datetime) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "UPDATE inbox SET done_at = ?, claimed_by = NULL, claimed_until = NULL"
                " WHERE update_id = ? AND done_at IS NULL",
                (ms(now), update_id),
            )

    async def inbox_release(self, *, owner: str | None = None) -> int:
        """Make updates not done claimable now: every one (one process per SQLite file)
        or `owner`'s (a restarted instance with a fixed INSTANCE_ID)."""
        mine = "" if owner is None else " AND claimed_by = ?"
        async with self._write() as db:
            return await self._changes(
                db,
                "UPDATE inbox SET claimed_by = NULL, claimed_until = NULL"
                f" WHERE done_at IS NULL AND claimed_by IS NOT NULL{mine}",
                () if owner is None else (owner,),
            )

    async def inbox_purge(self, *, done_before: datetime) -> int:
        async with self._write() as db:
            return await self._changes(
                db, "DELETE FROM inbox WHERE done_at IS NOT NULL AND done_at < ?",
                (ms(done_before),),
            )

    async def inbox_create_invoice(self, update_id: int, new: NewInvoice) -> tuple[Invoice, bool]:
        """The invoice of this update's command: created with the link to the update in one
        transaction, or the one created before. (invoice, created_now)."""
        async with self._transaction() as db:
            # Taking the row's write lock first: a second handler of the same update waits.
            linked = await self._one(
                db,
                "UPDATE inbox SET attempts = attempts WHERE update_id = ? RETURNING invoice_id",
                (update_id,),
            )
            if linked is None:
                raise LookupError(f"update {update_id} is not in the inbox")
            if linked["invoice_id"] is not None:
                row = await self._one(
                    db, f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = ?",
                    (linked["invoice_id"],),
                )
                assert row is not None
                return invoice_from_row(row), False
            invoice = await self._insert_numbered_invoice(db, new)
            await self._changes(
                db, "UPDATE inbox SET invoice_id = ? WHERE update_id = ?", (invoice.id, update_id)
            )
        return invoice, True

    async def inbox_entries(self, update_ids: Sequence[int] = ()) -> list[InboxEntry]:
        """Every stored update (tests, benchmarks), or those named."""
        where = f" WHERE update_id IN ({marks(len(update_ids))})" if update_ids else ""
        async with self._read() as db:
            rows = await self._all(
                db, f"SELECT {INBOX_COLUMNS} FROM inbox{where} ORDER BY update_id",
                tuple(update_ids),
            )
        return [inbox_from_row(r) for r in rows]
