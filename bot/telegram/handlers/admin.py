"""Admins: /merchants (list, add, remove; or forward a message), the daily summary job."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MessageOriginUser, Update
from telegram.constants import ParseMode

from bot.domain.models import Invoice
from bot.i18n import format_amount, t
from bot.ids import parse_user_id
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    is_admin,
    language,
    reply,
    show_in_place,
)
from bot.telegram.handlers.menu import refresh_menu
from bot.telegram.handlers.merchant import help_command
from bot.telegram.views import CALLBACK_MERCHANT

MAX_LISTED = 50  # merchants shown by /merchants (with a Remove button for the first 20)
MAX_BUTTONS = 20


async def merchants_command(update: Update, context: TillbotContext) -> None:
    """/merchants, /merchants add <id>, /merchants remove <id>."""
    if not is_admin(update, context):
        await reply(update, context, "not_admin")
        return
    args = [a.lower() for a in (context.args or [])]
    if not args:
        await _list(update, context)
        return
    user_id = parse_user_id(args[1]) if len(args) == 2 else None
    if args[0] not in ("add", "remove") or user_id is None:
        await reply(update, context, "merchants_usage")
        return
    key = await _change(update, context, args[0], user_id)
    await reply(update, context, key, id=user_id)


def _spaced(name: str | None) -> str:
    return f" {escape(name)}" if name else ""


async def _list(update: Update, context: TillbotContext) -> None:
    services = context.services
    chat = update.effective_chat
    if chat is None:
        return
    lang = await language(update, context)
    stored = list(await services.payments.access.list_merchants())[:MAX_LISTED]
    lines = [
        t(
            lang,
            "merchant_line",
            id=m.user_id,
            name=_spaced(m.name or (await services.prefs(m.user_id)).name),
            source="",
        )
        for m in stored
    ]
    lines += [
        t(
            lang,
            "merchant_line",
            id=uid,
            name=_spaced((await services.prefs(uid)).name),
            source=" " + t(lang, "merchant_from_settings"),
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


async def _change(update: Update, context: TillbotContext, action: str, user_id: int) -> str:
    """Add or remove a merchant in the database; returns the catalogue key of the outcome."""
    services = context.services
    user = update.effective_user
    assert user is not None
    if action == "add":
        added = await services.payments.access.add_merchant(user_id, added_by=user.id)
        key = "merchant_added" if added else "merchant_exists"
    elif user_id in services.settings.merchant_ids:
        key = "merchant_in_settings"
    else:
        removed = await services.payments.access.remove_merchant(user_id)
        key = "merchant_removed" if removed else "merchant_not_found"
    if key in ("merchant_added", "merchant_removed"):
        await refresh_menu(context.bot, services, user_id)
    return key


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
    key = await _change(update, context, "add" if parts[0] == "add" else "remove", user_id)
    await answer(update, t(lang, key, id=user_id))
    query = update.callback_query
    if parts[0] == "rm":
        await _list(update, context)
    elif query is not None and query.message is not None:
        await context.bot.edit_message_text(
            t(lang, key, id=user_id),
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
    for inv in invoices:
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
    return "\n".join(lines) or t(lang, "summary_empty")
