"""Which update goes to which handler: python-telegram-bot's handlers, registered once by
the bootstrap (`bot/app.py`), and the few handlers that only route (unknown input, a
button with nothing to do, an edited command, errors)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from telegram import Update
from telegram.error import BadRequest
from telegram.ext import (
    CallbackQueryHandler,
    ChosenInlineResultHandler,
    CommandHandler,
    InlineQueryHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.telegram.context import TillbotApp, TillbotContext
from bot.telegram.handlers import (
    admin,
    amounts,
    books,
    counter,
    customer,
    inline,
    links,
    lists,
    merchant,
    share,
    staff,
    users,
)
from bot.telegram.handlers.common import reply
from bot.telegram.views import (
    CALLBACK_AMOUNT,
    CALLBACK_CANCEL,
    CALLBACK_CANCEL_CONFIRM,
    CALLBACK_LINK,
    CALLBACK_LINK_QR,
    CALLBACK_MERCHANT,
    CALLBACK_NOOP,
    CALLBACK_PAGE,
    CALLBACK_REFRESH,
    CALLBACK_RESEND,
    CALLBACK_SETTINGS,
    CALLBACK_SHOW,
    CALLBACK_SIMULATE,
)
from storage import StorageError

log = logging.getLogger("bot.app")


def register_handlers(app: TillbotApp) -> None:
    app.add_handler(TypeHandler(Update, users.remember_user), group=-1)
    commands: list[tuple[str, Callable[..., Any]]] = [
        ("start", merchant.start),
        ("help", merchant.help_command),
        ("invoice", merchant.invoice),
        ("pos", merchant.pos),
        ("onchain", merchant.onchain),
        ("link", links.link_command),
        ("settings", merchant.settings_command),
        ("counter", counter.counter_command),
        ("invoices", lists.invoices_command),
        ("report", books.report_command),
        ("close", books.close_command),
        ("staff", staff.staff_command),
        ("merchants", admin.merchants_command),
    ]
    # Commands act on new messages only: an edited `/invoice` or `/merchants add` would run
    # again (two live invoices, a removed merchant re-added); edits get a hint instead.
    for name, callback in commands:
        app.add_handler(CommandHandler(name, callback, filters=filters.UpdateType.MESSAGE))
    app.add_handler(
        MessageHandler(filters.UpdateType.EDITED_MESSAGE & filters.COMMAND, edited_command)
    )
    buttons: list[tuple[str, Callable[..., Any]]] = [
        (CALLBACK_SIMULATE, customer.simulate_button),
        (CALLBACK_REFRESH, customer.refresh_button),
        (CALLBACK_CANCEL, merchant.cancel_button),
        (CALLBACK_CANCEL_CONFIRM, merchant.cancel_confirm_button),
        (CALLBACK_SETTINGS, merchant.settings_button),
        (CALLBACK_PAGE, lists.page_button),
        (CALLBACK_SHOW, lists.show_button),
        (CALLBACK_MERCHANT, admin.merchant_button),
        (CALLBACK_AMOUNT, amounts.amount_button),
        (CALLBACK_LINK_QR, share.link_qr_button),
        (CALLBACK_RESEND, links.resend_button),
        (CALLBACK_LINK, links.link_button),
        (staff.CALLBACK_STAFF, staff.staff_button),
        (CALLBACK_NOOP, noop_button),
    ]
    for prefix, callback in buttons:
        app.add_handler(CallbackQueryHandler(callback, pattern=f"^{prefix}:"))
    app.add_handler(CallbackQueryHandler(noop_button))
    app.add_handler(InlineQueryHandler(inline.inline_query))
    app.add_handler(ChosenInlineResultHandler(inline.chosen_result))
    new_message = filters.UpdateType.MESSAGE
    app.add_handler(
        MessageHandler(new_message & filters.FORWARDED & filters.ChatType.PRIVATE, admin.forwarded)
    )
    app.add_handler(
        MessageHandler(
            new_message & (filters.COMMAND | (filters.TEXT & filters.ChatType.PRIVATE)),
            unknown_input,
        )
    )
    app.add_error_handler(on_error)


async def noop_button(update: Update, context: TillbotContext) -> None:
    """A button that needs no action (or stale data): just stop the spinner."""
    if update.callback_query is not None:
        await update.callback_query.answer()


async def edited_command(update: Update, context: TillbotContext) -> None:
    """An edited command: not run again; a hint to send it as a new message."""
    message = update.effective_message
    command = (message.text or "").split(maxsplit=1)[0] if message and message.text else ""
    _, _, addressee = command.partition("@")
    if addressee and addressee.lower() != context.bot.username.lower():
        return  # another bot's command in a group
    await reply(update, context, "edited_command")


async def unknown_input(update: Update, context: TillbotContext) -> None:
    """Anything else in a private chat: a reply naming the amount of an open-amount payment
    link opens its invoice; a merchant's bare amount gets buttons to make it an invoice or
    a counter QR; anything else points to /help."""
    if await links.amount_reply(update, context):
        return
    message = update.effective_message
    text = message.text or "" if message is not None else ""
    if not text.startswith("/") and await amounts.amount_offer(update, context):
        return
    await merchant.help_command(update, context)


async def on_error(update: object, context: TillbotContext) -> None:
    """Log the error (redacted by the log filter) and tell the user, never crash."""
    error = context.error
    if isinstance(error, BadRequest) and "message is not modified" in error.message.lower():
        return
    log.error("handling an update failed: %s", type(error).__name__, exc_info=error)
    if (
        isinstance(update, Update)
        and update.effective_chat is not None
        and (update.effective_message is not None and update.callback_query is None)
    ):
        key = "storage_busy" if isinstance(error, StorageError) else "something_wrong"
        try:
            await reply(update, context, key)
        except Exception:  # Telegram itself failing: logged above, nothing more to do
            log.warning("could not tell the user about the error")
    elif isinstance(update, Update) and update.callback_query is not None:
        try:
            await update.callback_query.answer()
        except Exception:
            log.debug("could not answer the callback after an error")
