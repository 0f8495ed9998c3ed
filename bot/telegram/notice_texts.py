"""What a notice says: receipts, merchant and admin notices, in the reader's language."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from html import escape
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.domain.models import (
    FINAL_STATUSES,
    Invoice,
    InvoiceStatus,
    OutboxEvent,
    OutboxItem,
    OutboxKind,
)
from bot.domain.reasons import reason_key
from bot.i18n import DEFAULT_LANGUAGE, format_amount, format_datetime, format_day, t
from bot.telegram.views import CALLBACK_SHOW, ViewContext, quantity_text

_SETTING_RE = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")  # MION_API_KEY, ...
# The statuses a late payment can come after (a late-paid notice names which one).
LATE_PAID_FROM = frozenset(s.value for s in FINAL_STATUSES - {InvoiceStatus.PAID})


def notice_text(
    view: ViewContext,
    item: OutboxItem,
    invoice: Invoice | None,
    language: str,
    merchant: str | None = None,
) -> str | None:
    """The text of a new message the outbox sends (receipt, merchant or admin notice) in
    the reader's language; None when there is nothing to say (its invoice is gone)."""
    payload = item.payload
    if item.event is OutboxEvent.GATEWAY_AUTH:
        return t(
            language,
            "admin_gateway_auth",
            gateway=escape(view.title(str(payload.get("gateway")))),
            message=_auth_detail(str(payload.get("message", "")), language),
        )
    if item.event is OutboxEvent.GATEWAY_SETUP:
        return t(
            language,
            "admin_gateway_setup",
            gateway=escape(view.title(str(payload.get("gateway")))),
            message=escape(str(payload.get("message", ""))),
        )
    if item.event is OutboxEvent.DAILY_SUMMARY:
        return t(
            language,
            "admin_daily_summary",
            date=escape(_day(payload.get("date"), language)),
            lines=escape(str(payload.get("lines", ""))),
        )
    if invoice is None:
        return None
    amount = format_amount(invoice.amount_minor, invoice.currency, language)
    common = {
        "id": invoice.shown_number,
        "amount": amount,
        "gateway": escape(view.title(invoice.gateway)),
        "merchant": escape(
            f"{merchant} ({invoice.merchant_id})" if merchant else str(invoice.merchant_id)
        ),
        "description": escape(invoice.description or "—"),
        "reason": _reason(item, invoice, payload, language),
        "detail": escape(_underpaid_detail(invoice, payload, language)),
        "previous": _previous_status(language, payload.get("previous")),
    }
    common["received"] = escape(quantity_text(str(payload.get("received") or "—"), language))
    common["surplus"] = escape(quantity_text(str(payload.get("surplus") or "—"), language))
    common["surplus_status"] = _surplus_status(language, payload.get("surplus_status"))
    if item.event is OutboxEvent.MISMATCH:
        return t(
            language,
            "admin_mismatch",
            got_payee=escape(str(payload.get("payee") or "—")),
            got_currency=escape(str(payload.get("currency") or "—")),
            got_amount=escape(_minor_text(payload.get("amount_minor"), payload, language)),
            **common,
        )
    if item.kind is OutboxKind.RECEIPT and item.event is OutboxEvent.UNDERPAID:
        return t(language, "customer_underpaid", **common)
    if item.kind is OutboxKind.RECEIPT:
        common["merchant"] = escape(merchant or str(invoice.merchant_id))
        receipt = t(
            language,
            "receipt",
            time=format_datetime(invoice.paid_at, language, view.zone_of(invoice.merchant_id)),
            reference=escape(invoice.gateway_session_id or "—"),
            **common,
        )
        # A sandbox receipt says it is a test: it must never pass for proof of a payment.
        return receipt + "\n" + t(language, "sandbox_label") if invoice.is_sandbox else receipt
    if item.kind is OutboxKind.MERCHANT and item.event is OutboxEvent.PAID:
        return payment_ping(invoice, language)
    if item.event is OutboxEvent.OVERPAID:
        return t(language, "merchant_overpaid", **common)
    if item.event is OutboxEvent.FAILED and payload.get("refund_due"):
        key = "admin_failed_refund" if item.kind is OutboxKind.ADMIN else "merchant_failed_refund"
        return t(language, key, **common)
    prefix = "admin" if item.kind is OutboxKind.ADMIN else "merchant"
    return t(language, f"{prefix}_{item.event.value}", **common)


@dataclass(frozen=True, slots=True)
class DigestEntry:
    """One payment of an admin digest: its outbox row, invoice and merchant's name."""

    item: OutboxItem
    invoice: Invoice
    merchant: str | None


# A digest stays under Telegram's 4,096 characters whatever the names are.
_DIGEST_CHARS = 3_800


