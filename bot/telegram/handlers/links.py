"""Reusable payment links and receipts in chat.

Merchants: `/link 3.50 Coffee` (or `/link Coffee`, an open amount) makes a link that never
expires; `/link` lists them with their sales, each with a Disable and a Counter card button.
Customers: `?start=l_<token>` opens a fresh invoice of their own (asked for the amount first
when the link leaves it open: they reply to that question); `?start=r_<token>` shows a
receipt again. The merchant's Resend receipt button on a paid invoice.
"""

from __future__ import annotations

from html import escape

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.constants import ParseMode

from bot.domain.drafts import InputError, NotAllowed
from bot.domain.links import LINK_PREFIX, PaymentLink, token_in
from bot.domain.models import MessageRole
from bot.domain.staff import Action
from bot.gateways.base import GatewayError
from bot.i18n import format_amount, t
from bot.ids import parse_invoice_id
from bot.telegram.cards import link_url, render_card
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    guard,
    is_merchant,
    language,
    refuse_role,
    reply,
    reply_gateway_error,
    reply_input_error,
    show_in_place,
    show_invoice,
)
from bot.telegram.receipts import send_receipt
from bot.telegram.views import CALLBACK_LINK, CALLBACK_RESEND, cut_to_units, error_text

OPEN_AMOUNT_MARK = f"?start={LINK_PREFIX}"


# -- merchants ----------------------------------------------------------------------------------
async def link_command(update: Update, context: TillbotContext) -> None:
    """/link <amount> <description>, /link <description> (open amount), /link (the list)."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    if await guard(update, context, Action.MANAGE_LINKS, "link") is None:
        return
    words = list(context.args or [])
    if not words:
        await show_links(update, context)
        return
    links = context.services.payments.links
    try:
        link = await links.create(user.id, words)
    except InputError as exc:
        await reply_input_error(update, context, exc)
        return
    except NotAllowed:
        await refuse_role(
            update, context, "link", await context.services.payments.access.seat(user.id)
        )
        return
    lang = await language(update, context)
    await context.bot.send_message(
        chat.id,
        t(lang, "link_created", link=_describe(link, lang, context)),
        parse_mode=ParseMode.HTML,
        reply_markup=_link_buttons([link], lang),
        link_preview_options=None,
    )


def _describe(
    link: PaymentLink, lang: str, context: TillbotContext, description_units: int = 200
) -> str:
    amount = (
        t(lang, "link_open_amount")
        if link.amount_minor is None
        else format_amount(link.amount_minor, link.currency, lang)
    )
    url = link_url(context.services.view.bot_username, link.token)
    return t(
        lang,
        "link_line",
        description=escape(cut_to_units(link.description, description_units)),
        amount=amount,
        url=url,
    )


def _link_buttons(links: list[PaymentLink], lang: str) -> InlineKeyboardMarkup | None:
    rows = [
        [
            InlineKeyboardButton(
                t(lang, "button_link_card", description=link.description[:24]),
                callback_data=f"{CALLBACK_LINK}:card:{link.token}",
            ),
            InlineKeyboardButton(
                t(lang, "button_link_disable"),
                callback_data=f"{CALLBACK_LINK}:off:{link.token}",
            ),
        ]
        for link in links
        if link.enabled
    ]
    return InlineKeyboardMarkup(rows) if rows else None


async def show_links(update: Update, context: TillbotContext) -> None:
    """The merchant's links with their sales (count, total), newest first."""
    user = update.effective_user
    if user is None:
        return
    lang = await language(update, context)
    links = list(await context.services.payments.links.list(user.id))
    if not links:
        await show_in_place(update, context, t(lang, "links_none"), None)
        return
    lines = [t(lang, "links_title")]
    for link in links:
        sales = t(
            lang,
            "link_sales",
            count=link.sales_count,
            total=format_amount(link.sales_total_minor, link.currency, lang),
        )
        state = "" if link.enabled else " " + t(lang, "link_disabled_mark")
        # Short descriptions: 20 links fit in one message (4096 characters).
        lines.append(f"{_describe(link, lang, context, 48)}\n{sales}{state}")
    await show_in_place(update, context, "\n\n".join(lines), _link_buttons(links, lang))


