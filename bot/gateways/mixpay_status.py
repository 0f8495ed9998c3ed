"""How a MixPay `payments_result` answer becomes a `SessionStatus` (the rules are listed in
`bot/gateways/mixpay.py`'s docstring)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bot.domain.money import minor_from_plain
from bot.gateways.base import PaymentState, SessionStatus
from bot.gateways.mixpay_wire import amount_text, currency_of
from bot.gateways.settlement import mixpay_settlement
from bot.times import parse_time

logger = logging.getLogger("bot.gateways.mixpay")

# Documented non-final statuses (`confirming` is from the older notes); anything else that
# is not final is treated the same way, with a warning.
PENDING_STATUSES = frozenset({"unpaid", "confirming", "pending", "auditing"})


def status_of(
    data: Mapping[str, Any], quote_currency: str, now: Callable[[], datetime]
) -> SessionStatus:
    """What a `payments_result` answer says (the rules in `bot/gateways/mixpay.py`'s
    docstring); `now` dates a success MixPay sent without its time."""
    raw_status = str(data["status"])
    quote_asset = data.get("quoteAssetId")
    currency = currency_of(quote_asset) if isinstance(quote_asset, str) else None
    payee = data.get("payeeId")
    symbol = data.get("paymentSymbol")
    common: dict[str, Any] = {
        "raw_status": raw_status,
        "amount_minor": minor_from_plain(data.get("quoteAmount"), quote_currency),
        "currency": currency,
        "payee": payee if isinstance(payee, str) else None,
        "expires_at": parse_time(data.get("expiredAt")),
        "raw": dict(data),
        "strict_match": True,
        "received": amount_text(data.get("paymentAmount"), symbol),
        "due": amount_text(data.get("payableAmount"), data.get("payableSymbol") or symbol),
        "settlement": mixpay_settlement(data, quote_currency),
    }
    if raw_status == "success":
        paid_at = parse_time(data.get("date")) or now()
        surplus = amount_text(data.get("surplusAmount"), symbol)
        status_text = data.get("surplusStatus")
        return SessionStatus(
            state=PaymentState.PAID, paid_at=paid_at, surplus=surplus,
            surplus_status=status_text if surplus and isinstance(status_text, str) else None,
            **common,
        )
    payment = data.get("payment")
    not_fully_paid = isinstance(payment, Mapping) and payment.get("isFullyPaid") is False
    if raw_status == "paid_less" or (raw_status == "pending" and not_fully_paid):
        return SessionStatus(
            state=PaymentState.UNDERPAID, processing=True,
            detail=common["received"], **common,
        )
    if raw_status == "failed":
        failure_code = str(data.get("failureCode") or "").strip()
        reason = str(data.get("failureReason") or "").strip()
        reason = reason or (f"failure code {failure_code}" if failure_code else "failed")
        if common["received"] is not None:
            state = PaymentState.FAILED  # money arrived: a refund is due, never "expired"
        elif failure_code == "40000":
            state = PaymentState.EXPIRED
        elif failure_code == "40032":
            state = PaymentState.CANCELLED
        else:
            state = PaymentState.FAILED
        return SessionStatus(
            state=state, failure_reason=reason, detail=failure_code or None,
            refund_due=common["received"] is not None, **common,
        )
    if raw_status not in PENDING_STATUSES:
        logger.warning("mixpay: unknown payment status %r, treated as pending", raw_status)
    return SessionStatus(state=PaymentState.PENDING, processing=True, **common)
