"""The shared Telegram budget in SQL (bot/telegram/budget.py), written once for both dialects.

Every time is in microseconds of the database's own clock (`now()` is stable within one
statement on both databases), so instances on several hosts agree on it. Each call is one
atomic statement: a global slot booking (GCRA: `next_at` is the next free slot), a chat's
slot, a pause after a 429.
"""

from __future__ import annotations

from typing import ClassVar

from storage.dialect import Conn, SqlDialect


class BudgetSql(SqlDialect[Conn]):
    """The `budget_*` repository methods (storage/base.py) on a SQL dialect."""

    # The database's clock in microseconds since the epoch, and its "larger of" function.
    NOW_US_SQL: ClassVar[str]
    GREATEST: ClassVar[str]

    async def budget_take(self, count: int, interval_us: int) -> tuple[int, int, int]:
        """Book `count` global slots `interval_us` apart, none before a pause ends: (the
        first slot, the database's now, the pause's end)."""
        now, greatest = self.NOW_US_SQL, self.GREATEST
        async with self._write() as db:
            row = await self._one(
                db,
                f"UPDATE telegram_budget SET next_at = {greatest}(next_at, {now}, paused_until)"
                f" + ? WHERE id = 1 RETURNING next_at, {now}, paused_until",
                (count * interval_us,),
            )
        assert row is not None, "migration 9 stores the budget's row"
        return int(row[0]) - count * interval_us, int(row[1]), int(row[2])

    async def budget_chat(self, chat: str, spacing_us: int) -> tuple[int, int]:
        """Book the chat's next slot: (the chat's next free slot after this one, now).
        The slot booked is `next - spacing` (or now, when the chat was idle)."""
        now, greatest = self.NOW_US_SQL, self.GREATEST
        async with self._write() as db:
            row = await self._one(
                db,
                f"INSERT INTO telegram_chat_pace (chat, next_at) VALUES (?, {now} + ?)"
                " ON CONFLICT (chat) DO UPDATE SET next_at ="
                f" {greatest}(telegram_chat_pace.next_at + ?, excluded.next_at)"
                f" RETURNING next_at, {now}",
                (chat[:200], spacing_us, spacing_us),
            )
        assert row is not None
        return int(row[0]), int(row[1])

    async def budget_chat_sent(self, chat: str, not_before_us: int) -> None:
        """A message to `chat` went out later than booked: its next slot moves on."""
        async with self._write() as db:
            await self._changes(
                db,
                f"UPDATE telegram_chat_pace SET next_at = {self.GREATEST}(next_at, ?)"
                " WHERE chat = ?",
                (not_before_us, chat[:200]),
            )

    async def budget_pause(self, pause_us: int) -> tuple[int, int]:
        """Nothing goes out for `pause_us` (a 429's retry_after), on every instance:
        (the pause's end, now)."""
        now, greatest = self.NOW_US_SQL, self.GREATEST
        async with self._write() as db:
            row = await self._one(
                db,
                f"UPDATE telegram_budget SET paused_until = {greatest}(paused_until, {now} + ?)"
                f" WHERE id = 1 RETURNING paused_until, {now}",
                (pause_us,),
            )
        assert row is not None, "migration 9 stores the budget's row"
        return int(row[0]), int(row[1])

    async def budget_prune(self, idle_us: int) -> int:
        """Forget chats whose next slot passed more than `idle_us` ago."""
        async with self._write() as db:
            return await self._changes(
                db,
                f"DELETE FROM telegram_chat_pace WHERE next_at < {self.NOW_US_SQL} - ?",
                (idle_us,),
            )
