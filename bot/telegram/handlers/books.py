"""The shop's books for merchants: /report (the invoices, and the ledger as CSV and XLSX),
/close (the shift close with its chart), the shop's settings (`/settings timezone ...`,
`/settings closing ...`), and the daily close at each shop's closing hour."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from html import escape

from telegram import InputFile, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot.domain.drafts import InputError, NotAllowed
from bot.domain.shop import MAX_RANGE_DAYS, Period, PeriodError
from bot.domain.staff import Action
from bot.i18n import format_amount, format_clock, format_day, t
from bot.ids import parse_user_id
from bot.services.books import Line, ShiftClose
from bot.services.exports import ledger_csv, ledger_xlsx
from bot.services.reports import report_csv
from bot.telegram.charts import ChartTexts, close_chart
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import (
    guard,
    is_admin,
    language,
    refuse_role,
    reply,
    reply_input_error,
)
from bot.telegram.handlers.lists import report_summary

log = logging.getLogger(__name__)

CLOSE_TICK_SECONDS = 60


def _period_error(code: str) -> InputError:
    if code == "too_long":
        return InputError("period_too_long", count=MAX_RANGE_DAYS)
    if code == "reversed":
        return InputError("period_reversed")
    if code == "bad_date":
        return InputError("period_bad_date")
    return InputError("period_unknown")


def period_name(period: Period, lang: str) -> str:
    if period.name == "range" and period.first is not None:
        if period.first == period.last:
            return format_day(period.first, lang)
        return t(
            lang,
            "period_range",
            first=format_day(period.first, lang),
            last=format_day(period.last, lang),
        )
    return t(lang, f"period_{period.name}")


async def _shop(
    update: Update, context: TillbotContext, command: str
) -> tuple[int, list[str]] | None:
    """The shop whose books are asked for, and the remaining words: the user's own shop
    (owner, manager), or for an operator `shop <owner id|@name>` first. None when refused
    (the refusal is sent)."""
    user = update.effective_user
    assert user is not None
    payments = context.services.payments
    args = list(context.args or [])
    named: int | None = None
    if args[:1] == ["shop"] and is_admin(update, context):
        who = args[1].lower() if len(args) > 1 else ""
        named = parse_user_id(who)
        if named is None and who.startswith("@"):
            named = await payments.access.user_by_username(who)
        if named is None:
            await reply(update, context, "shop_unknown", who=escape(who[:40]))
            return None
        args = args[2:]
    try:
        return await payments.books.books_of(user.id, named), args
    except NotAllowed:
        if named is not None:
            await reply(update, context, "shop_unknown", who=named)
        else:
            await refuse_role(update, context, command, await payments.access.seat(user.id))
        return None


async def report_command(update: Update, context: TillbotContext) -> None:
    """/report [today|week|month|all|<from> [<to>]]: the invoices of the period as CSV with
    a summary, and the ledger's payments as CSV and XLSX, days in the shop's time zone."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    books = context.services.payments.books
    found_shop = await _shop(update, context, "report")
    if found_shop is None:
        return
    shop_id, args = found_shop
    try:
        period, tz = await books.period(shop_id, args or ["month"])
    except PeriodError as exc:
        await reply_input_error(update, context, _period_error(exc.code))
        return
    lang = await language(update, context)
    name = period_name(period, lang)
    stamp = f"{period.name}-{period.last:%Y%m%d}"
    found = await context.services.payments.reports.invoices_between(
        shop_id, period.start, period.end
    )
    # Sandbox tests are never money: not in the CSV, not in the totals, only counted apart.
    invoices = [inv for inv in found if not inv.is_sandbox]
    tests = len(found) - len(invoices)
    entries = await books.ledger(shop_id, period)
    if not invoices and not entries:
        await reply(update, context, "report_empty", period=name)
        if tests:
            await context.bot.send_message(chat.id, t(lang, "report_sandbox", count=tests))
        return
    if invoices:
        await context.bot.send_document(
            chat.id,
            InputFile(report_csv(invoices, tz).encode("utf-8"), filename=f"tillbot-{stamp}.csv"),
            caption=t(lang, "report_caption", count=len(invoices), period=name),
        )
    if entries:
        caption = t(lang, "report_ledger_caption", count=len(entries), period=name)
        refunds = await books.refunds_of(entries)
        names = await _names(context, {e.cashier_id for e in entries})
        csv_bytes = ledger_csv(entries, tz, refunds, names).encode("utf-8")
        xlsx = await asyncio.to_thread(ledger_xlsx, entries, tz, "Ledger", refunds, names)
        await context.bot.send_document(
            chat.id, InputFile(csv_bytes, filename=f"tillbot-ledger-{stamp}.csv"), caption=caption
        )
        await context.bot.send_document(
            chat.id,
            InputFile(xlsx, filename=f"tillbot-ledger-{stamp}.xlsx"),
            caption=caption,
        )
    else:
        await reply(update, context, "report_ledger_empty", period=name)
    if invoices:  # last: the summary says the report is complete
        summary = t(lang, "report_summary", period=name, lines=report_summary(invoices, lang))
        if tests:
            summary += "\n" + t(lang, "report_sandbox", count=tests)
        await context.bot.send_message(chat.id, summary)


