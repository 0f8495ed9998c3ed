"""/invoice, /pos and /onchain through the inbox (issues 12 and 16): a placeholder at once,
edited in place into the invoice or a friendly error; resumable after a crash; a resend of
the same command while it is under way pointed to the one under way.

Each step leaves a record, so that a process killed at any point and the update handled
again (by this instance after a restart, or by another) continues where it stopped:

    update stored       the inbox row (bot/telegram/inbox.py), before Telegram was told
    placeholder sent    "Creating invoice…"; its message id stored on the inbox row
    invoice stored      the invoice row, linked to the update in the same transaction
    session created     at the gateway, under the invoice's reference (a resumed creation
                        looks it up by reference before creating: one session)
    reply sent          the placeholder edited into the invoice (an edit: repeatable)
    reply stored        the message remembered as the invoice's merchant view
    done                the inbox row marked done by the update processor

The one step that cannot be repeated harmlessly is sending the placeholder: a process dying
after Telegram accepted it and before its id was stored sends a second placeholder when the
update is handled again (the first one stays, saying "Creating invoice…").
"""

from __future__ import annotations

import logging

from telegram import InlineKeyboardMarkup, ReplyParameters, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

from bot.domain.drafts import InputError, InvoiceDraft, NotAllowed
from bot.domain.models import InboxEntry, Invoice, InvoiceMessage, InvoiceStatus, MessageRole
from bot.failpoints import crash_point
from bot.gateways.base import GatewayError
from bot.i18n import t
from bot.services.inbox import InboxService
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import gateway_error_text as common_gateway_error_text
from bot.telegram.handlers.common import (
    is_admin,
    language,
    refuse,
    reply,
    reply_input_error,
    show_invoice,
)
from bot.telegram.views import error_text, has_qr, invoice_keyboard, invoice_text

log = logging.getLogger(__name__)


async def create_in_place(
    update: Update,
    context: TillbotContext,
    inbox: InboxService,
    entry: InboxEntry,
    draft: InvoiceDraft,
    command: str,
) -> None:
    """Create the invoice of this command (resuming what a dead process began) and show it
    in the placeholder."""
    user, chat = update.effective_user, update.effective_chat
    assert user is not None and chat is not None
    services = context.services
    payments = services.payments
    try:
        await payments.check_draft(user.id, draft)
    except InputError as exc:  # one reply per mistake: what is wrong, and how to write it
        usage = exc.code.startswith("amount_") or exc.code == "two_currencies"
        await reply_input_error(update, context, exc, usage=command if usage else None)
        return
    except NotAllowed:
        await refuse(update, context, "not_merchant_command", command)
        return
    lang = await language(update, context)
    earlier = await inbox.earlier_underway(entry)
    if earlier is not None:  # a resend while the first is under way: not doubled
        reply_to = (
            ReplyParameters(earlier.reply_message_id, allow_sending_without_reply=True)
            if earlier.reply_message_id is not None and earlier.reply_chat_id == chat.id
            else None
        )
        await context.bot.send_message(
            chat.id, t(lang, "invoice_underway"), reply_parameters=reply_to
        )
        return
    message_id = entry.reply_message_id
    if message_id is None or entry.reply_chat_id != chat.id:
        sent = await context.bot.send_message(chat.id, t(lang, "creating_invoice"))
        crash_point("after_placeholder_sent")
        await inbox.set_reply(update.update_id, sent.chat_id, sent.message_id)
        message_id = sent.message_id
    gateway = draft.gateway or await payments.merchant_gateway(user.id)
    try:
        created = await payments.create_invoice(
            user.id,
            draft,
            update_id=update.update_id,
            timeout=services.settings.invoice_create_timeout_seconds,
        )
    except InputError as exc:
        await _edit(context, chat.id, message_id, error_text(lang, exc.code, exc.params))
        return
    except NotAllowed:
        await _edit(context, chat.id, message_id, t(lang, "not_merchant"))
        return
    except GatewayError as exc:
        await _edit(context, chat.id, message_id, gateway_error_text(update, context, lang, gateway, exc))
        return
    if created.status is InvoiceStatus.FAILED and created.gateway_session_id is None:
        # Failed before the process died: the reason stored then.
        failed = GatewayError(created.failure_reason or "", gateway=created.gateway)
        text = gateway_error_text(update, context, lang, created.gateway, failed)
        await _edit(context, chat.id, message_id, text)
        return
    try:
        await _show(context, chat.id, message_id, created, lang, user.id)
    except TelegramError:
        # The invoice is live at the gateway: never let the error reply say nothing was
        # charged. The merchant finds it in /invoices.
        log.exception("invoice %s was created but could not be shown", created.id)
        await reply(update, context, "invoice_not_shown", id=created.shown_number)


def gateway_error_text(
    update: Update, context: TillbotContext, lang: str, gateway: str, exc: GatewayError
) -> str:
    """What the merchant reads in the placeholder (admins also get the detail)."""
    title = context.services.view.title(gateway)
    return common_gateway_error_text(exc, lang, title, for_admin=is_admin(update, context))


async def _edit(
    context: TillbotContext,
    chat_id: int,
    message_id: int,
    text: str,
    reply_markup: InlineKeyboardMarkup | None = None,
) -> None:
    """Edit the placeholder; an edit repeated after a restart changes nothing (fine)."""
    try:
        await context.bot.edit_message_text(
            text,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=reply_markup,
        )
    except BadRequest as exc:
        if "message is not modified" not in exc.message.lower():
            raise


async def _show(
    context: TillbotContext,
    chat_id: int,
    placeholder_id: int,
    invoice: Invoice,
    lang: str,
    user_id: int,
) -> None:
    """The placeholder becomes the invoice: edited into it (text), or replaced by the QR
    photo (Telegram cannot turn a text message into a photo) and then deleted."""
    payments = context.services.payments
    view = context.services.view
    views = [
        m for m in await payments.views_of(invoice.id)
        if m.role is MessageRole.MERCHANT and m.chat_id == chat_id
    ]
    if has_qr(invoice) and not invoice.is_final:
        if not views:
            await show_invoice(context, chat_id, invoice, MessageRole.MERCHANT, lang, user_id)
        crash_point("after_reply_stored")
        try:
            await context.bot.delete_message(chat_id, placeholder_id)
        except BadRequest:
            log.debug("placeholder %s already gone", placeholder_id)
        return
    await _edit(
        context,
        chat_id,
        placeholder_id,
        invoice_text(invoice, lang, MessageRole.MERCHANT, view),
        reply_markup=invoice_keyboard(invoice, lang, MessageRole.MERCHANT, view),
    )
    crash_point("after_reply_sent")
    await payments.remember_message(
        InvoiceMessage(
            invoice_id=invoice.id,
            role=MessageRole.MERCHANT,
            chat_id=chat_id,
            message_id=placeholder_id,
            user_id=user_id,
            is_photo=False,
            language=lang,
        ),
        shown=invoice.status,
    )
    crash_point("after_reply_stored")
