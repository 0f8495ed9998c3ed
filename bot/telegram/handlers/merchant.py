"""Merchant commands: /start, /help, /invoice, /pos, the Cancel button, /settings."""

from __future__ import annotations

import logging
from contextlib import suppress
from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.domain.drafts import InputError, InvoiceDraft, NotAllowed, parse_invoice_args
from bot.domain.links import LINK_PREFIX, RECEIPT_PREFIX, token_in
from bot.domain.models import InvoiceKind, InvoiceStatus, MessageRole
from bot.domain.staff import JOIN_PREFIX, Action
from bot.gateways.base import GatewayError
from bot.i18n import LANGUAGE_NAMES, LANGUAGES, format_decimal, group_separator, t
from bot.ids import parse_invoice_id
from bot.telegram.context import TillbotContext
from bot.telegram.handlers import books, links, staff
from bot.telegram.handlers.common import (
    answer,
    callback_parts,
    guard,
    is_admin,
    is_merchant,
    language,
    may,
    refuse_role,
    reply,
    reply_gateway_error,
    reply_input_error,
    show_in_place,
    show_invoice,
)
from bot.telegram.handlers.counter import tips_line, tips_setting
from bot.telegram.handlers.creating import create_in_place
from bot.telegram.handlers.customer import open_invoice
from bot.telegram.handlers.menu import Role, available, help_lines, refresh_menu, role_of
from bot.telegram.views import (
    CALLBACK_CANCEL,
    CALLBACK_CANCEL_CONFIRM,
    CALLBACK_SETTINGS,
    cancel_confirm_keyboard,
    error_text,
    invoice_keyboard,
)

log = logging.getLogger(__name__)

HELP_PAYLOAD = "help"  # t.me/<bot>?start=help (the inline mode's help button)


NO_GATEWAY_FOR = {
    InvoiceKind.LIGHTNING: "err_no_pos_gateway",
    InvoiceKind.ONCHAIN: "err_no_onchain_gateway",
}

# What an admin sets for a kind of payment (named to admins only, never to merchants).
SETUP_OF = {
    InvoiceKind.LIGHTNING: "MION_API_KEY (or SANDBOX_ENABLED=true)",
    InvoiceKind.ONCHAIN: "MIXPAY_PAYEE_ID, MIXPAY_SETTLEMENT_ASSET_ID, MIXPAY_PAYMENT_ASSET_ID",
}


async def start(update: Update, context: TillbotContext) -> None:
    """Welcome; with a deep-link payload, show that invoice to the customer."""
    if context.args == [HELP_PAYLOAD]:
        await help_command(update, context)
        return
    if context.args:
        payload = context.args[0]
        if payload.startswith(JOIN_PREFIX):
            await staff.join(update, context, payload.removeprefix(JOIN_PREFIX))
        elif (token := token_in(payload, LINK_PREFIX)) is not None:
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
    parts.append(
        t(lang, "help_commands") + "\n" + help_lines(role, lang, available(services, role))
    )
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
    if role in (Role.CASHIER, Role.MANAGER):  # what their role in the shop lets them do
        parts.append(t(lang, f"staff_can_{role.value}"))
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


