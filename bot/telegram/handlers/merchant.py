"""Merchant commands: /start, /help, /invoice, /pos, the Cancel button, /settings."""

from __future__ import annotations

import logging
from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode

from bot.domain.drafts import InputError, InvoiceDraft, NotAllowed, parse_invoice_args
from bot.domain.links import LINK_PREFIX, RECEIPT_PREFIX, token_in
from bot.domain.models import InvoiceKind, MessageRole
from bot.gateways.base import GatewayError
from bot.i18n import LANGUAGE_NAMES, LANGUAGES, format_decimal, t
from bot.ids import parse_invoice_id
from bot.telegram.context import TillbotContext
from bot.telegram.handlers import links
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    is_merchant,
    language,
    reply,
    reply_gateway_error,
    reply_input_error,
    show_in_place,
    show_invoice,
)
from bot.telegram.handlers.creating import create_in_place
from bot.telegram.handlers.customer import open_invoice
from bot.telegram.handlers.menu import Role, help_lines, refresh_menu, role_of
from bot.telegram.views import CALLBACK_CANCEL, CALLBACK_SETTINGS, error_text

log = logging.getLogger(__name__)

HELP_PAYLOAD = "help"  # t.me/<bot>?start=help (the inline mode's help button)


NO_GATEWAY_FOR = {
    InvoiceKind.LIGHTNING: "err_no_pos_gateway",
    InvoiceKind.ONCHAIN: "err_no_onchain_gateway",
}


async def start(update: Update, context: TillbotContext) -> None:
    """Welcome; with a deep-link payload, show that invoice to the customer."""
    if context.args == [HELP_PAYLOAD]:
        await help_command(update, context)
        return
    if context.args:
        payload = context.args[0]
        if (token := token_in(payload, LINK_PREFIX)) is not None:
            await links.open_link(update, context, token)
        elif (token := token_in(payload, RECEIPT_PREFIX)) is not None:
            await links.open_receipt(update, context, token)
        else:
            await open_invoice(update, context, payload)
        return
    user = update.effective_user
    name = user.first_name if user else ""
    key = "start_merchant" if await is_merchant(update, context) else "start_customer"
    await reply(update, context, key, name=escape(name))


async def help_command(update: Update, context: TillbotContext) -> None:
    """Exactly the commands of this user's menu, with a short guide for their role."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    services = context.services
    lang = await language(update, context)
    role = await role_of(services, user.id)
    parts = [t(lang, "help_customer")] if role is Role.CUSTOMER else []
    parts.append(t(lang, "help_commands") + "\n" + help_lines(role, lang))
    if role is not Role.CUSTOMER:
        parts.append(
            t(
                lang,
                "help_merchant",
                gateways=", ".join(services.view.title(g) for g in services.gateways),
                maximum=format_decimal(services.settings.max_amount, lang, places=0),
                bot=services.view.bot_username,
            )
        )
    if role is Role.ADMIN:
        parts.append(t(lang, "help_admin"))
    await context.bot.send_message(chat.id, "\n\n".join(parts), parse_mode=ParseMode.HTML)


async def invoice(update: Update, context: TillbotContext) -> None:
    """/invoice <amount> [currency] [description]: an invoice with a checkout link."""
    await _create(update, context, InvoiceKind.CHECKOUT, "invoice")


async def pos(update: Update, context: TillbotContext) -> None:
    """/pos <amount> [description]: a Lightning QR for the counter."""
    await _create(update, context, InvoiceKind.LIGHTNING, "pos")


async def onchain(update: Update, context: TillbotContext) -> None:
    """/onchain <amount> [currency] [description]: an address and exact amount as a QR."""
    await _create(update, context, InvoiceKind.ONCHAIN, "onchain")


async def _create(update: Update, context: TillbotContext, kind: InvoiceKind, command: str) -> None:
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    if not await is_merchant(update, context):
        await reply(update, context, "not_merchant")
        return
    payments = context.services.payments
    args = list(context.args or [])
    gateway = None
    if kind is not InvoiceKind.CHECKOUT:
        gateway = payments.gateway_for_kind(kind)
        if gateway is None:
            await reply(update, context, NO_GATEWAY_FOR[kind])
            return
    elif args and args[0].lower() in payments.gateways:
        gateway = args.pop(0).lower()
    try:
        draft = parse_invoice_args(args, kind)
        draft = InvoiceDraft(draft.amount_text, draft.description, draft.currency, gateway, kind)
        inbox = context.services.inbox
        entry = await inbox.entry(update.update_id) if inbox is not None else None
        if inbox is not None and entry is not None:
            await create_in_place(update, context, inbox, entry, draft, command)
            return
        created = await payments.create_invoice(user.id, draft)
    except InputError as exc:
        await reply_input_error(update, context, exc)
        if exc.code.startswith("amount_"):
            await reply(update, context, "invoice_usage", command=command)
        return
    except NotAllowed:
        await reply(update, context, "not_merchant")
        return
    except GatewayError as exc:
        await reply_gateway_error(
            update, context, gateway or await payments.merchant_gateway(user.id), exc
        )
        return
    try:
        await show_invoice(
            context, chat.id, created, MessageRole.MERCHANT, await language(update, context), user.id
        )
    except Exception:
        # The invoice is live at the gateway: never let the error reply say nothing was
        # charged. The merchant finds it in /invoices.
        log.exception("invoice %s was created but could not be shown", created.id)
        await reply(update, context, "invoice_not_shown", id=created.id)


async def cancel_button(update: Update, context: TillbotContext) -> None:
    """The Cancel button of a merchant's invoice: only that merchant (or an admin) may."""
    parts = callback_parts(update, CALLBACK_CANCEL, 1)
    user = update.effective_user
    invoice_id = parse_invoice_id(parts[0]) if parts is not None else None
    if invoice_id is None or user is None:
        await answer(update)
        return
    lang = await language(update, context)
    payments = context.services.payments
    if not await is_merchant(update, context):
        await answer(update, t(lang, "not_yours"), alert=True)
        return
    try:
        cancelled, at_gateway = await payments.cancel(user.id, invoice_id)
    except NotAllowed:
        await answer(update, t(lang, "not_yours"), alert=True)
        return
    except InputError as exc:
        await answer(update, error_text(lang, exc.code, exc.params, html=False), alert=True)
        return
    title = context.services.view.title(cancelled.gateway)
    key = "cancelled_at_gateway" if at_gateway else "cancelled_locally"
    await answer(update, t(lang, key, gateway=title), alert=not at_gateway)


