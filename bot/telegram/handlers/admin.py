"""Admins: /merchants (list, add, remove; or forward a message), the daily summary job."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MessageOriginUser, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot.domain.drafts import NotAllowed
from bot.domain.models import Invoice
from bot.i18n import format_amount, t
from bot.ids import parse_user_id
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    is_admin,
    language,
    refuse,
    reply,
    show_in_place,
)
from bot.telegram.handlers.menu import refresh_menu
from bot.telegram.handlers.merchant import help_command
from bot.telegram.views import CALLBACK_MERCHANT

log = logging.getLogger(__name__)
_USERNAME_RE = re.compile(r"^@[a-z0-9_]{4,32}$")  # Telegram usernames, lower-cased
MAX_LISTED = 50  # merchants shown by /merchants (with a Remove button for the first 20)
MAX_BUTTONS = 20


async def merchants_command(update: Update, context: TillbotContext) -> None:
    """/merchants, /merchants add <id|@username>, /merchants remove <id|@username>; the
    person is told (and the admin whether that reached them)."""
    if not is_admin(update, context):
        await refuse(update, context, "not_admin_command", "merchants")
        return
    args = [a.lower() for a in (context.args or [])]
    if not args:
        await _list(update, context)
        return
    who = args[1] if len(args) == 2 else ""
    if args[0] not in ("add", "remove") or not (parse_user_id(who) or _USERNAME_RE.match(who)):
        await reply(update, context, "merchants_usage")
        return
    user_id = parse_user_id(who) or await context.services.payments.access.user_by_username(who)
    if user_id is None:  # Telegram cannot look a username up: only those the bot has seen
        await reply(update, context, "merchant_unknown_username", username=escape(who))
        return
    key, told = await _change(update, context, args[0], user_id)
    lang = await language(update, context)
    text = t(lang, key, id=user_id)
    if told is not None:
        text += "\n" + _told(lang, told)
    await show_in_place(update, context, text, None)


def _spaced(name: str | None) -> str:
    return f" {escape(name)}" if name else ""


async def _list(update: Update, context: TillbotContext) -> None:
    services = context.services
    chat = update.effective_chat
    if chat is None:
        return
    lang = await language(update, context)
    stored = list(await services.payments.access.list_merchants())[:MAX_LISTED]
    people = await services.payments.staff.counts()
    lines = [
        t(
            lang,
            "merchant_line",
            id=m.user_id,
            name=_spaced(m.name or (await services.prefs(m.user_id)).name),
            source=" " + t(lang, "merchant_staff_count", count=people.get(m.user_id, 1)),
        )
        for m in stored
    ]
    lines += [
        t(
            lang,
            "merchant_line",
            id=uid,
            name=_spaced((await services.prefs(uid)).name),
            source=" "
            + t(lang, "merchant_from_settings")
            + " "
            + t(lang, "merchant_staff_count", count=people.get(uid, 0) + 1),
        )
        for uid in services.settings.merchant_ids
    ]
    body = "\n".join(lines) if lines else t(lang, "merchants_empty")
    buttons = [
        [
            InlineKeyboardButton(
                t(lang, "button_remove_merchant", id=m.user_id),
                callback_data=f"{CALLBACK_MERCHANT}:rm:{m.user_id}",
            )
        ]
        for m in stored[:MAX_BUTTONS]
    ]
    text = t(lang, "merchants_title", lines=body) + "\n\n" + t(lang, "merchants_usage")
    markup = InlineKeyboardMarkup(buttons) if buttons else None
    await show_in_place(update, context, text, markup)


async def _change(
    update: Update, context: TillbotContext, action: str, user_id: int
) -> tuple[str, bool | None]:
    """Add or remove a merchant in the database: the catalogue key of the outcome, and
    whether the person was told (None when nothing changed)."""
    services = context.services
    user = update.effective_user
    assert user is not None
    if action == "add":
        try:
            added = await services.payments.access.add_merchant(user_id, added_by=user.id)
        except NotAllowed:  # they work for another shop: removed from it first
            key = "merchant_works_elsewhere"
            return key, None
        key = "merchant_added" if added else "merchant_exists"
    elif user_id in services.settings.merchant_ids:
        key = "merchant_in_settings"
    else:
        staff = await services.payments.staff.people_of(user_id)
        removed = await services.payments.access.remove_merchant(user_id)
        key = "merchant_removed" if removed else "merchant_not_found"
        for member in staff if removed else []:  # the shop closed: their menus go too
            if member != user_id:
                await refresh_menu(context.bot, services, member)
    if key not in ("merchant_added", "merchant_removed"):
        return key, None
    await refresh_menu(context.bot, services, user_id)
    return key, await _tell(context, user_id, added=key == "merchant_added")


async def _tell(context: TillbotContext, user_id: int, *, added: bool) -> bool:
    """Tell the person they are (no longer) a merchant and what they can do now, in their
    language; False when Telegram does not let us (they never opened the bot)."""
    lang = await context.services.language_of_chat(user_id)
    note = "you_are_merchant" if added else "you_are_no_longer_merchant"
    text = t(lang, note)
    try:
        await context.bot.send_message(user_id, text, parse_mode=ParseMode.HTML)
    except TelegramError as exc:
        log.info("could not tell user %s about their merchant role: %s", user_id, exc)
        return False
    return True


def _told(lang: str, told: bool) -> str:
    note = "merchant_told" if told else "merchant_not_told"
    return t(lang, note)


async def forwarded(update: Update, context: TillbotContext) -> None:
    """An admin forwards someone's message: offer to add that person as a merchant."""
    message = update.effective_message
    if message is None:
        return
    if not is_admin(update, context):
        await help_command(update, context)
        return
    origin = message.forward_origin
    if not isinstance(origin, MessageOriginUser):
        await reply(update, context, "forward_hidden")
        return
    person = origin.sender_user
    if person.is_bot:
        await reply(update, context, "forward_bot")
        return
    lang = await language(update, context)
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t(lang, "button_add_merchant"),
                    callback_data=f"{CALLBACK_MERCHANT}:add:{person.id}",
                )
            ]
        ]
    )
    await context.bot.send_message(
        message.chat.id,
        t(lang, "forward_add_prompt", name=escape(person.full_name), id=person.id),
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard,
    )