async def _create(
    update: Update,
    context: TillbotContext,
    kind: InvoiceKind,
    command: str,
    words: list[str] | None = None,
) -> None:
    """Create and show an invoice from the command's words (or `words`, from a button)."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return
    if await guard(update, context, Action.SELL, command) is None:
        return
    payments = context.services.payments
    args = list(context.args or []) if words is None else words
    gateway = None
    if kind is not InvoiceKind.CHECKOUT:
        gateway = payments.gateway_for_kind(kind)
        if gateway is None:
            text = t(await language(update, context), NO_GATEWAY_FOR[kind])
            if is_admin(update, context):  # the setting names are for admins only
                detail = t(
                    await language(update, context), "detail_for_admins", detail=SETUP_OF[kind]
                )
                text += "\n" + detail
            await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)
            return
    elif args and args[0].lower() in payments.gateways:
        gateway = args.pop(0).lower()
    lang = await language(update, context)
    try:
        draft = parse_invoice_args(args, kind, group_separator(lang))
        draft = InvoiceDraft(draft.amount_text, draft.description, draft.currency, gateway, kind)
        inbox = context.services.inbox
        entry = await inbox.entry(update.update_id) if inbox is not None else None
        if inbox is not None and entry is not None:
            await create_in_place(update, context, inbox, entry, draft, command)
            return
        created = await payments.create_invoice(user.id, draft)
    except InputError as exc:  # one reply per mistake: what is wrong, and how to write it
        usage = exc.code.startswith("amount_") or exc.code == "two_currencies"
        await reply_input_error(update, context, exc, usage=command if usage else None)
        return
    except NotAllowed:
        await refuse_role(update, context, command, await payments.access.seat(user.id))
        return
    except GatewayError as exc:
        await reply_gateway_error(
            update, context, gateway or await payments.merchant_gateway(user.id), exc
        )
        return
    try:
        await show_invoice(
            context,
            chat.id,
            created,
            MessageRole.MERCHANT,
            await language(update, context),
            user.id,
        )
    except Exception:
        # The invoice is live at the gateway: never let the error reply say nothing was
        # charged. The merchant finds it in /invoices.
        log.exception("invoice %s was created but could not be shown", created.id)
        await reply(update, context, "invoice_not_shown", id=created.shown_number)


async def cancel_button(update: Update, context: TillbotContext) -> None:
    """The Cancel button of a merchant's invoice: only that merchant (or an admin) may. It
    asks first ("Cancel invoice #12 of €4.20?" Yes / No) in the message's buttons."""
    parts = callback_parts(update, CALLBACK_CANCEL, 1)
    user, query = update.effective_user, update.callback_query
    invoice_id = parse_invoice_id(parts[0]) if parts is not None else None
    if invoice_id is None or user is None or query is None:
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
    if invoice.status is not InvoiceStatus.PENDING:
        params = {"status": invoice.status.value}
        await answer(update, error_text(lang, "not_pending", params, html=False), alert=True)
        return
    await answer(update)
    with suppress(BadRequest):  # pressed twice: the question is already there
        await query.edit_message_reply_markup(cancel_confirm_keyboard(invoice, lang))


async def cancel_confirm_button(update: Update, context: TillbotContext) -> None:
    """Yes (`cxl:<id>:y`) cancels; No (`cxl:<id>:n`) puts the invoice's buttons back."""
    parts = callback_parts(update, CALLBACK_CANCEL_CONFIRM, 2)
    user, query = update.effective_user, update.callback_query
    invoice_id = parse_invoice_id(parts[0]) if parts is not None else None
    if parts is None or invoice_id is None or user is None or query is None:
        await answer(update)
        return
    lang = await language(update, context)
    payments = context.services.payments
    if not await is_merchant(update, context):
        await answer(update, t(lang, "not_yours"), alert=True)
        return
    if parts[1] != "y":
        try:
            invoice = await payments.invoice_of(user.id, invoice_id)
        except NotAllowed:
            await answer(update, t(lang, "not_yours"), alert=True)
            return
        await answer(update, t(lang, "cancel_kept"))
        private = query.message is not None and query.message.chat.id > 0
        keyboard = invoice_keyboard(
            invoice, lang, MessageRole.MERCHANT, context.services.view, private=private
        )
        with suppress(BadRequest):  # the outbox re-rendered it meanwhile
            await query.edit_message_reply_markup(keyboard)
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
    if context.args and context.args[0].lower() == "tips":
        await tips_setting(update, context, list(context.args[1:]))
        return
    if context.args:  # /settings timezone Europe/Berlin, /settings closing 22
        await books.shop_settings(update, context, context.args)
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
    if field == "gw" and value in services.gateways and await may(
        update, context, Action.SHOP_SETTINGS
    ):
        await services.payments.access.choose_gateway(user.id, value)
    elif field == "lang" and (value in LANGUAGES or value == "auto"):
        await services.payments.access.choose_language(user.id, None if value == "auto" else value)
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
    merchant = await may(update, context, Action.SHOP_SETTINGS)  # the owner: shop fields
    gateway = await services.payments.merchant_gateway(user.id)
    chosen = prefs.language if prefs.language in LANGUAGES else None
    language_name = LANGUAGE_NAMES[chosen] if chosen else t(lang, "settings_auto")
    if merchant:
        text = t(
            lang, "settings_title", gateway=services.view.title(gateway), language=language_name
        )
        text += "\n" + await tips_line(services, user.id, lang)
        text += "\n" + await books.shop_lines(context, user.id, lang)
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
