"""A shop's team: who works for it, in which role, and what each role may do.

A merchant account is a shop. Its id is its owner's Telegram user id (so every invoice's
`merchant_id` is the id of the shop it belongs to), and every other member joins it by an
invite. A user works for at most one shop at a time.

- cashier: takes money (`/invoice`, `/pos`, `/counter`) and sees their own sales;
- manager: also sees the whole shop (its invoices, reports and shift close), manages
  payment links, and marks and settles refunds;
- owner: also manages the staff and the shop's settings.

Operators (`ADMIN_IDS`) create shops and may look at any of them; that is decided where
they act, not here.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Role(StrEnum):
    CASHIER = "cashier"
    MANAGER = "manager"
    OWNER = "owner"


class Action(StrEnum):
    SELL = "sell"  # create invoices, POS and counter sales, cancel one's own
    SEE_OWN_SALES = "see_own_sales"
    SEE_SHOP = "see_shop"  # every invoice of the shop, /report, /close
    MANAGE_LINKS = "manage_links"  # /link: reusable payment links of the shop
    REFUND = "refund"  # mark an invoice for refund, record the refund made
    MANAGE_STAFF = "manage_staff"  # /staff: invite, change roles, remove
    SHOP_SETTINGS = "shop_settings"  # gateway, time zone, closing hour, tips


_CASHIER = frozenset({Action.SELL, Action.SEE_OWN_SALES})
_MANAGER = _CASHIER | {Action.SEE_SHOP, Action.MANAGE_LINKS, Action.REFUND}
_OWNER = _MANAGER | {Action.MANAGE_STAFF, Action.SHOP_SETTINGS}

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.CASHIER: _CASHIER,
    Role.MANAGER: frozenset(_MANAGER),
    Role.OWNER: frozenset(_OWNER),
}


def may(role: Role, action: Action) -> bool:
    """Whether a member in `role` may do `action` in their shop."""
    return action in PERMISSIONS[role]


@dataclass(frozen=True, slots=True)
class Seat:
    """A user's place in a shop: the shop (its owner's user id) and their role there."""

    shop_id: int
    user_id: int
    role: Role

    def may(self, action: Action) -> bool:
        return may(self.role, action)

    @property
    def is_owner(self) -> bool:
        return self.role is Role.OWNER


INVITE_TTL = timedelta(hours=24)
JOIN_PREFIX = "join_"  # the deep link's payload: t.me/<bot>?start=join_<token>
INVITABLE = (Role.CASHIER, Role.MANAGER)


def role_named(word: str) -> Role | None:
    """The role a member may be given (cashier or manager); None for any other word."""
    lowered = word.strip().lower()
    return next((role for role in INVITABLE if role.value == lowered), None)


def new_invite_token() -> str:
    """128 bits from the OS's CSPRNG, URL-safe (fits Telegram's 64-character start payload)."""
    return secrets.token_urlsafe(16)


def invite_hash(token: str) -> str:
    """What storage keeps of an invite: its token's SHA-256 (a database leak invites no one)."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class ShopMember:
    """A stored seat: one row per user (a user works for at most one shop)."""

    shop_id: int
    user_id: int
    role: Role
    added_by: int | None
    added_at: datetime

    @property
    def seat(self) -> Seat:
        return Seat(shop_id=self.shop_id, user_id=self.user_id, role=self.role)


@dataclass(frozen=True, slots=True)
class StaffInvite:
    """A one-time invite to join a shop in a role, valid until `expires_at`."""

    token_hash: str
    shop_id: int
    role: Role
    created_by: int
    created_at: datetime
    expires_at: datetime


class JoinResult(StrEnum):
    """What opening an invite link came to (storage decides it in one transaction)."""

    JOINED = "joined"
    UNKNOWN = "unknown"  # no such invite (a typo, a guess)
    USED = "used"  # someone already used it
    EXPIRED = "expired"
    IN_A_SHOP = "in_a_shop"  # the user already works for a shop (this one or another)
