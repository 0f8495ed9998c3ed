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

from dataclasses import dataclass
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
