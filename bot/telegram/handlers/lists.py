"""Merchant views over many invoices: /invoices (paged), tapping one, /report's summary."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from bot.domain.drafts import NotAllowed
from bot.domain.models import Invoice, MessageRole
from bot.domain.staff import Action
from bot.i18n import format_amount, t
from bot.ids import parse_invoice_id, parse_page
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    guard,
    is_merchant,
    language,
    reply,
    show_in_place,
    show_invoice_once,
)
from bot.telegram.views import CALLBACK_PAGE, CALLBACK_SHOW, status_label

PAGE_SIZE = 8


async def invoices_command(update: Update, context: TillbotContext) -> None:
    """/invoices: the merchant's recent invoices, newest first, with paging buttons."""
    if await guard(update, context, Action.SEE_OWN_SALES, "invoices") is None:
        return
    await _show_page(update, context, 0)


async def page_button(update: Update, context: TillbotContext) -> None:
    """`page:<n>`: another page of /invoices, edited in place."""
    parts = callback_parts(update, CALLBACK_PAGE, 1)
    page = parse_page(parts[0]) if parts is not None else None
    if page is None or not await is_merchant(update, context):
        await answer(update)
        return
    await answer(update)
    await _show_page(update, context, page)


async def show_button(update: Update, context: TillbotContext) -> None:
    """`show:<id>`: the invoice as a message of its own (only for its merchant)."""
    parts = callback_parts(update, CALLBACK_SHOW, 1)
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
    await show_invoice_once(context, chat.id, invoice, MessageRole.MERCHANT, lang, user.id)


async def _show_page(update: Update, context: TillbotContext, page: int) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    lang = await language(update, context)
    total, page, invoices = await context.services.payments.invoices.page_of(
        user.id, page, PAGE_SIZE
    )
    if total == 0:
        await reply(update, context, "invoices_empty")
        return
    rows = [
        [InlineKeyboardButton(_row_label(inv, lang), callback_data=f"{CALLBACK_SHOW}:{inv.id}")]
        for inv in invoices
    ]
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(
                t(lang, "button_prev"), callback_data=f"{CALLBACK_PAGE}:{page - 1}"
            )
        )
    if (page + 1) * PAGE_SIZE < total:
        nav.append(
            InlineKeyboardButton(
                t(lang, "button_next"), callback_data=f"{CALLBACK_PAGE}:{page + 1}"
            )
        )
    if nav:
        rows.append(nav)
    text = t(
        lang,
        "invoices_title",
        first=page * PAGE_SIZE + 1,
        last=page * PAGE_SIZE + len(invoices),
        total=total,
    )
    markup = InlineKeyboardMarkup(rows)
    await show_in_place(update, context, text, markup)


def _row_label(invoice: Invoice, lang: str) -> str:
    amount = format_amount(invoice.amount_minor, invoice.currency, lang)
    description = f" · {invoice.description[:24]}" if invoice.description else ""
    return f"#{invoice.shown_number} · {amount} · {status_label(invoice, lang)}{description}"[:64]


def report_summary(invoices: Sequence[Invoice], lang: str) -> str:
    """One line: count and total per currency and status."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for inv in invoices:
        groups[(inv.currency, inv.status.value)].append(inv.amount_minor)
    parts = [
        t(
            lang,
            "report_summary_line",
            currency=currency,
            status=t(lang, f"status_{status}"),
            count=len(amounts),
            total=format_amount(sum(amounts), currency, lang),
        )
        for (currency, status), amounts in sorted(groups.items())
    ]
    return " | ".join(parts)
