"""Refunds in SQL, written once for both dialects (bot/domain/refunds.py).

- Marking a refund checks what may still be refunded and inserts it in one transaction,
  holding the invoice's row (a no-op update: PostgreSQL's row lock, SQLite's write lock),
  so two managers refunding the same invoice at once never refund more than was paid.
- Every state change is a compare-and-set on `state`: of two managers at once, one wins.
- A refund made appends its ledger entry in the same transaction as the move to
  `refunded`, at the invoice's next `seq` (a concurrent booking of the same seq wins; this
  one takes the next).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from bot.domain.ledger import LedgerKind
from bot.domain.models import Invoice
from bot.domain.refunds import (
    HOLDING_STATES,
    NewRefund,
    Refund,
    RefundState,
    refund_entry,
    sources_of,
)
from storage.dialect import Conn, SqlDialect, marks, ms
from storage.ledger_sql import LEDGER_INSERT_COLUMNS, ledger_values
from storage.migrations.columns import INVOICE_COLUMNS, Row, invoice_from_row
from storage.times import from_ms

_COLUMNS = (
    "r.id, r.invoice_id, r.shop_id, r.amount_minor, r.currency, r.reason, r.token, r.state,"
    " r.requested_by, r.created_at, r.updated_at, r.address, r.customer_id, r.awaiting_until,"
    " r.tx_ref, r.settled_by, r.settled_at, r.ledger_seq, i.number AS invoice_number, i.gateway AS gateway"
)
_SELECT = f"SELECT {_COLUMNS} FROM refunds r JOIN invoices i ON i.id = r.invoice_id"
_SEQ_ATTEMPTS = 5


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)


def refund_from_row(row: Row) -> Refund:
    created, updated = from_ms(row["created_at"]), from_ms(row["updated_at"])
    assert created is not None and updated is not None
    return Refund(
        id=int(row["id"]),
        invoice_id=int(row["invoice_id"]),
        shop_id=int(row["shop_id"]),
        amount_minor=int(row["amount_minor"]),
        currency=str(row["currency"]),
        reason=str(row["reason"]),
        token=str(row["token"]),
        state=RefundState(row["state"]),
        requested_by=int(row["requested_by"]),
        created_at=created,
        updated_at=updated,
        invoice_number=int(row["invoice_number"] or 0),
        gateway=str(row["gateway"]),
        address=row["address"],
        customer_id=_opt(row["customer_id"]),
        awaiting_until=from_ms(row["awaiting_until"]),
        tx_ref=row["tx_ref"],
        settled_by=_opt(row["settled_by"]),
        settled_at=from_ms(row["settled_at"]),
        ledger_seq=_opt(row["ledger_seq"]),
    )


def _states(states: Collection[RefundState]) -> tuple[str, list[str]]:
    values = sorted(s.value for s in states)
    return marks(len(values)), values


class RefundsSql(SqlDialect[Conn]):
    """The `refund_*` repository methods (storage/base.py) on a SQL dialect."""

    async def _refund(self, db: Conn, refund_id: int) -> Refund | None:
        row = await self._one(db, f"{_SELECT} WHERE r.id = ?", (refund_id,))
        return None if row is None else refund_from_row(row)

    async def refund_create(self, new: NewRefund) -> Refund | None:
        holding, held_values = _states(HOLDING_STATES)
        async with self._transaction() as db:
            # Hold the invoice's row until the refund is in: concurrent markers queue here.
            await self._changes(
                db, "UPDATE invoices SET updated_at = updated_at WHERE id = ?", (new.invoice_id,)
            )
            paid = await self._one(
                db,
                "SELECT COALESCE(SUM(fiat_minor), 0) AS s FROM ledger_entries"
                " WHERE invoice_id = ? AND kind <> ?",
                (new.invoice_id, LedgerKind.REFUND.value),
            )
            held = await self._one(
                db,
                "SELECT COALESCE(SUM(amount_minor), 0) AS s FROM refunds"
                f" WHERE invoice_id = ? AND state IN ({holding})",
                (new.invoice_id, *held_values),
            )
            assert paid is not None and held is not None
            if new.amount_minor <= 0 or new.amount_minor > int(paid["s"]) - int(held["s"]):
                return None
            row = await self._one(
                db,
                "INSERT INTO refunds (invoice_id, shop_id, amount_minor, currency, reason,"
                " token, state, requested_by, created_at, updated_at)"
                f" VALUES ({marks(10)}) RETURNING id",
                (
                    new.invoice_id,
                    new.shop_id,
                    new.amount_minor,
                    new.currency,
                    new.reason,
                    new.token,
                    RefundState.DUE.value,
                    new.requested_by,
                    ms(new.created_at),
                    ms(new.created_at),
                ),
            )
            assert row is not None
            return await self._refund(db, int(row["id"]))

    async def refund_get(self, refund_id: int) -> Refund | None:
        async with self._read() as db:
            return await self._refund(db, refund_id)

    async def refund_by_token(self, token: str) -> Refund | None:
        async with self._read() as db:
            row = await self._one(db, f"{_SELECT} WHERE r.token = ?", (token,))
        return None if row is None else refund_from_row(row)

    async def refunds_of_invoice(self, invoice_id: int) -> list[Refund]:
        async with self._read() as db:
            rows = await self._all(
                db, f"{_SELECT} WHERE r.invoice_id = ? ORDER BY r.id", (invoice_id,)
            )
        return [refund_from_row(row) for row in rows]

    async def refunds_of_shop(
        self,
        shop_id: int,
        states: Collection[RefundState],
        *,
        settled_since: datetime | None = None,
        limit: int = 50,
    ) -> list[Refund]:
        placeholders, values = _states(states)
        where = f"r.shop_id = ? AND r.state IN ({placeholders})"
        params: list[Any] = [shop_id, *values]
        if settled_since is not None:
            where += " AND r.settled_at >= ?"
            params.append(ms(settled_since))
        async with self._read() as db:
            rows = await self._all(
                db, f"{_SELECT} WHERE {where} ORDER BY r.id LIMIT ?", (*params, limit)
            )
        return [refund_from_row(row) for row in rows]

    async def _move(
        self, refund_id: int, target: RefundState, sets: str, params: Sequence[Any]
    ) -> Refund | None:
        sources, values = _states(sources_of(target))
        async with self._transaction() as db:
            changed = await self._changes(
                db,
                f"UPDATE refunds SET state = ?, {sets} WHERE id = ? AND state IN ({sources})",
                (target.value, *params, refund_id, *values),
            )
            return await self._refund(db, refund_id) if changed else None

    async def refund_await_address(
        self, refund_id: int, customer_id: int, until: datetime, now: datetime
    ) -> Refund | None:
        sources, values = _states(sources_of(RefundState.ADDRESS_GIVEN))
        async with self._transaction() as db:
            changed = await self._changes(
                db,
                "UPDATE refunds SET customer_id = ?, awaiting_until = ?, updated_at = ?"
                f" WHERE id = ? AND state IN ({sources})",
                (customer_id, ms(until), ms(now), refund_id, *values),
            )
            return await self._refund(db, refund_id) if changed else None

    async def refund_awaiting(self, customer_id: int, now: datetime) -> Refund | None:
        sources, values = _states(sources_of(RefundState.ADDRESS_GIVEN))
        async with self._read() as db:
            row = await self._one(
                db,
                f"{_SELECT} WHERE r.customer_id = ? AND r.awaiting_until > ?"
                f" AND r.state IN ({sources}) ORDER BY r.awaiting_until DESC, r.id DESC LIMIT 1",
                (customer_id, ms(now), *values),
            )
        return None if row is None else refund_from_row(row)

    async def refund_set_address(
        self, refund_id: int, address: str, customer_id: int, now: datetime
    ) -> Refund | None:
        return await self._move(
            refund_id,
            RefundState.ADDRESS_GIVEN,
            "address = ?, customer_id = ?, awaiting_until = NULL, updated_at = ?",
            (address, customer_id, ms(now)),
        )

    async def refund_cancel(self, refund_id: int, by: int, now: datetime) -> Refund | None:
        return await self._move(
            refund_id,
            RefundState.CANCELLED,
            "settled_by = ?, settled_at = ?, awaiting_until = NULL, updated_at = ?",
            (by, ms(now), ms(now)),
        )

    async def refund_settle(
        self, refund_id: int, tx_ref: str, by: int, gateway: str, now: datetime
    ) -> Refund | None:
        sources, values = _states(sources_of(RefundState.REFUNDED))
        async with self._transaction() as db:
            changed = await self._changes(
                db,
                "UPDATE refunds SET state = ?, tx_ref = ?, settled_by = ?, settled_at = ?,"
                f" awaiting_until = NULL, updated_at = ? WHERE id = ? AND state IN ({sources})",
                (RefundState.REFUNDED.value, tx_ref, by, ms(now), ms(now), refund_id, *values),
            )
            refund = await self._refund(db, refund_id) if changed else None
            if refund is None:
                return None
            for _ in range(_SEQ_ATTEMPTS):
                row = await self._one(
                    db,
                    "SELECT COALESCE(MAX(seq), -1) + 1 AS seq FROM ledger_entries"
                    " WHERE invoice_id = ?",
                    (refund.invoice_id,),
                )
                assert row is not None
                seq = int(row["seq"])
                entry = refund_entry(
                    refund, seq=seq, gateway=gateway, recorded_by=by, at=now, tx_ref=tx_ref
                )
                added = await self._changes(
                    db,
                    f"INSERT INTO ledger_entries ({LEDGER_INSERT_COLUMNS}) VALUES ({marks(19)})"
                    " ON CONFLICT (invoice_id, seq) DO NOTHING",
                    ledger_values(entry),
                )
                if added:
                    await self._changes(
                        db, "UPDATE refunds SET ledger_seq = ? WHERE id = ?", (seq, refund_id)
                    )
                    return await self._refund(db, refund_id)
            raise RuntimeError(f"refund {refund_id}: the invoice's ledger kept changing")

    async def invoice_by_number(self, shop_id: int, number: int) -> Invoice | None:
        async with self._read() as db:
            row = await self._one(
                db,
                f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE merchant_id = ? AND number = ?",
                (shop_id, number),
            )
        return None if row is None else invoice_from_row(row)


__all__ = ["RefundsSql", "refund_from_row"]
