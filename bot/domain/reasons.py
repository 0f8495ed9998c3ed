"""Why a payment failed, as a key of our own catalogue: gateways say it in English
("Wrong asset paid", "failure code 40024", "Payment overtime"), merchants and customers
read it in their language; admins get the gateway's words as well."""

from __future__ import annotations

import re

# MixPay's documented failure codes and reasons (docs/GATEWAYS.md), MiraclePay's statuses.
_BY_CODE = {
    "40000": "reason_overtime",
    "40020": "reason_wrong_asset",
    "40021": "reason_double_payment",
    "40024": "reason_wrong_amount",
    "40025": "reason_volatility",
    "40032": "reason_cancelled",
    "10095": "reason_rejected",
}
_BY_TEXT = {
    "payment overtime": "reason_overtime",
    "wrong asset paid": "reason_wrong_asset",
    "double payment": "reason_double_payment",
    "wrong amount paid": "reason_wrong_amount",
    "too much market volatility": "reason_volatility",
    "payment cancelled": "reason_cancelled",
    "payment rejected during review": "reason_rejected",
    "the invoice could not be created": "reason_not_created",
    "expired": "reason_overtime",
    "cancelled": "reason_cancelled",
    "canceled": "reason_cancelled",
}
REASON_KEYS = frozenset({*_BY_CODE.values(), *_BY_TEXT.values(), "reason_other"})
_CODE_RE = re.compile(r"\b([0-9]{5})\b")


def reason_key(reason: object, code: object = None, *, raw_status: str | None = None) -> str:
    """The catalogue key of a gateway's failure (`reason_other` when it is not known)."""
    if raw_status == "create_failed":
        return "reason_not_created"
    for value in (code, reason):
        if isinstance(value, str):
            found = _CODE_RE.search(value)
            if found and found.group(1) in _BY_CODE:
                return _BY_CODE[found.group(1)]
    if isinstance(reason, str):
        text = reason.strip().rstrip(".").lower()
        text = text.split(": ", 1)[1] if text.startswith(("miraclepay: ", "mixpay: ")) else text
        if text in _BY_TEXT:
            return _BY_TEXT[text]
    return "reason_other"
