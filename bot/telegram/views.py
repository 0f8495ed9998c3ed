"""What an invoice looks like in Telegram: texts, captions and keyboards, from the stored
invoice alone, so every message of an invoice can be re-rendered at any time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape, unescape
from typing import Any
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.domain.models import Invoice, InvoiceKind, InvoiceStatus, MessageRole
from bot.i18n import format_amount, format_clock, format_datetime, format_decimal, t
from bot.telegram.qr import lightning_uri, onchain_uri, qr_png
from bot.times import parse_time

CALLBACK_SIMULATE = "sim"
CALLBACK_CANCEL = "cancel"
CALLBACK_REFRESH = "chk"
CALLBACK_SHOW = "show"
CALLBACK_PAGE = "page"
CALLBACK_SETTINGS = "set"
CALLBACK_MERCHANT = "merch"
CALLBACK_NOOP = "noop"
CALLBACK_RESEND = "rcpt"  # the merchant sends a paid invoice's receipt again
CALLBACK_LINK = "lnk"  # a payment link's buttons: lnk:off:<token>, lnk:card:<token>

# Telegram's limits, in UTF-16 code units after entity parsing.
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
_TAG_RE = re.compile(r"<[^>]*>")

# How a merchant's cancel went (the raw status `PaymentsService.cancel` records): the
# invoice message says whether the gateway cancelled the session too.
CANCEL_NOTES = {"cancelled": "cancelled_at_gateway", "cancelled_locally": "cancelled_locally"}


@dataclass(frozen=True, slots=True)
class ViewContext:
    """What views need beyond the invoice: the bot's username and the gateways' titles."""

    bot_username: str
    gateway_titles: Mapping[str, str] = field(default_factory=dict)
    simulatable: frozenset[str] = frozenset()
    time_zone: str = "UTC"  # TIMEZONE: receipts show times in the shop's zone

    def title(self, gateway: str) -> str:
        return self.gateway_titles.get(gateway, gateway)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def share_link(invoice: Invoice, bot_username: str) -> str:
    return f"https://t.me/{bot_username}?start={invoice.public_token}"


def status_label(invoice: Invoice, language: str) -> str:
    amount = format_amount(invoice.amount_minor, invoice.currency, language)
    if invoice.status is InvoiceStatus.PENDING and invoice.underpaid:
        received = invoice.payment.get("received")
        if isinstance(received, str) and received:
            due = invoice.payment.get("due")
            return t(
                language,
                "status_underpaid",
                paid=escape(received),
                amount=escape(due) if isinstance(due, str) and due else amount,
            )
        return t(language, "status_underpaid_unknown", amount=amount)
    if invoice.status is InvoiceStatus.PAID and invoice.late:
        return t(language, "status_paid_late")
    return t(language, f"status_{invoice.status.value}")


def error_text(language: str, code: str, params: Mapping[str, object], *, html: bool = True) -> str:
    """The text of an `InputError` (`err_<code>`), statuses named in the language; `html`
    escapes the values (False for plain texts such as button answers)."""
    values: dict[str, object] = {
        key: value if isinstance(value, int) else escape(str(value)) if html else str(value)
        for key, value in params.items()
    }
    for key, value in params.items():
        if isinstance(value, Decimal):  # a limit such as the largest amount, as people write it
            values[key] = format_decimal(value, language, places=_places(value))
    status = params.get("status")
    if isinstance(status, str) and status in set(InvoiceStatus):
        values["status"] = t(language, f"status_{status}")
    return t(language, f"err_{code}", **values)


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def sats_text(amount_msat: int, language: str) -> str:
    sats = Decimal(amount_msat) / 1000
    places = 0 if amount_msat % 1000 == 0 else 3
    return format_decimal(sats, language, places=places)


def payment_lines(invoice: Invoice, language: str) -> list[str]:
    """The Lightning or on-chain part of a pending invoice (what the QR encodes)."""
    payment = invoice.payment
    if invoice.kind is InvoiceKind.LIGHTNING and payment.get("compliance_blocked"):
        fields = payment.get("missing_fields")
        named = ", ".join(str(f) for f in fields) if isinstance(fields, list) and fields else "—"
        return [t(language, "pos_compliance_blocked", fields=escape(named))]
    if invoice.kind is InvoiceKind.LIGHTNING and payment.get("amount_msat") is not None:
        expires = parse_time(payment.get("attempt_expires_at"))
        return [
            t(
                language,
                "pos_caption_lines",
                sats=sats_text(int(payment["amount_msat"]), language),
                time=format_clock(expires, language),
            )
        ]
    if invoice.kind is InvoiceKind.ONCHAIN and payment.get("address"):
        lines = [
            t(
                language,
                "onchain_lines",
                amount=escape(str(payment.get("crypto_amount", ""))),
                symbol=escape(str(payment.get("crypto_symbol", ""))),
                address=escape(str(payment["address"])),
            )
        ]
        # Without its memo or destination tag such a transfer cannot be credited.
        if payment.get("memo"):
            lines.append(t(language, "onchain_memo", memo=escape(str(payment["memo"]))))
        if payment.get("tag"):
            lines.append(t(language, "onchain_tag", tag=escape(str(payment["tag"]))))
        return lines
    checkout = payment.get("checkout_amount_minor")
    commission = payment.get("commission_minor")
    if (
        invoice.kind is InvoiceKind.CHECKOUT
        and isinstance(checkout, int)
        and isinstance(commission, int)
        and checkout != invoice.amount_minor
    ):
        # What the customer pays at the gateway's checkout (MiraclePay adds its commission).
        return [
            t(
                language,
                "checkout_amount_line",
                amount=format_amount(checkout, invoice.currency, language),
                commission=format_amount(commission, invoice.currency, language),
            )
        ]
    return []


def utf16_units(text: str) -> int:
    """Telegram's length of a text: UTF-16 code units (an emoji is often 2)."""
    return len(text.encode("utf-16-le")) // 2