def digest_text(
    view: ViewContext, entries: list[DigestEntry], language: str
) -> tuple[str, int]:
    """One message naming each payment once, in the admin's language; and how many of
    `entries` it names (those that fit into one Telegram message, at least one)."""
    lines: list[str] = []
    size = 0
    for entry in entries:
        invoice = entry.invoice
        params: dict[str, object] = {
            "id": invoice.shown_number,
            "amount": format_amount(invoice.amount_minor, invoice.currency, language),
            "gateway": escape(view.title(invoice.gateway)),
            "merchant": escape(
                f"{entry.merchant} ({invoice.merchant_id})"
                if entry.merchant
                else str(invoice.merchant_id)
            ),
        }
        if entry.item.event is OutboxEvent.LATE_PAID:
            params["previous"] = _previous_status(language, entry.item.payload.get("previous"))
            line = t(language, "admin_digest_line_late", **params)
        else:
            line = t(language, "admin_digest_line", **params)
        if lines and size + len(line) + 1 > _DIGEST_CHARS:
            break
        lines.append(line)
        size += len(line) + 1
    head = t(language, "admin_digest", count=len(lines))
    return "\n".join([head, *lines]), len(lines)


def payment_ping(invoice: Invoice, language: str) -> str:
    """The merchant's short new message for a payment: "✅ €4.20 received: Cappuccino"."""
    amount = format_amount(invoice.amount_minor, invoice.currency, language)
    what = escape(invoice.description) if invoice.description else t(
        language, "ping_invoice", id=invoice.shown_number
    )
    key = "payment_ping_sandbox" if invoice.is_sandbox else "payment_ping"
    return t(language, key, amount=amount, what=what)


def show_invoice_keyboard(invoice: Invoice, language: str) -> InlineKeyboardMarkup:
    """The button under a payment ping that shows the invoice (`show:<id>`)."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t(language, "button_show_invoice", id=invoice.shown_number),
                    callback_data=f"{CALLBACK_SHOW}:{invoice.id}",
                )
            ]
        ]
    )
def _auth_detail(message: str, language: str) -> str:
    """The adapter's detail is English: other languages read which settings to check."""
    settings = list(dict.fromkeys(_SETTING_RE.findall(message)))
    if language == DEFAULT_LANGUAGE or not settings:
        return escape(message)
    return t(language, "admin_check_settings", settings=escape(", ".join(settings)))


def _reason(item: OutboxItem, invoice: Invoice, payload: Mapping[str, Any], language: str) -> str:
    """Why it failed in our words and the reader's language; admins also get the gateway's."""
    raw = payload.get("reason") or invoice.failure_reason
    if item.event is not OutboxEvent.FAILED:  # e.g. the customer details a gateway needs
        return escape(str(raw or "—"))
    key = reason_key(raw, payload.get("detail"), raw_status=invoice.raw_status)
    text = t(language, key)
    if item.kind is OutboxKind.ADMIN and raw:
        return t(language, "reason_for_admins", reason=text, raw=escape(str(raw)))
    return text


def _previous_status(language: str, status: object) -> str:
    """What a late-paid invoice had been (expired when the notice does not say)."""
    previous = str(status) if status in LATE_PAID_FROM else InvoiceStatus.EXPIRED.value
    return t(language, f"previous_{previous}")


def _day(value: object, language: str) -> str:
    """The day of a daily summary as the language writes it (as stored when not a day)."""
    try:
        return format_day(date.fromisoformat(str(value)), language)
    except ValueError:
        return str(value or "")


def _surplus_status(language: str, status: object) -> str:
    """MixPay's `surplusStatus` (no, pending, sending, success) in the reader's language."""
    texts = {
        "no": t(language, "surplus_no"),
        "pending": t(language, "surplus_pending"),
        "sending": t(language, "surplus_sending"),
        "success": t(language, "surplus_success"),
    }
    return texts.get(str(status), "—")


def _minor_text(value: object, payload: dict[str, object], language: str) -> str:
    """A mismatching amount in the currency the gateway named ('—' when it named none)."""
    currency = payload.get("currency")
    if isinstance(value, int) and not isinstance(value, bool) and isinstance(currency, str):
        return format_amount(value, currency, language)
    return "—"


def _underpaid_detail(invoice: Invoice, payload: dict[str, object], language: str) -> str:
    received = payload.get("received")
    if isinstance(received, str) and received:
        due = payload.get("due")
        return t(
            language,
            "underpaid_detail",
            paid=quantity_text(received, language),
            amount=quantity_text(due, language) if isinstance(due, str) and due else format_amount(
                invoice.amount_minor, invoice.currency, language
            ),
        )
    paid = payload.get("paid_amount_minor")
    if isinstance(paid, int):
        return t(
            language,
            "underpaid_detail",
            paid=format_amount(paid, invoice.currency, language),
            amount=format_amount(invoice.amount_minor, invoice.currency, language),
        )
    detail = payload.get("detail")
    return str(detail) if detail else t(language, "unknown_detail")
