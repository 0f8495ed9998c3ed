"""Refunds in chat (bot/services/refunds.py).

The shop: `/refund <invoice number> [amount] <reason>` marks an invoice for refund and
answers with the customer's link (the customers who opened the invoice are asked
directly); `/refund done <refund> <transaction reference>` records it made;
`/refund cancel <refund>` cancels it; `/refunds` lists the open ones with a Cancel button.
The customer: `?start=rf_<token>` shows the refund and asks where to send it; their reply
(or, within an hour of opening the link, their next message) is the address.
"""

from __future__ import annotations

import logging
import re
from html import escape

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError

from bot.domain.drafts import InputError, NotAllowed
from bot.domain.money import currency_in, split_currency
from bot.domain.refunds import REFUND_PREFIX, Refund, RefundState, refund_token_in
from bot.i18n import format_amount, group_separator, t
from bot.ids import INVOICE_ID_MAX, parse_id
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import answer, callback_parts, language, refuse, reply
from bot.telegram.views import CALLBACK_REFUND, error_text

log = logging.getLogger(__name__)

LINK_MARK = f"?start={REFUND_PREFIX}"
_AMOUNT_WORD = re.compile(r"-?[0-9][0-9.,]*")


def refund_url(context: TillbotContext, refund: Refund) -> str:
    return f"https://t.me/{context.services.view.bot_username}?start={REFUND_PREFIX}{refund.token}"


def state_text(lang: str, state: RefundState) -> str:
    if state is RefundState.DUE:
        key = "refund_state_due"
    elif state is RefundState.ADDRESS_GIVEN:
        key = "refund_state_address_given"
    elif state is RefundState.REFUNDED:
        key = "refund_state_refunded"
    else:
        key = "refund_state_cancelled"
    return t(lang, key)


def _error(lang: str, exc: InputError, *, html: bool = True) -> str:
    """The refusal's text, a refund's state named in the language."""
    params = dict(exc.params)
    minor = params.pop("refundable_minor", None)
    if isinstance(minor, int):
        params["refundable"] = format_amount(minor, str(params.pop("currency")), lang)
    state = params.get("state")
    if isinstance(state, str) and state in set(RefundState):
        params["state"] = state_text(lang, RefundState(state))
    return error_text(lang, exc.code, params, html=html)


async def _send(
    context: TillbotContext, chat_id: int, text: str, reply_markup: ForceReply | None = None
) -> bool:
    """A message to someone who did not just write (a customer, the manager): False when
    Telegram refuses it (they never opened the bot, or blocked it)."""
    try:
        await context.bot.send_message(
            chat_id,
            text,
            parse_mode=ParseMode.HTML,
            link_preview_options=None,
            reply_markup=reply_markup,
        )
    except TelegramError as exc:
        log.info("a refund message to chat %s was not sent: %s", chat_id, exc)
        return False
    return True


def _is_amount(word: str) -> bool:
    number, _ = split_currency(word)
    return bool(_AMOUNT_WORD.fullmatch(number))


