"""Inline mode: `@bot 12.50 Coffee` in any chat offers a merchant an invoice card."""

from __future__ import annotations

import hashlib
import logging
from html import escape

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InlineQueryResultsButton,
    InputTextMessageContent,
    Update,
)
from telegram.constants import ParseMode

from bot.domain.drafts import InputError, NotAllowed, parse_invoice_args
from bot.domain.models import InvoiceMessage, MessageRole
from bot.gateways.base import GatewayError
from bot.i18n import format_amount, t
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.merchant import HELP_PAYLOAD
from bot.telegram.views import CALLBACK_NOOP, error_text, invoice_keyboard, invoice_text

log = logging.getLogger(__name__)


async def inline_query(update: Update, context: TillbotContext) -> None:
    """Offer a merchant one invoice card for what they typed; strangers get nothing."""
    query = update.inline_query
    if query is None:
        return
    services = context.services
    if not await services.payments.is_merchant(query.from_user.id):
        await query.answer([], cache_time=0, is_personal=True)
        return
    lang = await services.language_for(query.from_user)
    text = query.query.strip()
    if not text:
        help_button = InlineQueryResultsButton(
            text=t(lang, "inline_help_title"), start_parameter=HELP_PAYLOAD
        )
        await query.answer([], cache_time=0, is_personal=True, button=help_button)
        return
    try:
        draft = parse_invoice_args(text.split())
        gateway = await services.payments.merchant_gateway(query.from_user.id)
        amount, currency, description, _ = services.payments.validate(draft, gateway)
    except InputError as exc:
        message = error_text(lang, exc.code, exc.params, html=False)
        await query.answer(
            [
                InlineQueryResultArticle(
                    id="error",
                    title=t(lang, "inline_error_title"),
                    description=message,
                    input_message_content=InputTextMessageContent(message),
                )
            ],
            cache_time=0,
            is_personal=True,
        )
        return
    shown = format_amount(amount, currency, lang)
    result_id = hashlib.sha256(text.encode()).hexdigest()[:32]
    card = InlineQueryResultArticle(
        id=result_id,
        title=t(lang, "inline_title", amount=shown),
        description=t(lang, "inline_description", description=description or "—"),
        input_message_content=InputTextMessageContent(t(lang, "creating")),
        # A keyboard is what makes Telegram report the inline_message_id to edit later.
        reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("⏳", callback_data=f"{CALLBACK_NOOP}:creating")]]
        ),
    )
    await query.answer([card], cache_time=0, is_personal=True)


async def chosen_result(update: Update, context: TillbotContext) -> None:
    """The merchant sent the card: create the invoice and turn the card into it."""
    chosen = update.chosen_inline_result
    if chosen is None or chosen.inline_message_id is None or chosen.result_id == "error":
        return
    services = context.services
    user = chosen.from_user
    lang = await services.language_for(user)
    try:
        invoice = await services.payments.create_invoice(
            user.id, parse_invoice_args(chosen.query.split())
        )
    except (InputError, NotAllowed, GatewayError) as exc:
        log.info("inline invoice not created: %s", type(exc).__name__)
        await context.bot.edit_message_text(
            _failure_text(exc, lang, context),
            inline_message_id=chosen.inline_message_id,
            parse_mode=ParseMode.HTML,
        )
        return
    await services.payments.remember_message(
        InvoiceMessage(
            invoice_id=invoice.id,
            role=MessageRole.INLINE,
            inline_message_id=chosen.inline_message_id,
            user_id=user.id,
            language=lang,
        ),
        shown=invoice.status,
    )
    await context.bot.edit_message_text(
        invoice_text(invoice, lang, MessageRole.INLINE, services.view),
        inline_message_id=chosen.inline_message_id,
        parse_mode=ParseMode.HTML,
        reply_markup=invoice_keyboard(invoice, lang, MessageRole.INLINE, services.view),
    )


def _failure_text(exc: Exception, lang: str, context: TillbotContext) -> str:
    """Why the card could not become an invoice, in the merchant's language."""
    if isinstance(exc, InputError):
        return error_text(lang, exc.code, exc.params)
    if isinstance(exc, GatewayError):
        gateway = context.services.view.title(exc.gateway or "")
        if exc.retryable:
            return t(lang, "gateway_busy", gateway=escape(gateway))
        return t(lang, "gateway_failed", gateway=escape(gateway), message=escape(exc.user_message))
    return t(lang, "not_merchant")
