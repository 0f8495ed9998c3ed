"""A shop's staff in SQL, written once for both dialects: members (one row per user, so a
user works for at most one shop) and one-time invites (only their tokens' hashes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain.staff import JoinResult, Role, ShopMember, StaffInvite
from storage.dialect import Conn, SqlDialect, marks, ms
from storage.times import from_ms

_MEMBER_COLUMNS = "shop_id, user_id, role, added_by, added_at"
_INVITE_COLUMNS = "token_hash, shop_id, role, created_by, created_at, expires_at"


def _time(value: Any) -> datetime:
    at = from_ms(value)
    assert at is not None, "a NOT NULL time"
    return at


def _member(row: Any) -> ShopMember:
    added_by = row["added_by"]
    return ShopMember(
        shop_id=int(row["shop_id"]),
        user_id=int(row["user_id"]),
        role=Role(row["role"]),
        added_by=None if added_by is None else int(added_by),
        added_at=_time(row["added_at"]),
    )


def _invite(row: Any) -> StaffInvite:
    return StaffInvite(
        token_hash=str(row["token_hash"]),
        shop_id=int(row["shop_id"]),
        role=Role(row["role"]),
        created_by=int(row["created_by"]),
        created_at=_time(row["created_at"]),
        expires_at=_time(row["expires_at"]),
    )


class StaffSql(SqlDialect[Conn]):
    """The `staff_*` repository methods (storage/base.py)."""

    async def staff_member(self, user_id: int) -> ShopMember | None:
        async with self._read() as db:
            row = await self._one(
                db, f"SELECT {_MEMBER_COLUMNS} FROM shop_members WHERE user_id = ?", (user_id,)
            )
        return None if row is None else _member(row)

    async def staff_of(self, shop_id: int) -> list[ShopMember]:
        async with self._read() as db:
            rows = await self._all(
                db,
                f"SELECT {_MEMBER_COLUMNS} FROM shop_members WHERE shop_id = ?"
                " ORDER BY added_at, user_id",
                (shop_id,),
            )
        return [_member(row) for row in rows]

    async def staff_counts(self) -> dict[int, int]:
        async with self._read() as db:
            rows = await self._all(
                db, "SELECT shop_id, COUNT(*) FROM shop_members GROUP BY shop_id"
            )
        return {int(row[0]): int(row[1]) for row in rows}

    async def staff_invite_add(self, invite: StaffInvite) -> None:
        async with self._write() as db:
            await self._changes(
                db,
                f"INSERT INTO staff_invites ({_INVITE_COLUMNS}) VALUES ({marks(6)})",
                (
                    invite.token_hash,
                    invite.shop_id,
                    invite.role.value,
                    invite.created_by,
                    ms(invite.created_at),
                    ms(invite.expires_at),
                ),
            )

    async def staff_join(
        self, token_hash: str, user_id: int, now: datetime
    ) -> tuple[JoinResult, StaffInvite | None]:
        async with self._transaction() as db:
            row = await self._one(
                db,
                f"SELECT {_INVITE_COLUMNS}, used_by FROM staff_invites WHERE token_hash = ?",
                (token_hash,),
            )
            if row is None:
                return JoinResult.UNKNOWN, None
            invite = _invite(row)
            if row["used_by"] is not None:
                return JoinResult.USED, invite
            if invite.expires_at <= now:
                return JoinResult.EXPIRED, invite
            joined = await self._changes(
                db,
                f"INSERT INTO shop_members ({_MEMBER_COLUMNS}) VALUES ({marks(5)})"
                " ON CONFLICT (user_id) DO NOTHING",
                (invite.shop_id, user_id, invite.role.value, invite.created_by, ms(now)),
            )
            if not joined:
                return JoinResult.IN_A_SHOP, invite
            used = await self._changes(
                db,
                "UPDATE staff_invites SET used_by = ?, used_at = ?"
                " WHERE token_hash = ? AND used_by IS NULL",
                (user_id, ms(now), token_hash),
            )
            if not used:  # another opener was first: take the seat back
                await self._changes(db, "DELETE FROM shop_members WHERE user_id = ?", (user_id,))
                return JoinResult.USED, invite
        return JoinResult.JOINED, invite

    async def staff_set_role(self, shop_id: int, user_id: int, role: Role) -> bool:
        if role is Role.OWNER:
            return False  # a shop has one owner, made by an operator
        async with self._write() as db:
            changed = await self._changes(
                db,
                "UPDATE shop_members SET role = ? WHERE shop_id = ? AND user_id = ? AND role <> ?",
                (role.value, shop_id, user_id, Role.OWNER.value),
            )
        return changed > 0

    async def staff_remove(self, shop_id: int, user_id: int) -> bool:
        async with self._write() as db:
            removed = await self._changes(
                db,
                "DELETE FROM shop_members WHERE shop_id = ? AND user_id = ? AND role <> ?",
                (shop_id, user_id, Role.OWNER.value),
            )
        return removed > 0