# -- the shop --------------------------------------------------------------------------------
async def refund_command(update: Update, context: TillbotContext) -> None:
    """/refund <number> [amount] <reason> | done <refund> <tx ref> | cancel <refund>."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    refunds = context.services.payments.refunds
    try:
        await refunds.seat(user.id)
    except NotAllowed:
        await refuse(update, context, "not_merchant_command", "refund")
        return
    if chat.type != ChatType.PRIVATE:
        await reply(update, context, "refund_private_only")
        return
    lang = await language(update, context)
    words = list(context.args or [])
    action = words[0].lower() if words else ""
    try:
        if action in ("done", "refunded", "erstattet", "hecho"):
            if len(words) < 3:
                raise InputError("refund_done_usage")
            done = await refunds.settle(user.id, words[1], " ".join(words[2:]))
            await _refunded(update, context, done, lang)
        elif action in ("cancel", "stornieren", "cancelar"):
            if len(words) != 2:
                raise InputError("refund_cancel_usage")
            cancelled = await refunds.cancel(user.id, words[1])
            await _cancelled(context, chat.id, cancelled, lang)
        else:
            await _mark(update, context, words, lang)
    except InputError as exc:
        await context.bot.send_message(chat.id, _error(lang, exc), parse_mode=ParseMode.HTML)
    except NotAllowed:
        await refuse(update, context, "not_merchant_command", "refund")


async def _mark(
    update: Update, context: TillbotContext, words: list[str], lang: str
) -> None:
    user, chat = update.effective_user, update.effective_chat
    assert user is not None and chat is not None
    if not words:
        raise InputError("refund_usage")
    amount_text: str | None = None
    rest = words[1:]
    if rest and _is_amount(rest[0]):
        amount_text, rest = rest[0], rest[1:]
        if rest and split_currency(amount_text)[1] is None and currency_in(rest[0]):
            amount_text, rest = amount_text + rest[0], rest[1:]  # `3.50 EUR Broken cup`
    refunds = context.services.payments.refunds
    refund, invoice = await refunds.mark(
        user.id, words[0], amount_text, " ".join(rest), group=group_separator(lang)
    )
    amount = format_amount(refund.amount_minor, refund.currency, lang)
    url = refund_url(context, refund)
    told = 0
    for customer_id in await refunds.customers_of(invoice.id):
        customer_lang = await context.services.language_of_chat(customer_id)
        question = t(customer_lang, "refund_ask_address", url=url)
        if await _send(
            context,
            customer_id,
            _customer_view(customer_lang, refund) + "\n\n" + question,
            reply_markup=ForceReply(
                input_field_placeholder=t(customer_lang, "refund_address_placeholder")
            ),
        ):
            await refunds.open_link(refund.token, customer_id)
            told += 1
    text = t(
        lang,
        "refund_marked",
        id=refund.id,
        number=refund.invoice_number,
        amount=amount,
        reason=escape(refund.reason),
        url=url,
    )
    text += "\n" + (
        t(lang, "refund_customer_told", count=told) if told else t(lang, "refund_customer_unknown")
    )
    await context.bot.send_message(
        chat.id,
        text,
        parse_mode=ParseMode.HTML,
        reply_markup=_buttons([refund], lang),
        link_preview_options=None,
    )


def _buttons(refunds: list[Refund], lang: str) -> InlineKeyboardMarkup | None:
    rows = [
        [
            InlineKeyboardButton(
                t(lang, "button_refund_cancel", id=r.id),
                callback_data=f"{CALLBACK_REFUND}:cancel:{r.id}",
            )
        ]
        for r in refunds
        if r.is_open
    ]
    return InlineKeyboardMarkup(rows) if rows else None


async def _refunded(update: Update, context: TillbotContext, refund: Refund, lang: str) -> None:
    chat = update.effective_chat
    assert chat is not None
    amount = format_amount(refund.amount_minor, refund.currency, lang)
    await reply(
        update,
        context,
        "refund_done",
        id=refund.id,
        number=refund.invoice_number,
        amount=amount,
        tx=escape(refund.tx_ref or ""),
    )
    for customer_id in await _customers(context, refund):
        customer_lang = await context.services.language_of_chat(customer_id)
        await _send(
            context,
            customer_id,
            t(
                customer_lang,
                "refund_done_customer",
                amount=format_amount(refund.amount_minor, refund.currency, customer_lang),
                tx=escape(refund.tx_ref or ""),
            ),
        )


async def _customers(context: TillbotContext, refund: Refund) -> list[int]:
    if refund.customer_id is not None:
        return [refund.customer_id]
    return await context.services.payments.refunds.customers_of(refund.invoice_id)


async def _cancelled(context: TillbotContext, chat_id: int, refund: Refund, lang: str) -> None:
    await context.bot.send_message(chat_id, t(lang, "refund_cancelled", id=refund.id))
    for customer_id in await _customers(context, refund):
        customer_lang = await context.services.language_of_chat(customer_id)
        amount = format_amount(refund.amount_minor, refund.currency, customer_lang)
        await _send(context, customer_id, t(customer_lang, "refund_cancelled_customer", amount=amount))


async def refunds_command(update: Update, context: TillbotContext) -> None:
    """/refunds: the shop's open refunds, each with a Cancel button."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    try:
        found = await context.services.payments.refunds.open_refunds(user.id)
    except NotAllowed:
        await refuse(update, context, "not_merchant_command", "refunds")
        return
    if chat.type != ChatType.PRIVATE:  # customers' addresses are not for a group to read
        await reply(update, context, "refund_private_only")
        return
    lang = await language(update, context)
    if not found:
        await reply(update, context, "refunds_none")
        return
    lines = [t(lang, "refunds_title", count=len(found))]
    for r in found:
        lines.append(
            t(
                lang,
                "refunds_line",
                id=r.id,
                number=r.invoice_number,
                amount=format_amount(r.amount_minor, r.currency, lang),
                reason=escape(r.reason[:60]),
                state=state_text(lang, r.state),
            )
        )
        if r.address:
            lines.append(t(lang, "refunds_address", address=escape(r.address[:200])))
    lines.append(t(lang, "refunds_how"))
    await context.bot.send_message(
        chat.id, "\n".join(lines), parse_mode=ParseMode.HTML, reply_markup=_buttons(found, lang)
    )


