"""Sharing an invoice: a QR code of its share link, for a customer at the counter to scan
with their phone's camera (it opens the invoice in Telegram)."""

from __future__ import annotations

import asyncio

from telegram import Update
from telegram.constants import ParseMode

from bot.domain.drafts import NotAllowed
from bot.i18n import format_amount, t
from bot.ids import parse_invoice_id
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import answer, callback_parts, is_merchant, language
from bot.telegram.qr import qr_png
from bot.telegram.views import CALLBACK_LINK_QR, share_link


async def link_qr_button(update: Update, context: TillbotContext) -> None:
    """`lqr:<id>`: a photo of the QR code of the invoice's share link (its merchant only)."""
    parts = callback_parts(update, CALLBACK_LINK_QR, 1)
    user, chat = update.effective_user, update.effective_chat
    invoice_id = parse_invoice_id(parts[0]) if parts is not None else None
    if invoice_id is None or user is None or chat is None:
        await answer(update)
        return
    lang = await language(update, context)
    if not await is_merchant(update, context):
        await answer(update, t(lang, "not_yours"), alert=True)
        return
    try:
        invoice = await context.services.payments.invoice_of(user.id, invoice_id)
    except NotAllowed:
        await answer(update, t(lang, "not_yours"), alert=True)
        return
    await answer(update)
    link = share_link(invoice, context.services.view.bot_username)
    await context.bot.send_photo(
        chat.id,
        await asyncio.to_thread(qr_png, link),  # ~20 ms of CPU: not on the event loop
        caption=t(
            lang,
            "link_qr_caption",
            id=invoice.shown_number,
            amount=format_amount(invoice.amount_minor, invoice.currency, lang),
        ),
        parse_mode=ParseMode.HTML,
    )
