"""A bare amount sent to the bot (`3.50`, `€3.50`, `12,50 €`): one tap makes it an invoice
or a counter QR, instead of the help text."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters, Update
from telegram.constants import ParseMode

from bot.domain.drafts import InputError, looks_like_amount, parse_invoice_args
from bot.domain.models import InvoiceKind
from bot.i18n import format_amount, group_separator, t
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    is_merchant,
    language,
    reply_input_error,
)
from bot.telegram.handlers.merchant import _create
from bot.telegram.views import CALLBACK_AMOUNT

# What each button makes, and the command it stands for (in a usage hint).
KINDS = {"invoice": (InvoiceKind.CHECKOUT, "invoice"), "pos": (InvoiceKind.LIGHTNING, "pos")}


async def amount_offer(update: Update, context: TillbotContext) -> bool:
    """Offer buttons for a merchant's bare amount; False when the text is no amount (or the
    writer no merchant), for the caller to answer otherwise."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or not message.text or not looks_like_amount(message.text):
        return False
    if not await is_merchant(update, context):
        return False
    services = context.services
    payments = services.payments
    lang = await language(update, context)
    try:
        draft = parse_invoice_args(message.text.split(), group=group_separator(lang))
        gateway = await payments.merchant_gateway(user.id)
        amount, currency, _, _ = payments.validate(draft, gateway)
    except InputError as exc:
        await reply_input_error(update, context, exc, usage="invoice")
        return True
    data = f"{draft.amount_text}:{currency}"
    row = [
        InlineKeyboardButton(
            t(lang, "button_amount_invoice"), callback_data=f"{CALLBACK_AMOUNT}:invoice:{data}"
        )
    ]
    if payments.gateway_for_kind(InvoiceKind.LIGHTNING) is not None:
        row.append(
            InlineKeyboardButton(
                t(lang, "button_amount_pos"), callback_data=f"{CALLBACK_AMOUNT}:pos:{data}"
            )
        )
    await context.bot.send_message(
        message.chat.id,
        t(lang, "amount_offer", amount=format_amount(amount, currency, lang)),
        parse_mode=ParseMode.HTML,
        reply_markup=InlineKeyboardMarkup([row]),
        reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
    )
    return True


async def amount_button(update: Update, context: TillbotContext) -> None:
    """`amt:<invoice|pos>:<amount>:<currency>`: make it; the offer loses its buttons."""
    parts = callback_parts(update, CALLBACK_AMOUNT, 3)
    query = update.callback_query
    if parts is None or parts[0] not in KINDS or query is None:
        await answer(update)
        return
    kind, command = KINDS[parts[0]]
    if not await is_merchant(update, context):
        lang = await language(update, context)
        await answer(update, t(lang, "not_merchant_command", command=command), alert=True)
        return
    await answer(update)
    if query.message is not None:
        await context.bot.edit_message_reply_markup(
            chat_id=query.message.chat.id, message_id=query.message.message_id, reply_markup=None
        )
    await _create(update, context, kind, command, words=[parts[1], parts[2]])
