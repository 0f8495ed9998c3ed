"""What an invoice looks like in Telegram: texts, captions and keyboards, from the stored
invoice alone, so every message of an invoice can be re-rendered at any time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from decimal import Decimal
from html import escape, unescape
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from bot.domain.models import Invoice, InvoiceKind, InvoiceStatus, MessageRole
from bot.domain.money import btc_rate, display_sats
from bot.domain.reasons import reason_key
from bot.i18n import (
    format_amount,
    format_clock,
    format_datetime,
    format_decimal,
    format_whole_amount,
    t,
)
from bot.telegram.qr import lightning_uri, onchain_uri, qr_png
from bot.telegram.status_image import with_sandbox_band
from bot.times import parse_time

CALLBACK_SIMULATE = "sim"
CALLBACK_CANCEL = "cancel"
CALLBACK_CANCEL_CONFIRM = "cxl"  # cxl:<id>:y (cancel it) or cxl:<id>:n (keep it)
CALLBACK_REFRESH = "chk"
CALLBACK_SHOW = "show"
CALLBACK_PAGE = "page"
CALLBACK_SETTINGS = "set"
CALLBACK_MERCHANT = "merch"
CALLBACK_NOOP = "noop"
CALLBACK_AMOUNT = "amt"
CALLBACK_LINK_QR = "lqr"
CALLBACK_RESEND = "rcpt"  # the merchant sends a paid invoice's receipt again
CALLBACK_LINK = "lnk"  # a payment link's buttons: lnk:off:<token>, lnk:card:<token>
CALLBACK_REFUND = "rfd"  # rfd:cancel:<refund id>

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
    app_url: str | None = None  # the counter Mini App ({PUBLIC_URL}/app/), when served
    time_zone: str = "UTC"  # TIMEZONE: the shops' zone unless one is set in /settings
    # Each shop's own time zone (kept current by the books service).
    zones: Mapping[int, ZoneInfo] = field(default_factory=dict)

    def title(self, gateway: str) -> str:
        return self.gateway_titles.get(gateway, gateway)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def default_zone(self) -> ZoneInfo:
        return self.zone

    def zone_of(self, merchant_id: int) -> ZoneInfo:
        """The shop's time zone: its /settings choice, else TIMEZONE."""
        return self.zones.get(merchant_id) or self.zone


def share_link(invoice: Invoice, bot_username: str) -> str:
    return f"https://t.me/{bot_username}?start={invoice.public_token}"


def share_url(invoice: Invoice, language: str, bot_username: str) -> str:
    """Telegram's share dialog (https://t.me/share/url): pick a chat, the link goes there
    with a line saying what it is."""
    amount = unescape(format_amount(invoice.amount_minor, invoice.currency, language))
    text = t(language, "share_text", amount=amount, description=invoice.description or "")
    link = quote(share_link(invoice, bot_username), safe="")
    return f"https://t.me/share/url?url={link}&text={quote(text.strip(), safe='')}"


_QUANTITY_RE = re.compile(r"^([0-9]+)(?:\.([0-9]+))? (\S+)$")


def quantity_text(text: str, language: str) -> str:
    """A gateway's amount text ('5.5 USDT', '0.00008333 BTC') with the number written as the
    language writes it ('5,5 USDT' in German), every digit kept; other text as it is."""
    match = _QUANTITY_RE.match(text.strip())
    if match is None:
        return text
    whole, frac, unit = match.groups()
    value = Decimal(f"{whole}.{frac or '0'}")
    return f"{format_decimal(value, language, places=len(frac or ''))} {unit}"