async def merchant_button(update: Update, context: TillbotContext) -> None:
    """`merch:add:<id>` / `merch:rm:<id>`: only admins; checked on every press."""
    parts = callback_parts(update, CALLBACK_MERCHANT, 2)
    user_id = parse_user_id(parts[1]) if parts is not None else None
    if parts is None or parts[0] not in ("add", "rm") or user_id is None:
        await answer(update)
        return
    lang = await language(update, context)
    if not is_admin(update, context):
        await answer(update, t(lang, "not_admin"), alert=True)
        return
    key, told = await _change(update, context, "add" if parts[0] == "add" else "remove", user_id)
    await answer(update, t(lang, key, id=user_id))
    query = update.callback_query
    text = t(lang, key, id=user_id)
    if told is not None:
        text += "\n" + _told(lang, told)
    if parts[0] == "rm":
        await _list(update, context)
    elif query is not None and query.message is not None:
        await context.bot.edit_message_text(
            text,
            chat_id=query.message.chat.id,
            message_id=query.message.message_id,
        )


async def daily_summary(context: TillbotContext) -> None:
    """Yesterday's invoices per status with totals, to each admin, once per day."""
    services = context.services

    async def lines_for(invoices: Sequence[Invoice], admin: int) -> str:
        return summary_lines(invoices, await services.language_of_chat(admin))

    await services.payments.reports.queue_daily_summary(lines_for)


def summary_lines(invoices: Sequence[Invoice], lang: str) -> str:
    """One line per status: how many, and the total per currency (plain text)."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    counts: dict[str, int] = defaultdict(int)
    tests = sum(1 for inv in invoices if inv.is_sandbox)  # never money: counted apart
    for inv in (inv for inv in invoices if not inv.is_sandbox):
        totals[inv.status.value][inv.currency] += inv.amount_minor
        counts[inv.status.value] += 1
    lines = [
        t(
            lang,
            "summary_line",
            status=t(lang, f"status_{status}"),
            count=counts[status],
            totals=", ".join(
                format_amount(total, currency, lang)
                for currency, total in sorted(totals[status].items())
            ),
        )
        for status in sorted(totals)
    ]
    text = "\n".join(lines) or t(lang, "summary_empty")
    return text + ("\n" + t(lang, "report_sandbox", count=tests) if tests else "")
