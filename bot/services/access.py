"""Who may do what: admins (from settings), merchants (settings and database), and each
user's preferences (/settings choices, what Telegram last said about them)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.domain.drafts import NotAllowed
from bot.domain.models import Merchant, UserPrefs
from bot.domain.staff import Action, Role, Seat
from bot.services.core import ServiceCore
from storage.base import StorageError

log = logging.getLogger(__name__)


class AccessService:
    """Roles, the merchant list, and user preferences."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core
        self.repo = core.repo

    def is_admin(self, user_id: int) -> bool:
        return self.core.is_admin(user_id)

    async def is_merchant(self, user_id: int) -> bool:
        """Whether the user works for a shop (as its owner, a manager or a cashier)."""
        return await self.seat(user_id) is not None

    async def require_merchant(self, user_id: int) -> None:
        if await self.seat(user_id) is None:
            raise NotAllowed("not a merchant")

    async def seat(self, user_id: int) -> Seat | None:
        """The user's place in a shop; None for a customer. Merchants from settings (and
        admins) own the shop whose id is their own user id; everyone else's seat is stored."""
        policy = self.core.policy
        if user_id in policy.admin_ids or user_id in policy.merchant_ids:
            return Seat(shop_id=user_id, user_id=user_id, role=Role.OWNER)
        member = await self.repo.staff_member(user_id)
        if member is not None:
            return member.seat
        return None

    async def require(self, user_id: int, action: Action) -> Seat:
        """The user's seat, when their role lets them do `action`; NotAllowed otherwise."""
        seat = await self.seat(user_id)
        if seat is None or not seat.may(action):
            raise NotAllowed(f"may not {action}")
        return seat

    async def shop_of(self, user_id: int) -> int | None:
        """The id of the shop the user works for; None for a customer."""
        seat = await self.seat(user_id)
        return None if seat is None else seat.shop_id

    async def list_merchants(self) -> Sequence[Merchant]:
        """The merchants added in the bot (those from settings are not stored)."""
        return await self.repo.list_merchants()

    async def stored_merchant_ids(self) -> list[int] | None:
        """The ids of the merchants added in the bot; None (logged) when storage fails."""
        try:
            return [m.user_id for m in await self.repo.list_merchants()]
        except StorageError as exc:
            log.warning("listing the merchants failed: %s", exc)
            return None

    async def add_merchant(self, user_id: int, *, added_by: int) -> bool:
        """A new shop owned by the user; False when they already were a merchant. NotAllowed
        when they work for another shop (they must be removed from it first)."""
        seat = await self.seat(user_id)
        if seat is not None and seat.shop_id != user_id:
            raise NotAllowed("works for another shop")
        return await self.repo.add_merchant(user_id, added_by=added_by, now=self.core.clock())

    async def remove_merchant(self, user_id: int) -> bool:
        """False when they were not one (in the database)."""
        return await self.repo.remove_merchant(user_id)

    async def prefs(self, user_id: int) -> UserPrefs:
        return await self.repo.get_prefs(user_id)

    async def choose_gateway(self, user_id: int, gateway: str) -> UserPrefs:
        """A merchant's default gateway (/settings)."""
        return await self.repo.set_prefs(user_id, gateway=gateway)

    async def choose_language(self, user_id: int, language: str | None) -> UserPrefs:
        """A user's language (/settings); None follows Telegram's language."""
        return await self.repo.set_prefs(user_id, language=language)

    async def note_telegram(
        self, user_id: int, telegram_language: str | None, name: str | None
    ) -> UserPrefs:
        """Store what Telegram last said about a user (language_code, display name)."""
        return await self.repo.set_prefs(user_id, telegram_language=telegram_language, name=name)

    async def note_username(self, user_id: int, username: str | None) -> None:
        """Remember the @username a user was seen with (for `/merchants add @name`)."""
        await self.repo.note_username(user_id, username, self.core.clock())

    async def user_by_username(self, username: str) -> int | None:
        """The user the bot last saw with this @username; None when it never did."""
        return await self.repo.user_by_username(username)
