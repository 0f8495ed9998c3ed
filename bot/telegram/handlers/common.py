"""What several handlers share: showing an invoice, replying with a catalogue text, roles."""

from __future__ import annotations

import logging
from html import escape

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError

from bot.domain.drafts import InputError
from bot.domain.models import Invoice, InvoiceMessage, MessageRole
from bot.domain.staff import Action, Seat
from bot.gateways.base import GatewayAuthError, GatewayError
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


async def refuse(
    update: Update, context: TillbotContext, key: str, command: str, **params: object
) -> None:
    """Refuse a command the user may not use, naming it (`not_merchant_command`). In a
    private chat, there; in a group, never for everyone to read: privately to the user,
    which Telegram allows only once they have opened the bot, else not at all."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    lang = await language(update, context)
    text = t(lang, key, command=command, **params)
    if chat.type == ChatType.PRIVATE:
        await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)
        return
    try:
        await context.bot.send_message(user.id, text, parse_mode=ParseMode.HTML)
    except TelegramError as exc:  # they never opened the bot: stay silent in the group
        log.info("refusal of /%s in a group not sent privately: %s", command, exc)


async def reply_input_error(
    update: Update, context: TillbotContext, exc: InputError, *, usage: str | None = None
) -> None:
    """The refusal of bad input in the user's language: values escaped, counts kept; with
    `usage` (a command) how to write it, in the same message."""
    lang = await language(update, context)
    chat = update.effective_chat
    text = error_text(lang, exc.code, exc.params)
    if usage is not None:
        text += "\n" + t(lang, "invoice_usage", command=usage)
    if chat is not None:
        await context.bot.send_message(
            chat.id,
            text,
            parse_mode=ParseMode.HTML,
            link_preview_options=None,
        )


async def reply_gateway_error(
    update: Update, context: TillbotContext, gateway: str, exc: GatewayError
) -> None:
    lang = await language(update, context)
    text = gateway_error_text(
        exc, lang, context.services.view.title(gateway), for_admin=is_admin(update, context)
    )
    chat = update.effective_chat
    if chat is not None:
        await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)


def gateway_error_text(exc: GatewayError, lang: str, title: str, *, for_admin: bool) -> str:
    """Why no invoice was made, in plain words of our catalogue (merchants never read
    setting names or the gateway's English); admins also get the technical detail."""
    if exc.retryable:
        return t(lang, "gateway_busy", gateway=_escaped(title))
    if isinstance(exc, GatewayAuthError):
        key = "gateway_not_set_up"
    elif exc.code == "answer-lost":
        key = "gateway_unconfirmed"
    else:
        key = "gateway_refused"
    text = t(lang, key, gateway=_escaped(title))
    if for_admin:
        text += "\n" + t(lang, "detail_for_admins", detail=_escaped(exc.user_message))
    return text


async def is_merchant(update: Update, context: TillbotContext) -> bool:
    """Whether the user works for a shop (any role)."""
    user = update.effective_user
    return user is not None and await context.services.payments.is_merchant(user.id)


async def may(update: Update, context: TillbotContext, action: Action) -> bool:
    """Whether the user's role in their shop lets them do `action`."""
    user = update.effective_user
    if user is None:
        return False
    seat = await context.services.payments.access.seat(user.id)
    return seat is not None and seat.may(action)


async def guard(
    update: Update, context: TillbotContext, action: Action, command: str
) -> Seat | None:
    """The user's seat when their role allows `action`; otherwise the refusal naming the
    command (for a customer: it is for merchants; for staff: not in their role), and None."""
    user = update.effective_user
    if user is None:
        return None
    seat = await context.services.payments.access.seat(user.id)
    if seat is not None and seat.may(action):
        return seat
    await refuse_role(update, context, command, seat)
    return None


async def refuse_role(
    update: Update, context: TillbotContext, command: str, seat: Seat | None
) -> None:
    """The refusal of a command the user's role (or lack of one) does not include."""
    if seat is None:
        await refuse(update, context, "not_merchant_command", command)
        return
    lang = await language(update, context)
    role = t(lang, f"role_{seat.role.value}")
    await refuse(update, context, "not_in_role_command", command, role=role)


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
    sent, photo = await _send_invoice(context, chat_id, invoice, role, lang)
    await context.services.payments.remember_message(
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


async def show_invoice_once(
    context: TillbotContext,
    chat_id: int,
    invoice: Invoice,
    role: MessageRole,
    lang: str,
    user_id: int | None,
) -> Message:
    """Show the invoice in the chat once: shown there before (a link opened again, an
    invoice tapped twice in /invoices), it is sent again at the bottom of the chat, the old
    message says so, and the status edits follow the new one; never two live copies."""
    payments = context.services.payments
    old = await payments.message_in_chat(invoice.id, chat_id, role)
    if old is None or old.message_id is None:
        return await show_invoice(context, chat_id, invoice, role, lang, user_id)
    sent, photo = await _send_invoice(context, chat_id, invoice, role, lang)
    if photo == old.is_photo:
        await payments.moved_message(old, sent.chat_id, sent.message_id)
    else:  # a QR photo then, a text now (or back): a message row of its own
        await payments.remember_message(
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
    moved = t(old.language or lang, "invoice_moved", id=invoice.shown_number)
    try:
        if old.is_photo:
            await context.bot.edit_message_caption(
                chat_id=chat_id, message_id=old.message_id, caption=moved, reply_markup=None
            )
        else:
            await context.bot.edit_message_text(
                moved, chat_id=chat_id, message_id=old.message_id, reply_markup=None
            )
    except TelegramError as exc:  # deleted by the user, or too old to edit: nothing left
        log.info("the earlier message of invoice %s was not edited: %s", invoice.id, exc)
    return sent


async def _send_invoice(
    context: TillbotContext, chat_id: int, invoice: Invoice, role: MessageRole, lang: str
) -> tuple[Message, bool]:
    services = context.services
    text = invoice_text(invoice, lang, role, services.view)
    keyboard = invoice_keyboard(invoice, lang, role, services.view, private=chat_id > 0)
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
    return sent, photo


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