async def refund_button(update: Update, context: TillbotContext) -> None:
    """rfd:cancel:<refund id> cancels an open refund of the user's shop."""
    parts = callback_parts(update, CALLBACK_REFUND, 2)
    user = update.effective_user
    refund_id = parse_id(parts[1], INVOICE_ID_MAX) if parts and parts[0] == "cancel" else None
    if user is None or refund_id is None:
        await answer(update)
        return
    lang = await language(update, context)
    refunds = context.services.payments.refunds
    try:
        refund = await refunds.cancel(user.id, str(refund_id))
    except NotAllowed:
        await answer(update, t(lang, "refund_not_allowed"), alert=True)
        return
    except InputError as exc:
        await answer(update, _error(lang, exc, html=False), alert=True)
        return
    await answer(update, t(lang, "refund_cancelled", id=refund.id))
    if update.effective_chat is not None:
        await _cancelled(context, update.effective_chat.id, refund, lang)


# -- the customer ----------------------------------------------------------------------------
def _customer_view(lang: str, refund: Refund) -> str:
    return t(
        lang,
        "refund_view",
        amount=format_amount(refund.amount_minor, refund.currency, lang),
        reason=escape(refund.reason),
        state=state_text(lang, refund.state),
    )


async def open_refund(update: Update, context: TillbotContext, token: str) -> None:
    """`?start=rf_<token>`: the refund, and, while it is open, the question where to."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    refund = await context.services.payments.refunds.open_link(token, user.id)
    if refund is None:
        await reply(update, context, "refund_link_unknown")
        return
    lang = await language(update, context)
    url = refund_url(context, refund)
    text = _customer_view(lang, refund)
    if refund.address and refund.state is not RefundState.CANCELLED:
        text += "\n" + t(lang, "refunds_address", address=escape(refund.address))
    if refund.tx_ref:
        text += "\n" + t(lang, "refund_view_tx", tx=escape(refund.tx_ref))
    if not refund.is_open:
        await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)
        return
    text += "\n\n" + t(lang, "refund_ask_address", url=url)
    await context.bot.send_message(
        chat.id,
        text,
        parse_mode=ParseMode.HTML,
        reply_markup=ForceReply(input_field_placeholder=t(lang, "refund_address_placeholder")),
        link_preview_options=None,
    )


async def address_reply(update: Update, context: TillbotContext) -> bool:
    """The customer's answer to "where to?": a reply to that question, or their next
    message within an hour of opening the link. False when the message is neither."""
    message, user, chat = update.effective_message, update.effective_user, update.effective_chat
    if message is None or user is None or chat is None or not message.text:
        return False
    if chat.type != ChatType.PRIVATE or message.text.startswith("/"):
        return False
    refunds = context.services.payments.refunds
    refund: Refund | None = None
    asked = message.reply_to_message
    if asked is not None and asked.from_user is not None and asked.from_user.id == context.bot.id:
        question = asked.text or ""
        at = question.rfind(LINK_MARK)
        if at >= 0:
            token = refund_token_in(question[at + len("?start=") :].split()[0])
            refund = None if token is None else await refunds.by_token(token)
            if refund is None:
                return False
    if refund is None:
        refund = await refunds.awaiting(user.id)
    if refund is None:
        return False
    lang = await language(update, context)
    try:
        saved = await refunds.give_address(refund, user.id, message.text)
    except InputError as exc:
        await context.bot.send_message(chat.id, _error(lang, exc), parse_mode=ParseMode.HTML)
        return True
    await reply(update, context, "refund_address_saved", address=escape(saved.address or ""))
    for shop_user in dict.fromkeys([saved.requested_by, saved.shop_id]):
        shop_lang = await context.services.language_of_chat(shop_user)
        await _send(
            context,
            shop_user,
            t(
                shop_lang,
                "refund_address_to_shop",
                id=saved.id,
                number=saved.invoice_number,
                amount=format_amount(saved.amount_minor, saved.currency, shop_lang),
                address=escape(saved.address or ""),
            ),
        )
    return True
