"""Admins: /merchants (list, add, remove; or forward a message), the daily summary job."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MessageOriginUser, Update
from telegram.constants import ParseMode

from bot.context import TillbotContext
from bot.handlers.common import answer, callback_parts, is_admin, language, reply
from bot.i18n import t
from bot.money import format_amount
from bot.views import CALLBACK_MERCHANT
from storage.models import NewOutbox, OutboxEvent, OutboxKind


async def merchants_command(update: Update, context: TillbotContext) -> None:
    """/merchants, /merchants add <id>, /merchants remove <id>."""
    if not is_admin(update, context):
        await reply(update, context, "not_admin")
        return
    args = [a.lower() for a in (context.args or [])]
    if not args:
        await _list(update, context)
        return
    if len(args) != 2 or args[0] not in ("add", "remove") or not args[1].lstrip("-").isdigit():
        await reply(update, context, "merchants_usage")
        return
    await _change(update, context, args[0], int(args[1]))


async def _list(update: Update, context: TillbotContext) -> None:
    services = context.services
    lang = await language(update, context)
    stored = await services.repo.list_merchants()
    lines = [
        t(lang, "merchant_line", id=m.user_id, name=escape(m.name or ""), source="") for m in stored
    ]
    lines += [
        t(lang, "merchant_line", id=uid, name="", source=t(lang, "merchant_from_settings"))
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
        for m in stored[:20]
    ]
    chat = update.effective_chat
    assert chat is not None
    await context.bot.send_message(
        chat.id,
        t(lang, "merchants_title", lines=body) + "\n\n" + t(lang, "merchants_usage"),
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup(buttons) if buttons else None,
    )


async def _change(
    update: Update, context: TillbotContext, action: str, user_id: int, name: str | None = None
) -> str:
    services = context.services
    user = update.effective_user
    assert user is not None
    if action == "add":
        added = await services.repo.add_merchant(
            user_id, added_by=user.id, now=services.clock(), name=name
        )
        key = "merchant_added" if added else "merchant_exists"
    elif user_id in services.settings.merchant_ids:
        key = "merchant_in_settings"
    else:
        removed = await services.repo.remove_merchant(user_id)
        key = "merchant_removed" if removed else "merchant_not_found"
    if update.callback_query is None:
        await reply(update, context, key, id=user_id)
    return key


async def forwarded(update: Update, context: TillbotContext) -> None:
    """An admin forwards someone's message: offer to add that person as a merchant."""
    message = update.effective_message
    if message is None or not is_admin(update, context):
        return
    origin = message.forward_origin
    if not isinstance(origin, MessageOriginUser):
        await reply(update, context, "forward_hidden")
        return
    person = origin.sender_user
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
    lang = await language(update, context)
    if parts is None or parts[0] not in ("add", "rm") or not parts[1].lstrip("-").isdigit():
        await answer(update)
        return
    if not is_admin(update, context):
        await answer(update, t(lang, "not_admin"), alert=True)
        return
    key = await _change(update, context, "add" if parts[0] == "add" else "remove", int(parts[1]))
    await answer(update, t(lang, key, id=parts[1]))


async def daily_summary(context: TillbotContext) -> None:
    """Yesterday's invoices per status with totals, to each admin, once per day."""
    services = context.services
    now = services.clock()
    end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=1)
    invoices = await services.repo.invoices_created_between(None, start, end)
    groups: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    counts: dict[str, int] = defaultdict(int)
    for inv in invoices:
        groups[inv.status.value][inv.currency] += inv.amount_minor
        counts[inv.status.value] += 1
    lines = (
        "\n".join(
            f"{status}: {counts[status]} · "
            + ", ".join(
                format_amount(total, cur, "en") for cur, total in sorted(groups[status].items())
            )
            for status in sorted(groups)
        )
        or "—"
    )
    date = start.date().isoformat()
    await services.repo.enqueue(
        [
            NewOutbox(
                kind=OutboxKind.ADMIN,
                event=OutboxEvent.DAILY_SUMMARY,
                chat_id=admin,
                payload={"date": date, "lines": lines},
                dedupe_key=f"daily:{date}:{admin}",
            )
            for admin in services.settings.admin_ids
        ],
        now,
    )
    if services.notifier is not None:
        services.notifier.kick()
