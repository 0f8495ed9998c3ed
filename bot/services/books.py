"""The shop's books: its time zone and closing hour, the ledger of a period, the shift close.

Sandbox payments are booked in the ledger like any other but never counted here: totals,
the close and the exports are about real money.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.drafts import InputError, NotAllowed
from bot.domain.ledger import LedgerEntry
from bot.domain.models import InvoiceStatus
from bot.domain.shop import (
    Period,
    ShopSettings,
    close_due,
    day_start,
    days_bounds,
    local_day,
    parse_period,
    zone,
)
from bot.domain.staff import Action
from bot.services.access import AccessService
from bot.services.core import ServiceCore
from bot.services.ledger import SANDBOX

log = logging.getLogger(__name__)

CHART_DAYS = 30


@dataclass(frozen=True, slots=True)
class Line:
    """A count of payments and their total, in minor units of `currency`."""

    currency: str
    count: int = 0
    total_minor: int = 0
    tip_minor: int = 0


@dataclass(frozen=True, slots=True)
class ShiftClose:
    """One local day of a shop: what came in, per gateway and per cashier."""

    merchant_id: int
    day: date
    zone_name: str
    per_gateway: dict[tuple[str, str], Line] = field(default_factory=dict)
    per_cashier: dict[tuple[int, str], Line] = field(default_factory=dict)
    totals: dict[str, Line] = field(default_factory=dict)
    expired: int = 0
    cancelled: int = 0
    sandbox: int = 0
    # For the charts, in the main currency: per local hour of the day, per day of the last 30.
    chart_currency: str | None = None
    hourly_minor: list[int] = field(default_factory=lambda: [0] * 24)
    daily: list[tuple[date, int]] = field(default_factory=list)


def _add(lines: dict[Any, Line], key: Any, currency: str, e: LedgerEntry) -> None:
    line = lines.get(key) or Line(currency)
    first = 1 if e.seq == 0 else 0  # corrections change the sum, not the number of sales
    lines[key] = Line(
        currency,
        line.count + first,
        line.total_minor + e.fiat_minor,
        line.tip_minor + e.tip_minor,
    )


class BooksService:
    """Reads the ledger for merchants; keeps each shop's zone at hand for the views."""

    def __init__(
        self,
        core: ServiceCore,
        access: AccessService,
        *,
        default_zone: ZoneInfo,
        zones: MutableMapping[int, ZoneInfo] | None = None,
    ) -> None:
        self.core = core
        self.repo = core.repo
        self.access = access
        self.default_zone = default_zone
        self.zones: MutableMapping[int, ZoneInfo] = zones if zones is not None else {}

    # -- the shop's settings ----------------------------------------------------------------
    def zone_of(self, settings: ShopSettings) -> ZoneInfo:
        return zone(settings.timezone) or self.default_zone

    async def shop(self, merchant_id: int) -> tuple[ShopSettings, ZoneInfo]:
        settings = await self.repo.get_shop_settings(merchant_id)
        tz = self.zone_of(settings)
        self._remember(merchant_id, tz)
        return settings, tz

    def _remember(self, merchant_id: int, tz: ZoneInfo) -> None:
        if tz is self.default_zone or tz == self.default_zone:
            self.zones.pop(merchant_id, None)
        else:
            self.zones[merchant_id] = tz

    async def load_zones(self) -> list[ShopSettings]:
        """Every shop's settings (the zones kept current for the views, also those another
        instance changed)."""
        shops = await self.repo.list_shop_settings()
        for shop in shops:
            self._remember(shop.merchant_id, self.zone_of(shop))
        return shops

    async def set_timezone(self, user_id: int, text: str) -> ShopSettings:
        shop_id = (await self.access.require(user_id, Action.SHOP_SETTINGS)).shop_id
        name = text.strip()
        if name.lower() in ("default", "auto", "reset"):
            settings = await self.repo.set_shop_settings(shop_id, timezone=None)
        else:
            tz = zone(name)
            if tz is None:
                raise InputError("timezone_unknown", zone=name[:64])
            settings = await self.repo.set_shop_settings(shop_id, timezone=str(tz))
        self._remember(shop_id, self.zone_of(settings))
        return settings

    async def set_closing_hour(self, user_id: int, text: str) -> ShopSettings:
        user_id = (await self.access.require(user_id, Action.SHOP_SETTINGS)).shop_id
        value = text.strip().lower()
        if value in ("off", "none", "aus", "no"):
            return await self.repo.set_shop_settings(user_id, closing_hour=None)
        hour_text = value.removesuffix(":00")
        if not hour_text.isascii() or not hour_text.isdigit() or not 0 <= int(hour_text) <= 23:
            raise InputError("closing_hour_invalid", hour=text.strip()[:16])
        _, tz = await self.shop(user_id)
        hour = int(hour_text)
        saved = await self.repo.set_shop_settings(user_id, closing_hour=hour)
        # Set after the hour has passed: that day's close is not sent retroactively.
        due = close_due(saved, self.core.clock(), tz)
        if due is not None:
            await self.repo.mark_closed(user_id, due)
            return await self.repo.get_shop_settings(user_id)
        return saved

    # -- the ledger of a period -------------------------------------------------------------
    async def books_of(self, user_id: int, shop: int | None = None) -> int:
        """The shop whose books the user reads: their own (owner, manager); an operator's
        `shop` (its owner's id), any shop. NotAllowed for anyone else, or no such shop."""
        if shop is None:
            return (await self.access.require(user_id, Action.SEE_SHOP)).shop_id
        if not self.core.is_admin(user_id) or await self.access.shop_of(shop) != shop:
            raise NotAllowed("not a shop of theirs")
        return shop

    async def period(self, shop_id: int, args: Sequence[str]) -> tuple[Period, tzinfo]:
        """Raises PeriodError for words that name no period."""
        _, tz = await self.shop(shop_id)
        return parse_period(list(args), self.core.clock(), tz), tz

    async def ledger(self, merchant_id: int, period: Period) -> list[LedgerEntry]:
        entries = await self.repo.ledger_between(merchant_id, period.start, period.end)
        return [e for e in entries if e.gateway != SANDBOX]

    # -- the shift close --------------------------------------------------------------------
    async def shift_close(self, merchant_id: int, day: date | None = None) -> ShiftClose:
        _, tz = await self.shop(merchant_id)
        now = self.core.clock()
        day = day or local_day(now, tz)
        start, end = days_bounds(day, day, tz)
        month_start = day_start(day - timedelta(days=CHART_DAYS - 1), tz)
        entries = await self.repo.ledger_between(merchant_id, month_start, end)
        real = [e for e in entries if e.gateway != SANDBOX]
        today = [e for e in real if start <= e.occurred_at < end]
        per_gateway: dict[Any, Line] = {}
        per_cashier: dict[Any, Line] = {}
        totals: dict[Any, Line] = {}
        for e in today:
            _add(per_gateway, (e.gateway, e.currency), e.currency, e)
            _add(per_cashier, (e.cashier_id, e.currency), e.currency, e)
            _add(totals, e.currency, e.currency, e)
        invoices = await self.repo.invoices_created_between(merchant_id, start, end)
        sandbox = {
            e.invoice_id for e in entries if e.gateway == SANDBOX and start <= e.occurred_at < end
        }
        expired = sum(
            1 for i in invoices if i.status is InvoiceStatus.EXPIRED and i.gateway != SANDBOX
        )
        cancelled = sum(
            1 for i in invoices if i.status is InvoiceStatus.CANCELLED and i.gateway != SANDBOX
        )
        by_currency: dict[str, int] = defaultdict(int)
        for e in real:
            by_currency[e.currency] += e.fiat_minor
        currency = max(by_currency, key=lambda c: (by_currency[c], c)) if by_currency else None
        hourly = [0] * 24
        daily_sums: dict[date, int] = defaultdict(int)
        for e in real:
            if e.currency != currency:
                continue
            local = e.occurred_at.astimezone(tz)
            daily_sums[local.date()] += e.fiat_minor
            if start <= e.occurred_at < end:
                hourly[local.hour] += e.fiat_minor
        days = [day - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
        return ShiftClose(
            merchant_id=merchant_id,
            day=day,
            zone_name=str(tz),
            per_gateway=dict(sorted(per_gateway.items())),
            per_cashier=dict(sorted(per_cashier.items())),
            totals=dict(sorted(totals.items())),
            expired=expired,
            cancelled=cancelled,
            sandbox=len(sandbox),
            chart_currency=currency,
            hourly_minor=hourly,
            daily=[(d, daily_sums.get(d, 0)) for d in days],
        )

    async def due_closes(self) -> list[tuple[int, date]]:
        """The shops whose closing hour has come today and whose close is not sent yet;
        each is marked sent here (compare-and-set: one instance sends it)."""
        now = self.core.clock()
        due: list[tuple[int, date]] = []
        for shop in await self.load_zones():
            if await self.access.shop_of(shop.merchant_id) != shop.merchant_id:
                continue
            day = close_due(shop, now, self.zone_of(shop))
            if day is not None and await self.repo.mark_closed(shop.merchant_id, day):
                due.append((shop.merchant_id, day))
        return due


__all__ = ["BooksService", "Line", "ShiftClose"]