# -- the shift close ---------------------------------------------------------------------------
def _line(lang: str, name: str, line: Line) -> str:
    total = format_amount(line.total_minor, line.currency, lang)
    return t(lang, "close_line", name=escape(name), count=line.count, total=total)


def close_text(
    close: ShiftClose,
    lang: str,
    titles: dict[str, str],
    names: dict[int, str] | None = None,
) -> str:
    """The close's message; `names` are the cashiers' display names (else their ids)."""
    names = names or {}
    parts = [t(lang, "close_title", day=format_day(close.day, lang), zone=escape(close.zone_name))]
    if not close.totals:
        parts.append(t(lang, "close_nothing"))
    else:
        parts.append(t(lang, "close_by_gateway"))
        parts += [
            _line(lang, titles.get(gw, gw), line) for (gw, _), line in close.per_gateway.items()
        ]
        parts.append(t(lang, "close_by_cashier"))
        for (cashier, currency), line in close.per_cashier.items():
            name = names.get(cashier) or t(lang, "close_cashier", id=cashier)
            tips = format_amount(line.tip_minor, currency, lang)
            parts.append(_line(lang, name, line) + " · " + t(lang, "close_tips", tips=tips))
        parts.append(t(lang, "close_total"))
        for currency, line in close.totals.items():
            parts.append(_line(lang, currency, line))
            tips = format_amount(line.tip_minor, currency, lang)
            parts.append(t(lang, "close_tips", tips=tips))
    parts += _refund_lines(close, lang)
    parts.append(t(lang, "close_unpaid", expired=close.expired, cancelled=close.cancelled))
    if close.sandbox:
        parts.append(t(lang, "close_sandbox", count=close.sandbox))
    return "\n".join(parts)


def _refund_lines(close: ShiftClose, lang: str) -> list[str]:
    """Refunds made this day and the takings net of them; refunds still open."""
    parts: list[str] = []
    for currency, line in close.refunds_made.items():
        total = format_amount(line.total_minor, currency, lang)
        parts.append(t(lang, "close_refunds_made", count=line.count, total=total))
    for currency, net in close.net.items():
        parts.append(t(lang, "close_net", total=format_amount(net, currency, lang)))
    for currency, line in close.refunds_open.items():
        total = format_amount(line.total_minor, currency, lang)
        parts.append(t(lang, "close_refunds_open", count=line.count, total=total))
    return parts


def _chart(close: ShiftClose, lang: str) -> bytes | None:
    if close.chart_currency is None:
        return None
    day = format_day(close.day, lang)
    texts = ChartTexts(
        hourly_title=t(lang, "chart_hourly", day=day),
        daily_title=t(lang, "chart_daily"),
        hour_label=t(lang, "chart_hour"),
        amount_label=t(lang, "chart_amount"),
    )
    return close_chart(close.hourly_minor, close.daily, close.chart_currency, texts)


