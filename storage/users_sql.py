"""The @usernames of users the bot has seen, in SQL written once for both dialects."""

from __future__ import annotations

from datetime import datetime

from storage.dialect import Conn, SqlDialect
from storage.times import to_ms


class UsersSql(SqlDialect[Conn]):
    """The `note_username` and `user_by_username` repository methods (storage/base.py)."""

    async def note_username(self, user_id: int, username: str | None, now: datetime) -> None:
        name = (username or "").lower()[:64]
        async with self._write() as db:
            await self._changes(
                db,
                "DELETE FROM known_usernames WHERE user_id = ? AND username <> ?",
                (user_id, name),
            )
            if name:
                await self._changes(
                    db,
                    "INSERT INTO known_usernames (username, user_id, seen_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (username) DO UPDATE SET user_id = excluded.user_id,"
                    " seen_at = excluded.seen_at",
                    (name, user_id, to_ms(now)),
                )

    async def user_by_username(self, username: str) -> int | None:
        async with self._read() as db:
            row = await self._one(
                db,
                "SELECT user_id FROM known_usernames WHERE username = ?",
                (username.lower().lstrip("@"),),
            )
        return None if row is None else int(row["user_id"])
