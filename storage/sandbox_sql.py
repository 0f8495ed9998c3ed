"""The sandbox gateway's sessions in SQL, written once for both dialects.

The sandbox (bot/gateways/sandbox_api.py) keeps its sessions in the bot's own database so
that every instance sees the same ones; each change is compare-and-set on `version`.
"""

from __future__ import annotations

from bot.domain.models import SandboxSession
from storage.dialect import Conn, SqlDialect, marks
from storage.migrations.columns import (
    SANDBOX_CHANGED_COLUMNS,
    SANDBOX_COLUMNS,
    sandbox_changed_values,
    sandbox_from_row,
    sandbox_values,
)


class SandboxSql(SqlDialect[Conn]):
    """The `sandbox_*` repository methods (storage/base.py) on a SQL dialect."""

    async def sandbox_insert(self, session: SandboxSession) -> bool:
        async with self._write() as db:
            added = await self._changes(
                db,
                f"INSERT INTO sandbox_sessions ({SANDBOX_COLUMNS})"
                f" VALUES ({marks(len(SANDBOX_CHANGED_COLUMNS) + 2)}) ON CONFLICT DO NOTHING",
                (*sandbox_values(session), session.version),
            )
        return added > 0

    async def _sandbox_where(self, where: str, value: str) -> SandboxSession | None:
        async with self._read() as db:
            row = await self._one(
                db, f"SELECT {SANDBOX_COLUMNS} FROM sandbox_sessions WHERE {where} = ?", (value,)
            )
        return None if row is None else sandbox_from_row(row)

    async def sandbox_get(self, session_id: str) -> SandboxSession | None:
        return await self._sandbox_where("id", session_id)

    async def sandbox_by_reference(self, reference: str) -> SandboxSession | None:
        return await self._sandbox_where("reference", reference)

    async def sandbox_update(self, current: SandboxSession, changed: SandboxSession) -> bool:
        assignments = ", ".join(f"{name} = ?" for name in SANDBOX_CHANGED_COLUMNS)
        async with self._write() as db:
            updated = await self._changes(
                db,
                f"UPDATE sandbox_sessions SET {assignments}, version = ?"
                " WHERE id = ? AND version = ?",
                (
                    *sandbox_changed_values(changed),
                    current.version + 1,
                    current.session_id,
                    current.version,
                ),
            )
        return updated > 0