async def link_button(update: Update, context: TillbotContext) -> None:
    """lnk:off:<token> disables the link; lnk:card:<token> sends its counter card."""
    parts = callback_parts(update, CALLBACK_LINK, 2)
    user = update.effective_user
    if parts is None or user is None or parts[0] not in ("off", "card"):
        await answer(update)
        return
    action, token = parts
    payments = context.services.payments
    lang = await language(update, context)
    link = await payments.links.link(token)
    seat = await payments.access.seat(user.id)
    if (
        link is None
        or seat is None
        or not seat.may(Action.MANAGE_LINKS)
        or link.merchant_id != seat.shop_id
        or not link.enabled
    ):
        await answer(update)
        return
    if action == "off":
        try:
            await payments.links.disable(user.id, token)
        except NotAllowed:
            await answer(update)
            return
        await answer(update, t(lang, "link_disabled_done"))
        await show_links(update, context)
        return
    await answer(update)
    shop = (await context.services.prefs(user.id)).name or user.full_name
    card = await render_card(link, shop, lang, context.services.view.bot_username)
    chat_id = user.id
    await context.bot.send_photo(chat_id, card.png, caption=t(lang, "card_caption"))
    await context.bot.send_document(
        chat_id, InputFile(card.pdf, filename=f"counter-card-{token}.pdf")
    )


# -- customers ----------------------------------------------------------------------------------
async def open_link(update: Update, context: TillbotContext, token: str) -> None:
    """`?start=l_<token>`: a fresh invoice of the customer's own, or, for an open amount,
    the question how much (answered by replying to it)."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    payments = context.services.payments
    link = await payments.links.link(token)
    lang = await language(update, context)
    if link is not None and link.enabled and link.amount_minor is None:
        url = link_url(context.services.view.bot_username, link.token)
        await context.bot.send_message(
            chat.id,
            t(
                lang,
                "link_ask_amount",
                description=escape(link.description),
                currency=link.currency,
                url=url,
            ),
            parse_mode=ParseMode.HTML,
            reply_markup=ForceReply(input_field_placeholder=t(lang, "link_amount_placeholder")),
            link_preview_options=None,
        )
        return
    await _open(update, context, token, None)


async def amount_reply(update: Update, context: TillbotContext) -> bool:
    """A reply to the bot's "how much?" of an open-amount link: the invoice for that amount.
    False when the message is no such reply (then it is not ours to answer)."""
    message = update.effective_message
    if message is None or message.reply_to_message is None or not message.text:
        return False
    asked = message.reply_to_message
    if asked.from_user is None or asked.from_user.id != context.bot.id:
        return False
    question = asked.text or ""
    at = question.rfind(OPEN_AMOUNT_MARK)
    if at < 0:
        return False
    token = token_in(question[at + len("?start=") :].split()[0], LINK_PREFIX)
    if token is None:
        return False
    await _open(update, context, token, message.text.strip())
    return True


async def _open(
    update: Update, context: TillbotContext, token: str, amount_text: str | None
) -> None:
    user, chat = update.effective_user, update.effective_chat
    assert user is not None and chat is not None
    payments = context.services.payments
    try:
        invoice = await payments.links.open(token, amount_text)
    except InputError as exc:
        await reply_input_error(update, context, exc)
        return
    except GatewayError as exc:
        link = await payments.links.link(token)
        await reply_gateway_error(update, context, link.gateway if link else "", exc)
        return
    role = MessageRole.MERCHANT if user.id == invoice.merchant_id else MessageRole.CUSTOMER
    await show_invoice(context, chat.id, invoice, role, await language(update, context), user.id)


async def open_receipt(update: Update, context: TillbotContext, token: str) -> None:
    """`?start=r_<token>`: the receipt image again, for whoever holds its link."""
    chat = update.effective_chat
    if chat is None:
        return
    found = await context.services.payments.receipts.by_token(token)
    if found is None:
        await reply(update, context, "receipt_not_found")
        return
    invoice, receipt = found
    lang = await language(update, context)
    await send_receipt(context.bot, chat.id, context.services.view, invoice, receipt, lang)


async def resend_button(update: Update, context: TillbotContext) -> None:
    """rcpt:<invoice id>: the merchant sends the receipt again to the invoice's customers."""
    parts = callback_parts(update, CALLBACK_RESEND, 1)
    user = update.effective_user
    invoice_id = parse_invoice_id(parts[0]) if parts else None
    if user is None or invoice_id is None or not await is_merchant(update, context):
        await answer(update)
        return
    lang = await language(update, context)
    try:
        count = await context.services.payments.receipts.resend(user.id, invoice_id)
    except NotAllowed:
        await answer(update)
        return
    except InputError as exc:
        await answer(update, error_text(lang, exc.code, exc.params, html=False), alert=True)
        return
    if count == 0:
        await answer(update, t(lang, "receipt_no_customer"), alert=True)
        return
    await answer(update, t(lang, "receipt_resent", count=count))
