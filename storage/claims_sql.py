"""Claimed work and who owns it, in SQL written once for both dialects.

Due invoices and outbox rows are claimed by an instance (`lease_owner` is its id, see
bot/liveness.py). A claim's lease end is only its owner's own retry time: nobody else takes
a claimed row while its owner is registered and heartbeating. `take_over` frees the claims
of instances whose heartbeat is stale, and of owners that are not registered at all; the
freed rows are due at once and any live instance claims them. Instance ids are fresh per
process and never reused, so an owner found dead stays dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.domain.models import Instance, Invoice, OutboxItem
from storage.dialect import INVOICE_QUEUE, OUTBOX_QUEUE, Conn, Record, SqlDialect, marks, ms
from storage.migrations.columns import clip_error, invoice_from_row, outbox_from_row
from storage.times import from_ms, to_ms

INSTANCE_COLUMNS = "id, name, process, started_at, last_seen"

# The owners of claimed rows (read through the partial indexes on lease_owner).
CLAIM_OWNERS_SQL = (
    "SELECT DISTINCT lease_owner FROM invoices WHERE lease_owner IS NOT NULL"
    " UNION SELECT DISTINCT lease_owner FROM outbox WHERE lease_owner IS NOT NULL"
)
# Most dead owners freed in one pass (the rest in the next).
TAKE_OVER_BATCH = 200


def instance_from_row(row: Record) -> Instance:
    started, seen = from_ms(row["started_at"]), from_ms(row["last_seen"])
    assert started is not None and seen is not None
    return Instance(
        id=row["id"], name=row["name"], process=row["process"], started_at=started, last_seen=seen
    )


class ClaimsSql(SqlDialect[Conn]):
    """The claiming, lease and instance methods of the repository (storage/base.py)."""

    # -- polling --------------------------------------------------------------------------
    async def claim_due_invoices(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> list[Invoice]:
        if limit <= 0:
            return []
        rows = await self._claim(
            INVOICE_QUEUE, now=ms(now), until=ms(now + lease), owner=owner, limit=limit
        )
        return [invoice_from_row(row) for row in rows]

    async def reschedule(
        self, invoice_id: int, *, next_poll_at: datetime | None, owner: str, now: datetime
    ) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "UPDATE invoices SET next_poll_at = ?, poll_count = poll_count + 1,"
                " lease_owner = CASE WHEN lease_owner = ? THEN NULL ELSE lease_owner END,"
                " lease_until = CASE WHEN lease_owner = ? THEN NULL ELSE lease_until END"
                " WHERE id = ?",
                (to_ms(next_poll_at), owner, owner, invoice_id),
            )

    async def _release(self, db: Conn, owners: str, params: Sequence[str], at: int) -> int:
        """Free the claims whose lease_owner matches `owners` (SQL after the column): due at
        `at` (an invoice no longer polled stays so). How many were freed."""
        invoices = await self._changes(
            db,
            "UPDATE invoices SET lease_owner = NULL, lease_until = NULL,"
            " next_poll_at = CASE WHEN next_poll_at IS NULL THEN NULL ELSE CAST(? AS BIGINT) END"
            f" WHERE lease_owner {owners}",
            (at, *params),
        )
        outbox = await self._changes(
            db,
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, next_attempt_at = ?"
            f" WHERE lease_owner {owners} AND sent_at IS NULL",
            (at, *params),
        )
        return invoices + outbox

    async def next_due_at(self) -> datetime | None:
        async with self._read() as db:
            row = await self._one(db, self.NEXT_DUE_SQL)
        return None if row is None else from_ms(row[0])

    # -- outbox ---------------------------------------------------------------------------
    async def claim_outbox(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int
    ) -> list[OutboxItem]:
        if limit <= 0:
            return []
        rows = await self._claim(
            OUTBOX_QUEUE, now=ms(now), until=ms(now + lease), owner=owner, limit=limit
        )
        return [outbox_from_row(row) for row in rows]

    async def complete_outbox(self, item_id: int, *, now: datetime) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "UPDATE outbox SET sent_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND sent_at IS NULL",
                (ms(now), item_id),
            )

    async def retry_outbox(
        self, item_id: int, *, next_attempt_at: datetime, error: str, now: datetime
    ) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND sent_at IS NULL",
                (clip_error(error), ms(next_attempt_at), item_id),
            )

    # -- instances ------------------------------------------------------------------------
    async def register_instance(self, instance: Instance) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ({marks(5)})"
                " ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
                (
                    instance.id,
                    instance.name[:200],
                    instance.process,
                    ms(instance.started_at),
                    ms(instance.last_seen),
                ),
            )

    async def heartbeat(self, instance_id: str, *, now: datetime) -> bool:
        async with self._write() as db:
            changed = await self._changes(
                db, "UPDATE instances SET last_seen = ? WHERE id = ?", (ms(now), instance_id)
            )
        return changed > 0

    async def list_instances(self) -> list[Instance]:
        async with self._read() as db:
            rows = await self._all(
                db, f"SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY started_at, id"
            )
        return [instance_from_row(row) for row in rows]

    async def retire_instances(self, instance_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return 0
        async with self._write() as db:
            return await self._changes(
                db, f"DELETE FROM instances WHERE id IN ({marks(len(ids))})", ids
            )

    async def take_over(
        self, *, now: datetime, stale_before: datetime, alive: str | None = None
    ) -> int:
        stale_ms = ms(stale_before)
        # Reads first, and in this order: an owner registers before it claims, so every
        # owner seen here that is missing from the instances read after it is gone.
        async with self._read() as db:
            owners = {str(row[0]) for row in await self._all(db, CLAIM_OWNERS_SQL)}
            instances = await self._all(db, "SELECT id, last_seen FROM instances")
        registered = {str(row[0]) for row in instances}
        stale = sorted(
            str(row[0]) for row in instances if int(row[1]) < stale_ms and row[0] != alive
        )
        gone = sorted(owners - registered)
        if not stale and not gone:
            return 0
        stale, gone = stale[:TAKE_OVER_BATCH], gone[:TAKE_OVER_BATCH]
        async with self._transaction() as db:
            dead = list(gone)
            if stale:
                # Compare-and-set on last_seen: one that heartbeat meanwhile is alive.
                rows = await self._all(
                    db,
                    f"DELETE FROM instances WHERE id IN ({marks(len(stale))})"
                    " AND last_seen < ? RETURNING id",
                    (*stale, stale_ms),
                )
                dead += [str(row[0]) for row in rows]
            if not dead:
                return 0
            # By id, never "not registered": a claim made meanwhile by an instance that
            # registered after the reads above is not touched.
            return await self._release(db, f"IN ({marks(len(dead))})", dead, ms(now))

    async def deregister_instance(self, instance_id: str, *, now: datetime) -> int:
        async with self._transaction() as db:
            freed = await self._release(db, "= ?", (instance_id,), ms(now))
            await self._changes(db, "DELETE FROM instances WHERE id = ?", (instance_id,))
        return freed


__all__ = ["CLAIM_OWNERS_SQL", "INSTANCE_COLUMNS", "ClaimsSql"]
