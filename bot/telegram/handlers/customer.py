"""Customers: open an invoice from its link, simulate a sandbox payment, check its status."""

from __future__ import annotations

import logging

from telegram import Update

from bot.domain.drafts import InputError
from bot.domain.models import Invoice, InvoiceStatus, MessageRole
from bot.gateways.base import GatewayError
from bot.i18n import t
from bot.telegram.context import TillbotContext
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    language,
    reply,
    show_invoice_once,
)
from bot.telegram.views import CALLBACK_REFRESH, CALLBACK_SIMULATE, error_text

log = logging.getLogger(__name__)

SANDBOX_CHECKOUT_PREFIX = "sbx-"


async def open_invoice(update: Update, context: TillbotContext, payload: str) -> None:
    """A deep link `?start=<public token>` (or a sandbox checkout link) shows the invoice."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    invoice = await _invoice_from_payload(context, payload)
    if invoice is None:
        await reply(update, context, "invoice_not_found")
        return
    role = MessageRole.MERCHANT if user.id == invoice.merchant_id else MessageRole.CUSTOMER
    lang = await language(update, context)
    await show_invoice_once(context, chat.id, invoice, role, lang, user.id)


async def _invoice_from_payload(context: TillbotContext, payload: str) -> Invoice | None:
    invoices = context.services.payments.invoices
    if payload.startswith(SANDBOX_CHECKOUT_PREFIX):
        session_id = payload.removeprefix(SANDBOX_CHECKOUT_PREFIX)
        return await invoices.invoice_of_sandbox_session(session_id)
    return await invoices.invoice_for_customer(payload)


async def simulate_button(update: Update, context: TillbotContext) -> None:
    """ "Simulate payment" on a sandbox invoice: pays the sandbox session at the simulator."""
    parts = callback_parts(update, CALLBACK_SIMULATE, 1)
    invoice = await context.services.payments.invoice_for_customer(parts[0]) if parts else None
    if invoice is None:
        await answer(update)
        return
    lang = await language(update, context)
    try:
        await context.services.payments.simulate_payment(invoice)
    except InputError as exc:
        await answer(update, error_text(lang, exc.code, exc.params, html=False), alert=True)
        return
    except GatewayError as exc:
        log.warning("sandbox payment of invoice %s failed: %s", invoice.id, exc)
        title = context.services.view.title(invoice.gateway)
        await answer(update, t(lang, "gateway_busy", gateway=title), alert=True)
        return
    await answer(update, t(lang, "simulating"))


async def refresh_button(update: Update, context: TillbotContext) -> None:
    """ "Check status": re-reads the invoice's status from its gateway now."""
    parts = callback_parts(update, CALLBACK_REFRESH, 1)
    payments = context.services.payments
    invoice = await payments.invoice_for_customer(parts[0]) if parts else None
    if invoice is None:
        await answer(update)
        return
    lang = await language(update, context)
    if invoice.status is InvoiceStatus.PENDING:
        try:
            invoice = await payments.refresh(invoice)
        except GatewayError:
            await answer(
                update,
                t(lang, "gateway_busy", gateway=context.services.view.title(invoice.gateway)),
            )
            return
    await answer(update, t(lang, "invoice_status", status=_status_plain(invoice, lang)))


def _status_plain(invoice: Invoice, lang: str) -> str:
    return t(lang, f"status_{invoice.status.value}")