def plain_units(html_text: str) -> int:
    """The UTF-16 length of our HTML after Telegram's entity parsing (tags gone, `&amp;` one
    character): what Telegram's 4096 and 1024 limits count."""
    return utf16_units(unescape(_TAG_RE.sub("", html_text)))


def cut_to_units(text: str, units: int) -> str:
    """`text` cut to at most `units` UTF-16 code units, never inside a surrogate pair, with
    an ellipsis when anything was cut."""
    if utf16_units(text) <= units:
        return text
    kept, used = [], 0
    for char in text:
        size = 2 if ord(char) > 0xFFFF else 1
        if used + size > units - 1:
            break
        kept.append(char)
        used += size
    return "".join(kept) + "…" if units > 0 else ""


def invoice_text(invoice: Invoice, language: str, role: MessageRole, ctx: ViewContext) -> str:
    """The invoice message (or photo caption), for the merchant or a customer, within
    Telegram's length limit: a too long description is cut (as plain text, before escaping)."""
    limit = TEXT_LIMIT if invoice.kind is InvoiceKind.CHECKOUT else CAPTION_LIMIT
    text = _invoice_text(invoice, language, role, ctx, invoice.description)
    if plain_units(text) <= limit or not invoice.description:
        return text
    line = plain_units(t(language, "invoice_description", description="")) + 1  # + newline
    room = limit - plain_units(_invoice_text(invoice, language, role, ctx, "")) - line
    description = cut_to_units(invoice.description, room)
    return _invoice_text(invoice, language, role, ctx, description)