async def close_command(update: Update, context: TillbotContext) -> None:
    """/close: today's shift close (the shop's day) with its chart."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    services = context.services
    found_shop = await _shop(update, context, "close")
    if found_shop is None:
        return
    lang = await language(update, context)
    close = await services.payments.books.shift_close(found_shop[0])
    await _send_close(context, chat.id, close, lang, await _cashier_names(context, close))


async def _names(context: TillbotContext, user_ids: Iterable[int]) -> dict[int, str]:
    """The display names of these users, as the bot last saw them (unknown ones left out)."""
    names: dict[int, str] = {}
    for user_id in sorted(set(user_ids)):
        name = (await context.services.prefs(user_id)).name
        if name:
            names[user_id] = name
    return names


async def _cashier_names(context: TillbotContext, close: ShiftClose) -> dict[int, str]:
    """The close's cashiers as "name (id)", as the bot last saw them."""
    names = await _names(context, (cashier for cashier, _ in close.per_cashier))
    return {user_id: f"{name} ({user_id})" for user_id, name in names.items()}


async def _send_close(
    context: TillbotContext,
    chat_id: int,
    close: ShiftClose,
    lang: str,
    names: dict[int, str] | None = None,
) -> None:
    titles = dict(context.services.view.gateway_titles)
    await context.bot.send_message(
        chat_id, close_text(close, lang, titles, names), parse_mode=ParseMode.HTML
    )
    png = await asyncio.to_thread(_chart, close, lang)
    if png is not None:
        caption = t(lang, "close_chart_caption", day=format_day(close.day, lang))
        await context.bot.send_photo(chat_id, png, caption=caption)


async def daily_close(context: TillbotContext) -> None:
    """A job: each shop whose closing hour has come gets its day's close, once."""
    services = context.services
    books = services.payments.books
    for merchant_id, day in await books.due_closes():
        try:
            lang = await services.language_of_chat(merchant_id)
            close = await books.shift_close(merchant_id, day)
            await _send_close(context, merchant_id, close, lang, await _cashier_names(context, close))
        except TelegramError as exc:
            log.warning("the shift close of shop %s could not be sent: %s", merchant_id, exc)


# -- the shop's settings -----------------------------------------------------------------------
async def shop_settings(update: Update, context: TillbotContext, args: Sequence[str]) -> None:
    """`/settings timezone <zone|default>` or `/settings closing <0-23|off>`."""
    user = update.effective_user
    if user is None:
        return
    services = context.services
    if await guard(update, context, Action.SHOP_SETTINGS, "settings") is None:
        return
    field = args[0].lower() if args else ""
    value = " ".join(args[1:])
    books = services.payments.books
    if field not in ("timezone", "tz", "closing") or not value:
        await reply(update, context, "settings_usage")
        return
    try:
        if field == "closing":
            settings = await books.set_closing_hour(user.id, value)
        else:
            settings = await books.set_timezone(user.id, value)
    except InputError as exc:
        await reply_input_error(update, context, exc)
        return
    lang = await language(update, context)
    tz = books.zone_of(settings)
    if field != "closing":
        now = format_clock(services.clock(), lang, tz)
        await reply(update, context, "settings_timezone_saved", zone=escape(str(tz)), time=now)
    elif settings.closing_hour is None:
        await reply(update, context, "settings_closing_saved_off")
    else:
        closing = t(lang, "settings_closing_at", hour=f"{settings.closing_hour:02d}")
        await reply(
            update, context, "settings_closing_saved", closing=closing, zone=escape(str(tz))
        )


async def shop_lines(context: TillbotContext, user_id: int, lang: str) -> str:
    """The shop part of the /settings text."""
    books = context.services.payments.books
    settings, tz = await books.shop(user_id)
    closing = (
        t(lang, "settings_closing_off")
        if settings.closing_hour is None
        else t(lang, "settings_closing_at", hour=f"{settings.closing_hour:02d}")
    )
    return t(lang, "settings_shop", zone=escape(str(tz)), closing=closing)
