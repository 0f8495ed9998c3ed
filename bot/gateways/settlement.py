"""What each gateway's status answer says about the money, for the ledger
(bot/domain/ledger.py): read from the documented fields only, exactly (decimal strings as
`Decimal`, never through a float). Absent or malformed fields are None, never guessed.

* MixPay `payments_result`: `quoteAmount` (fiat), `paymentAmount`/`paymentSymbol` (what the
  payer sent), `settleAmount`/`settleSymbol` once `settleStatus` is `success` (what reached
  the merchant). No fee is reported. An underpayment (`paid_less`, or `isFullyPaid` false)
  is booked at the share of `quoteAmount` that `paymentAmount` is of `payableAmount`,
  rounded down to the quote's minor unit.
* MiraclePay prompt status: `blockchainId` (the chain paid on). The amount with commission
  and the commission come from the prompt's creation (kept in `Invoice.payment`).
* Mion: `fundingAmountAvailable` (cents) of an underpaid session is the adapter's
  `paid_amount_minor`; `amountMsat` comes from the payment attempt (`Invoice.payment`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any

from bot.domain.ledger import Settlement, decimal_or_none
from bot.domain.money import exponent, minor_from_plain


def _symbol(value: Any) -> str | None:
    return value.strip()[:20] if isinstance(value, str) and value.strip() else None


def mixpay_settlement(data: Mapping[str, Any], quote_currency: str) -> Settlement:
    quote = decimal_or_none(data.get("quoteAmount"))
    paid = decimal_or_none(data.get("paymentAmount"))
    payable = decimal_or_none(data.get("payableAmount"))
    fiat = minor_from_plain(data.get("quoteAmount"), quote_currency)
    payment = data.get("payment")
    short = data.get("status") == "paid_less" or (
        isinstance(payment, Mapping) and payment.get("isFullyPaid") is False
    )
    if short:
        fiat = None
        if quote is not None and paid and payable:
            share = (quote * paid / payable).quantize(
                Decimal(1).scaleb(-exponent(quote_currency)), rounding=ROUND_DOWN
            )
            fiat = minor_from_plain(min(share, quote), quote_currency)
    settled = data.get("settleStatus") == "success"
    return Settlement(
        fiat_minor=fiat,
        crypto_amount=paid if paid else None,
        crypto_asset=_symbol(data.get("paymentSymbol")) if paid else None,
        net_amount=decimal_or_none(data.get("settleAmount")) if settled else None,
        net_asset=_symbol(data.get("settleSymbol")) if settled else None,
    )


def miraclepay_settlement(body: Mapping[str, Any]) -> Settlement:
    return Settlement(crypto_asset=_symbol(body.get("blockchainId")))


__all__ = ["miraclepay_settlement", "mixpay_settlement"]