def _invoice_text(
    invoice: Invoice, language: str, role: MessageRole, ctx: ViewContext, description: str
) -> str:
    amount = format_amount(invoice.amount_minor, invoice.currency, language)
    lines = [
        t(language, "invoice_title", id=invoice.id),
        t(language, "invoice_amount", amount=amount),
    ]
    if description:
        lines.append(t(language, "invoice_description", description=escape(description)))
    lines.append(t(language, "invoice_status", status=status_label(invoice, language)))
    if invoice.status is InvoiceStatus.PAID:
        paid_at = format_datetime(invoice.paid_at, language)
        lines.append(t(language, "invoice_paid_at", time=paid_at))
    elif invoice.status is InvoiceStatus.PENDING:
        lines += payment_lines(invoice, language)
        if invoice.kind is not InvoiceKind.LIGHTNING:
            expires = format_datetime(invoice.expires_at, language)
            lines.append(t(language, "invoice_expires", time=expires))
    elif invoice.status is InvoiceStatus.FAILED and invoice.failure_reason:
        lines.append(t(language, "failure_reason", reason=escape(invoice.failure_reason)))
    elif invoice.status is InvoiceStatus.CANCELLED and invoice.raw_status in CANCEL_NOTES:
        note = CANCEL_NOTES[invoice.raw_status]
        lines.append(t(language, note, gateway=escape(ctx.title(invoice.gateway))))
    lines.append(t(language, "invoice_gateway", gateway=escape(ctx.title(invoice.gateway))))
    if invoice.status is InvoiceStatus.PENDING and invoice.gateway in ctx.simulatable:
        lines.append(t(language, "sandbox_note"))
    if role is MessageRole.MERCHANT and invoice.status is InvoiceStatus.PENDING:
        lines.append(t(language, "invoice_share", link=share_link(invoice, ctx.bot_username)))
    return "\n".join(lines)


def invoice_keyboard(
    invoice: Invoice, language: str, role: MessageRole, ctx: ViewContext
) -> InlineKeyboardMarkup | None:
    """Pay (URL), Simulate payment (sandbox), Cancel (merchant) while pending; once paid,
    the merchant's Resend receipt; none otherwise."""
    if invoice.status is InvoiceStatus.PAID and role is MessageRole.MERCHANT:
        button = InlineKeyboardButton(
            t(language, "button_resend_receipt"), callback_data=f"{CALLBACK_RESEND}:{invoice.id}"
        )
        return InlineKeyboardMarkup([[button]])
    if invoice.status is not InvoiceStatus.PENDING:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    amount = format_amount(invoice.amount_minor, invoice.currency, language)
    if invoice.checkout_url:
        rows.append(
            [
                InlineKeyboardButton(
                    t(language, "button_pay", amount=amount), url=invoice.checkout_url
                )
            ]
        )
    if invoice.gateway in ctx.simulatable:
        rows.append(
            [
                InlineKeyboardButton(
                    t(language, "button_simulate"),
                    callback_data=f"{CALLBACK_SIMULATE}:{invoice.public_token}",
                )
            ]
        )
    if role is MessageRole.MERCHANT:
        rows.append(
            [
                InlineKeyboardButton(
                    t(language, "button_cancel"), callback_data=f"{CALLBACK_CANCEL}:{invoice.id}"
                )
            ]
        )
    elif not invoice.checkout_url and invoice.gateway not in ctx.simulatable:
        rows.append(
            [
                InlineKeyboardButton(
                    t(language, "button_refresh"),
                    callback_data=f"{CALLBACK_REFRESH}:{invoice.public_token}",
                )
            ]
        )
    return InlineKeyboardMarkup(rows) if rows else None


def has_qr(invoice: Invoice) -> bool:
    payment = invoice.payment
    return (invoice.kind is InvoiceKind.LIGHTNING and bool(payment.get("ln_invoice"))) or (
        invoice.kind is InvoiceKind.ONCHAIN and bool(payment.get("address"))
    )


async def render_qr(invoice: Invoice) -> bytes:
    """`qr_for` in a worker thread: a QR takes ~20 ms of CPU, too long for the event loop."""
    return await asyncio.to_thread(qr_for, invoice)


def qr_for(invoice: Invoice) -> bytes:
    """The PNG the customer scans: the Lightning invoice or the on-chain payment."""
    payment: Mapping[str, Any] = invoice.payment
    if invoice.kind is InvoiceKind.LIGHTNING:
        return qr_png(lightning_uri(str(payment["ln_invoice"])))
    return qr_png(
        onchain_uri(
            str(payment["address"]),
            _opt(payment.get("crypto_amount")),
            _opt(payment.get("crypto_symbol")),
            memo=_opt(payment.get("memo")),
            tag=_opt(payment.get("tag")),
        )
    )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