def status_label(invoice: Invoice, language: str) -> str:
    amount = format_amount(invoice.amount_minor, invoice.currency, language)
    if invoice.status is InvoiceStatus.PENDING and invoice.underpaid:
        received = invoice.payment.get("received")
        if isinstance(received, str) and received:
            due = invoice.payment.get("due")
            return t(
                language,
                "status_underpaid",
                paid=escape(quantity_text(received, language)),
                amount=escape(quantity_text(due, language))
                if isinstance(due, str) and due
                else amount,
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
    """Whole sats as the language groups them ('6,333', '6.333'): rounded for display."""
    return format_decimal(Decimal(display_sats(amount_msat)), language, places=0)


def rate_line(invoice: Invoice, amount_msat: int, language: str) -> list[str]:
    """The rate the sats were priced at ('1 BTC = €66,320'), when there are sats."""
    rate = btc_rate(invoice.amount_minor, invoice.currency, amount_msat)
    if rate is None:
        return []
    return [
        t(language, "sats_rate", rate=format_whole_amount(rate, invoice.currency, language))
    ]


def payment_lines(invoice: Invoice, language: str, tz: tzinfo = UTC) -> list[str]:
    """The Lightning or on-chain part of a pending invoice (what the QR encodes)."""
    payment = invoice.payment
    if invoice.kind is InvoiceKind.LIGHTNING and payment.get("compliance_blocked"):
        fields = payment.get("missing_fields")
        named = ", ".join(str(f) for f in fields) if isinstance(fields, list) and fields else "—"
        return [t(language, "pos_compliance_blocked", fields=escape(named))]
    if invoice.kind is InvoiceKind.LIGHTNING and payment.get("amount_msat") is not None:
        expires = parse_time(payment.get("attempt_expires_at"))
        msat = int(payment["amount_msat"])
        return [
            t(
                language,
                "pos_caption_lines",
                sats=sats_text(msat, language),
                time=format_clock(expires, language, tz),
            ),
            *rate_line(invoice, msat, language),
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
    if role is not MessageRole.MERCHANT and invoice.status is InvoiceStatus.CANCELLED:
        # The customer is told one plain sentence, not how the gateway took the cancel.
        lines = [t(language, "customer_cancelled", id=invoice.shown_number, amount=amount)]
        if invoice.is_sandbox:
            lines.append(t(language, "sandbox_label"))
        return "\n".join(lines)
    lines = [
        t(language, "invoice_title", id=invoice.shown_number),
        t(language, "invoice_amount", amount=amount),
    ]
    if description:
        lines.append(t(language, "invoice_description", description=escape(description)))
    lines.append(t(language, "invoice_status", status=status_label(invoice, language)))
    if invoice.status is InvoiceStatus.PAID:
        paid_at = format_datetime(invoice.paid_at, language, ctx.zone_of(invoice.merchant_id))
        lines.append(t(language, "invoice_paid_at", time=paid_at))
    elif invoice.status is InvoiceStatus.PENDING:
        lines += payment_lines(invoice, language, ctx.zone_of(invoice.merchant_id))
        if invoice.kind is not InvoiceKind.LIGHTNING:
            expires = format_datetime(
                invoice.expires_at, language, ctx.zone_of(invoice.merchant_id)
            )
            lines.append(t(language, "invoice_expires", time=expires))
    elif invoice.status is InvoiceStatus.FAILED and invoice.failure_reason:
        # Our own words in the reader's language, never the gateway's English.
        key = reason_key(invoice.failure_reason, raw_status=invoice.raw_status)
        lines.append(t(language, "failure_reason", reason=t(language, key)))
    elif invoice.status is InvoiceStatus.CANCELLED and invoice.raw_status in CANCEL_NOTES:
        note = CANCEL_NOTES[invoice.raw_status]
        lines.append(t(language, note, gateway=escape(ctx.title(invoice.gateway))))
    lines.append(t(language, "invoice_gateway", gateway=escape(ctx.title(invoice.gateway))))
    if invoice.status is InvoiceStatus.PENDING and invoice.gateway in ctx.simulatable:
        lines.append(t(language, "sandbox_note"))
    elif invoice.is_sandbox:  # in every state: a test is never mistaken for money
        lines.append(t(language, "sandbox_label"))
    if role is MessageRole.MERCHANT and invoice.status is InvoiceStatus.PENDING:
        lines.append(t(language, "invoice_share", link=share_link(invoice, ctx.bot_username)))
    return "\n".join(lines)


def app_link(invoice: Invoice, ctx: ViewContext) -> str | None:
    """The Mini App showing this invoice only (its public token is the key)."""
    return f"{ctx.app_url}?i={invoice.public_token}" if ctx.app_url else None


def open_button(
    invoice: Invoice, language: str, ctx: ViewContext, *, private: bool
) -> InlineKeyboardButton | None:
    """Open: the Mini App (a `web_app` button, which Telegram allows in private chats
    only), else a link to the bot's private chat, where the invoice has that button."""
    link = app_link(invoice, ctx)
    if link is None:
        return None
    label = t(language, "button_open_app")
    if private:
        return InlineKeyboardButton(label, web_app=WebAppInfo(link))
    return InlineKeyboardButton(label, url=share_link(invoice, ctx.bot_username))


def invoice_keyboard(
    invoice: Invoice,
    language: str,
    role: MessageRole,
    ctx: ViewContext,
    *,
    private: bool = False,
) -> InlineKeyboardMarkup | None:
    """Open (the Mini App), Pay (URL), Simulate payment (sandbox), Cancel (merchant) while
    pending; once paid, the merchant's Resend receipt; none otherwise. `private`: the
    message is in a private chat."""
    if invoice.status is InvoiceStatus.PAID and role is MessageRole.MERCHANT:
        button = InlineKeyboardButton(
            t(language, "button_resend_receipt"), callback_data=f"{CALLBACK_RESEND}:{invoice.id}"
        )
        return InlineKeyboardMarkup([[button]])
    if invoice.status is not InvoiceStatus.PENDING:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    opener = open_button(invoice, language, ctx, private=private and role is not MessageRole.INLINE)
    if opener is not None:
        rows.append([opener])
    amount = format_amount(invoice.amount_minor, invoice.currency, language)
    first: list[InlineKeyboardButton] = []
    if invoice.checkout_url:
        first.append(
            InlineKeyboardButton(t(language, "button_pay", amount=amount), url=invoice.checkout_url)
        )
    if role is MessageRole.MERCHANT:  # next to Pay: send the link to the customer's chat
        first.append(
            InlineKeyboardButton(
                t(language, "button_share"), url=share_url(invoice, language, ctx.bot_username)
            )
        )
    if first:
        rows.append(first)
    if role is MessageRole.MERCHANT and invoice.kind is InvoiceKind.CHECKOUT:
        rows.append(
            [
                InlineKeyboardButton(
                    t(language, "button_link_qr"), callback_data=f"{CALLBACK_LINK_QR}:{invoice.id}"
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


def cancel_confirm_keyboard(invoice: Invoice, language: str) -> InlineKeyboardMarkup:
    """Cancel asks first: the question, then Yes / No (the message itself is unchanged)."""
    amount = format_amount(invoice.amount_minor, invoice.currency, language)
    question = t(language, "cancel_confirm", id=invoice.shown_number, amount=amount)
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(question, callback_data=f"{CALLBACK_NOOP}:cancel")],
            [
                InlineKeyboardButton(
                    t(language, "button_cancel_yes"),
                    callback_data=f"{CALLBACK_CANCEL_CONFIRM}:{invoice.id}:y",
                ),
                InlineKeyboardButton(
                    t(language, "button_cancel_no"),
                    callback_data=f"{CALLBACK_CANCEL_CONFIRM}:{invoice.id}:n",
                ),
            ],
        ]
    )


def has_qr(invoice: Invoice) -> bool:
    payment = invoice.payment
    return (invoice.kind is InvoiceKind.LIGHTNING and bool(payment.get("ln_invoice"))) or (
        invoice.kind is InvoiceKind.ONCHAIN and bool(payment.get("address"))
    )


async def render_qr(invoice: Invoice, language: str = "en") -> bytes:
    """`qr_for` in a worker thread: a QR takes ~20 ms of CPU, too long for the event loop."""
    return await asyncio.to_thread(qr_for, invoice, language)


def qr_for(invoice: Invoice, language: str = "en") -> bytes:
    """The PNG the customer scans: the Lightning invoice or the on-chain payment; a sandbox
    invoice's QR carries a band saying it is a test."""
    png = _qr_of(invoice)
    return with_sandbox_band(png, language) if invoice.is_sandbox else png


def _qr_of(invoice: Invoice) -> bytes:
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
