"""What several handlers share: showing an invoice, replying with a catalogue text, roles."""

from __future__ import annotations

import logging
from html import escape

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot.domain.drafts import InputError
from bot.domain.models import Invoice, InvoiceMessage, MessageRole
from bot.gateways.base import GatewayError
from bot.i18n import t
from bot.telegram.context import TillbotContext
from bot.telegram.views import error_text, has_qr, invoice_keyboard, invoice_text, render_qr

log = logging.getLogger(__name__)


async def language(update: Update, context: TillbotContext) -> str:
    return await context.services.language_for(update.effective_user)


async def reply(update: Update, context: TillbotContext, key: str, **params: object) -> None:
    """Answer the update's chat with a catalogue text in the user's language."""
    lang = await language(update, context)
    chat = update.effective_chat
    if chat is not None:
        await context.bot.send_message(
            chat.id, t(lang, key, **params), parse_mode=ParseMode.HTML, link_preview_options=None
        )


async def reply_input_error(update: Update, context: TillbotContext, exc: InputError) -> None:
    """The refusal of bad input in the user's language: values escaped, counts kept."""
    lang = await language(update, context)
    chat = update.effective_chat
    if chat is not None:
        await context.bot.send_message(
            chat.id,
            error_text(lang, exc.code, exc.params),
            parse_mode=ParseMode.HTML,
            link_preview_options=None,
        )


async def reply_gateway_error(
    update: Update, context: TillbotContext, gateway: str, exc: GatewayError
) -> None:
    title = context.services.view.title(gateway)
    if exc.retryable:
        await reply(update, context, "gateway_busy", gateway=title)
    else:
        await reply(
            update, context, "gateway_failed", gateway=title, message=_escaped(exc.user_message)
        )


async def is_merchant(update: Update, context: TillbotContext) -> bool:
    user = update.effective_user
    return user is not None and await context.services.payments.is_merchant(user.id)


def is_admin(update: Update, context: TillbotContext) -> bool:
    user = update.effective_user
    return user is not None and context.services.payments.is_admin(user.id)


async def show_invoice(
    context: TillbotContext,
    chat_id: int,
    invoice: Invoice,
    role: MessageRole,
    lang: str,
    user_id: int | None,
) -> Message:
    """Send the invoice message (a QR photo for Lightning/on-chain) and remember it."""
    services = context.services
    text = invoice_text(invoice, lang, role, services.view)
    keyboard = invoice_keyboard(invoice, lang, role, services.view)
    photo = has_qr(invoice) and not invoice.is_final
    if photo:
        sent = await context.bot.send_photo(
            chat_id,
            await render_qr(invoice, lang),
            caption=text,
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard,
        )
    else:
        sent = await context.bot.send_message(
            chat_id, text, parse_mode=ParseMode.HTML, reply_markup=keyboard
        )
    await services.payments.remember_message(
        InvoiceMessage(
            invoice_id=invoice.id,
            role=role,
            chat_id=sent.chat_id,
            message_id=sent.message_id,
            user_id=user_id,
            is_photo=photo,
            language=lang,
        ),
        shown=invoice.status,
    )
    return sent


async def answer(update: Update, text: str | None = None, alert: bool = False) -> None:
    """Answer a button press (Telegram shows a spinner until we do)."""
    query = update.callback_query
    if query is None:
        return
    try:
        await query.answer(text=text, show_alert=alert)
    except TelegramError as exc:  # too old to answer: nothing to do
        log.debug("callback answer failed: %s", exc)


async def show_in_place(
    update: Update, context: TillbotContext, text: str, markup: InlineKeyboardMarkup | None
) -> None:
    """Edit the message whose button was pressed into `text`; for a command, send it."""
    query = update.callback_query
    if query is not None and query.message is not None:
        await context.bot.edit_message_text(
            text,
            chat_id=query.message.chat.id,
            message_id=query.message.message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=markup,
        )
    elif update.effective_chat is not None:
        await context.bot.send_message(
            update.effective_chat.id, text, parse_mode=ParseMode.HTML, reply_markup=markup
        )


def callback_parts(update: Update, prefix: str, count: int) -> list[str] | None:
    """Split `prefix:a:b` callback data into exactly `count` parts after the prefix."""
    query = update.callback_query
    if query is None or not isinstance(query.data, str):
        return None
    parts = query.data.split(":")
    if len(parts) != count + 1 or parts[0] != prefix:
        return None
    return parts[1:]


def _escaped(value: object) -> str:
    return escape(str(value))
