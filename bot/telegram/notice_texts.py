"""What a notice says: receipts, merchant and admin notices, in the reader's language."""

from __future__ import annotations

from datetime import date
from html import escape

from bot.domain.models import (
    FINAL_STATUSES,
    Invoice,
    InvoiceStatus,
    OutboxEvent,
    OutboxItem,
    OutboxKind,
)
from bot.i18n import format_amount, format_datetime, format_day, t
from bot.telegram.views import ViewContext

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
            message=escape(str(payload.get("message", ""))),
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
        "id": invoice.id,
        "amount": amount,
        "gateway": escape(view.title(invoice.gateway)),
        "merchant": escape(
            f"{merchant} ({invoice.merchant_id})" if merchant else str(invoice.merchant_id)
        ),
        "description": escape(invoice.description or "—"),
        "reason": escape(str(payload.get("reason") or invoice.failure_reason or "—")),
        "detail": escape(_underpaid_detail(invoice, payload, language)),
        "previous": _previous_status(language, payload.get("previous")),
    }
    common["received"] = escape(str(payload.get("received") or "—"))
    common["surplus"] = escape(str(payload.get("surplus") or "—"))
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
        return t(
            language,
            "receipt",
            time=format_datetime(invoice.paid_at, language),
            reference=escape(invoice.gateway_session_id or "—"),
            **common,
        )
    if item.event is OutboxEvent.OVERPAID:
        return t(language, "merchant_overpaid", **common)
    if item.event is OutboxEvent.FAILED and payload.get("refund_due"):
        key = "admin_failed_refund" if item.kind is OutboxKind.ADMIN else "merchant_failed_refund"
        return t(language, key, **common)
    prefix = "admin" if item.kind is OutboxKind.ADMIN else "merchant"
    return t(language, f"{prefix}_{item.event.value}", **common)


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
            paid=received,
            amount=due if isinstance(due, str) and due else format_amount(
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
