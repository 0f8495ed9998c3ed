"""A shop's staff: one-time invites, joining by an invite link, roles, removal.

Each refusal is an InputError (a catalogue key) or NotAllowed raised before anything is
written; storage decides a join in one transaction (storage/staff_sql.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain.drafts import InputError
from bot.domain.staff import (
    INVITE_TTL,
    Action,
    JoinResult,
    Role,
    ShopMember,
    StaffInvite,
    invite_hash,
    new_invite_token,
)
from bot.services.access import AccessService
from bot.services.core import ServiceCore

MAX_TOKEN_LENGTH = 43  # token_urlsafe(16) is 22; anything much longer is not ours


@dataclass(frozen=True, slots=True)
class Joined:
    """A user who just joined a shop by its invite."""

    shop_id: int
    role: Role
    invited_by: int


class StaffService:
    """Invites, members and roles of the shop a user owns."""

    def __init__(self, core: ServiceCore, access: AccessService) -> None:
        self.core = core
        self.repo = core.repo
        self.access = access

    async def invite(self, user_id: int, role: Role) -> tuple[str, StaffInvite]:
        """A one-time invite to the owner's shop in `role` (cashier or manager): the token
        for the link (shown once, never stored) and the stored invite."""
        seat = await self.access.require(user_id, Action.MANAGE_STAFF)
        if role is Role.OWNER:
            raise InputError("staff_role_unknown", role=role.value)
        now = self.core.clock()
        token = new_invite_token()
        invite = StaffInvite(
            token_hash=invite_hash(token),
            shop_id=seat.shop_id,
            role=role,
            created_by=user_id,
            created_at=now,
            expires_at=now + INVITE_TTL,
        )
        await self.repo.staff_invite_add(invite)
        return token, invite

    async def join(self, user_id: int, token: str) -> Joined:
        """Join the shop of the invite `token` names. InputError (`staff_join_<reason>`) for
        an unknown, used or expired invite, or a user who already works for a shop (their
        own invite, too); nothing changes then."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise InputError("staff_join_unknown")
        seat = await self.access.seat(user_id)
        if seat is not None:  # settings merchants and admins own a shop without a stored row
            raise InputError("staff_join_in_a_shop")
        result, invite = await self.repo.staff_join(invite_hash(token), user_id, self.core.clock())
        if result is JoinResult.USED:
            raise InputError("staff_join_used")
        if result is JoinResult.EXPIRED:
            raise InputError("staff_join_expired")
        if result is JoinResult.IN_A_SHOP:
            raise InputError("staff_join_in_a_shop")
        if result is not JoinResult.JOINED or invite is None:
            raise InputError("staff_join_unknown")
        return Joined(shop_id=invite.shop_id, role=invite.role, invited_by=invite.created_by)

    async def members(self, user_id: int) -> tuple[int, Sequence[ShopMember]]:
        """The owner's shop and its people: the owner first (stored or from settings)."""
        seat = await self.access.require(user_id, Action.MANAGE_STAFF)
        stored = await self.repo.staff_of(seat.shop_id)
        if not any(m.role is Role.OWNER for m in stored):
            owner = ShopMember(seat.shop_id, seat.shop_id, Role.OWNER, None, self.core.clock())
            stored = [owner, *stored]
        return seat.shop_id, sorted(stored, key=lambda m: m.role is not Role.OWNER)

    async def set_role(self, user_id: int, member_id: int, role: Role) -> int:
        """Give a member of the owner's shop another role; the shop's id. InputError when
        they are not a member (or are the owner, who keeps that role)."""
        seat = await self.access.require(user_id, Action.MANAGE_STAFF)
        if member_id == seat.shop_id:
            raise InputError("staff_not_yourself")
        if role is Role.OWNER:
            raise InputError("staff_role_unknown", role=role.value)
        member = await self.repo.staff_member(member_id)
        if member is None or member.shop_id != seat.shop_id:
            raise InputError("staff_not_member", id=member_id)
        if member.role is not role:
            await self.repo.staff_set_role(seat.shop_id, member_id, role)
        return seat.shop_id

    async def remove(self, user_id: int, member_id: int) -> int:
        """Remove a member from the owner's shop; the shop's id. InputError for the owner
        themselves or someone who is not a member."""
        seat = await self.access.require(user_id, Action.MANAGE_STAFF)
        if member_id == seat.shop_id:
            raise InputError("staff_not_yourself")
        if not await self.repo.staff_remove(seat.shop_id, member_id):
            raise InputError("staff_not_member", id=member_id)
        return seat.shop_id

    async def leave(self, user_id: int) -> int:
        """A cashier or manager stops working for their shop; the shop's id. InputError for
        an owner (a shop keeps its owner) or someone who works for no shop."""
        seat = await self.access.seat(user_id)
        if seat is None:
            raise InputError("staff_not_in_shop")
        if seat.is_owner:
            raise InputError("staff_owner_cannot_leave")
        if not await self.repo.staff_remove(seat.shop_id, user_id):
            raise InputError("staff_not_in_shop")
        return seat.shop_id

    async def people_of(self, shop_id: int) -> list[int]:
        """The user ids of a shop's stored members (operators' /merchants remove)."""
        return [m.user_id for m in await self.repo.staff_of(shop_id)]

    async def counts(self) -> dict[int, int]:
        """How many people each stored shop has (operators' /merchants)."""
        return await self.repo.staff_counts()


__all__ = ["Joined", "StaffService"]
