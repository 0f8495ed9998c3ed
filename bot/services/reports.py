"""Reports over many invoices: a merchant's /report (CSV) and the admins' daily summary."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo

from bot.domain import notices
from bot.domain.models import Invoice
from bot.domain.money import to_decimal
from bot.services.core import ServiceCore
from bot.text import strip_controls

# /report periods: how far back each reaches (None: "today" starts at midnight, "all" ever).
PERIODS = {"today": None, "week": timedelta(days=7), "month": timedelta(days=30), "all": None}


class ReportService:
    """Reads invoices of a period; writes the CSV and the daily summary's outbox rows."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core
        self.repo = core.repo

    async def invoices_of_period(self, merchant_id: int, period: str) -> Sequence[Invoice]:
        """A merchant's invoices created in one of PERIODS, up to now."""
        now = self.core.clock()
        return await self.repo.invoices_created_between(
            merchant_id, period_start(period, now), now + timedelta(seconds=1)
        )

    async def invoices_between(
        self, merchant_id: int, start: datetime | None, end: datetime
    ) -> Sequence[Invoice]:
        """A merchant's invoices created in [start, end) (start None: since ever)."""
        return await self.repo.invoices_created_between(
            merchant_id, start or datetime(2000, 1, 1, tzinfo=UTC), end
        )

    async def queue_daily_summary(
        self, lines_for: Callable[[Sequence[Invoice], int], Awaitable[str]]
    ) -> None:
        """Yesterday's invoices to each admin, once per day; `lines_for(invoices, admin)`
        words them in the admin's language."""
        core = self.core
        now = core.clock()
        end = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start = end - timedelta(days=1)
        invoices = await self.repo.invoices_created_between(None, start, end)
        rows = [
            notices.daily_summary(start.date(), admin, await lines_for(invoices, admin))
            for admin in sorted(core.policy.admin_ids)
        ]
        await core.enqueue(rows)


def period_start(period: str, now: datetime) -> datetime:
    if period == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = PERIODS[period]
    return now - span if span else datetime(2000, 1, 1, tzinfo=now.tzinfo)


def report_csv(invoices: Sequence[Invoice], tz: tzinfo = UTC) -> str:
    """number (the shop's own), created, amount, currency, gateway, status, paid at,
    description, cashier (the user id of who made the sale); times in the shop's zone `tz`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "number",
            "created",
            "amount",
            "currency",
            "gateway",
            "status",
            "paid_at",
            "description",
            "cashier",
        ]
    )
    for inv in invoices:
        writer.writerow(
            [
                inv.shown_number,
                inv.created_at.astimezone(tz).isoformat(),
                str(to_decimal(inv.amount_minor, inv.currency)),
                inv.currency,
                inv.gateway,
                inv.status.value,
                inv.paid_at.astimezone(tz).isoformat() if inv.paid_at else "",
                _csv_safe(strip_controls(inv.description)),  # rows stored before the check
                inv.seller_id,
            ]
        )
    return buffer.getvalue()


def _csv_safe(text: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: make them plain text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