async def settings_command(update: Update, context: TillbotContext) -> None:
    """/settings: default gateway and language, as buttons."""
    if update.effective_user is None:
        return
    await _show_settings(update, context)


async def settings_button(update: Update, context: TillbotContext) -> None:
    """A /settings button: `set:gw:<name>` or `set:lang:<code|auto>`."""
    parts = callback_parts(update, CALLBACK_SETTINGS, 2)
    user = update.effective_user
    if parts is None or user is None:
        await answer(update)
        return
    services = context.services
    field, value = parts
    if field == "gw" and value in services.gateways and await is_merchant(update, context):
        await services.payments.access.choose_gateway(user.id, value)
    elif field == "lang" and (value in LANGUAGES or value == "auto"):
        await services.payments.access.choose_language(
            user.id, None if value == "auto" else value
        )
    else:
        await answer(update)
        return
    services.forget_prefs(user.id)
    await answer(update, t(await language(update, context), "settings_saved"))
    await _show_settings(update, context)
    if field == "lang":
        await refresh_menu(context.bot, services, user.id)


async def _show_settings(update: Update, context: TillbotContext) -> None:
    services = context.services
    user = update.effective_user
    assert user is not None
    lang = await language(update, context)
    prefs = await services.prefs(user.id)
    merchant = await is_merchant(update, context)
    gateway = await services.payments.merchant_gateway(user.id)
    chosen = prefs.language if prefs.language in LANGUAGES else None
    language_name = LANGUAGE_NAMES[chosen] if chosen else t(lang, "settings_auto")
    if merchant:
        text = t(
            lang, "settings_title", gateway=services.view.title(gateway), language=language_name
        )
    else:
        text = t(lang, "settings_title_customer", language=language_name)
    rows: list[list[InlineKeyboardButton]] = []
    if merchant:
        rows.append(
            [
                InlineKeyboardButton(
                    ("• " if name == gateway else "") + services.view.title(name),
                    callback_data=f"{CALLBACK_SETTINGS}:gw:{name}",
                )
                for name in services.gateways
            ]
        )
    rows.append(
        [
            InlineKeyboardButton(
                ("• " if prefs.language == code else "") + LANGUAGE_NAMES[code],
                callback_data=f"{CALLBACK_SETTINGS}:lang:{code}",
            )
            for code in LANGUAGES
        ]
        + [
            InlineKeyboardButton(
                ("• " if prefs.language is None else "") + t(lang, "settings_auto"),
                callback_data=f"{CALLBACK_SETTINGS}:lang:auto",
            )
        ]
    )
    markup = InlineKeyboardMarkup(rows)
    await show_in_place(update, context, text, markup)
