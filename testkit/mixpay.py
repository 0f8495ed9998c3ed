"""MixPay (mixpay.me) simulator: MixPay's public API over HTTP.

``sim.url`` is ``{root}/v1`` (it stands for ``https://api.mixpay.me/v1``)::

    POST /v1/one_time_payment          -> data {code}; checkout https://mixpay.me/code/<code>
    POST /v1/payments   (isChain)      -> data {isChain, expire, seconds, payeeId, traceId,
                                          clientId, paymentAssetId, settlementAssetId,
                                          quoteAssetId, paymentAmount, quoteAmount,
                                          estimatedSettlementAmount, memo, recipient,
                                          settlementAssetSymbol, paymentAssetSymbol,
                                          quoteAssetSymbol, destination, tag}
    POST /v1/payments/refresh  {traceId[, clientId]} -> the same object, renewed
    GET  /v1/payments_result?orderId=..&payeeId=..  or  ?traceId=..   [&with=payment,transactions]
    GET  /v1/setting/quote_assets, GET /v1/setting/payment_assets

No API key. Request bodies may be form-encoded or JSON (query parameters are merged in).
Every answer is the envelope ``{code, success, message, data, timestampMs}``; ``code: 0`` is
success, errors have ``data: []``.

Documented behaviour followed (MixPay's developer docs, ``gateway-docs/mixpay/``):
parameters and limits of ``one_time_payment``/``payments`` (orderId 6-36 of ``[A-Za-z0-9_-]``
or a UUID traceId, remark max 50, callbackUrl **HTTPS only**, callbackEvent
``settle|pending|paid_less``, expiredTimestamp more than 10 s and less than 2880 min ahead),
the ``payments_result`` fields and its statuses ``unpaid``, ``pending`` (processing: paid,
waiting for confirmations, ``confirmations`` > -1), ``auditing``, ``success`` and ``failed``
(``payments-results.md``: "This response status returns unpaid, pending(processing), failed,
auditing and success"), ``with=payment`` (``payment: {isMultiPay, isFullyPaid,
totalTransactionsAmount}``; an underpayment is ``pending`` with ``isFullyPaid: false``, as
``payment-callback.md`` "Checking for paid_less" says) and ``with=transactions``,
``surplusAmount``/``surplusStatus`` for an overpayment, ``failureCode`` (a string: "0"
unless failed; 40000 "Payment overtime", 40020 "Wrong asset paid", 40021 "Double payment",
40024 "Wrong Amount paid", 40025 "Too much market volatility.") with ``paymentAmount``
holding what the payer sent (the ``fail`` event: "paymentAmount is not empty, which
represents the amount of payment the user has made"), the rate limit (60 requests a minute
for all APIs together, code 1429, headers ``x-ratelimit-limit``/``x-ratelimit-remaining``)
and the callback (POST JSON ``{orderId, traceId, payeeId}``; acknowledged only by HTTP 200
with ``{"code": "SUCCESS"}``; MixPay's schedule 0/15/15/30/180/1800x4/3600 s, 10 tries, is
compressed by ``callback_retry_delays``, default 0, 0.1, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3,
0.5 s). Callback events: ``success`` and ``fail`` always, ``pending``, ``paid_less`` and
``settle`` when subscribed with ``callbackEvent``. The older one-page notes also named
``confirming`` and ``paid_less`` as statuses; the newer docs do not, so this simulator never
answers them (``paid_less`` is only a callback event).

Choices where the docs are silent (the simulator's, documented here):

* API error codes (from MixPay's error-code table): 1017 parameter error (missing/invalid
  parameter, invalid body), 10001 unknown payeeId (when the simulator has a ``payee_id``),
  10002 unknown payment asset, 10003 quote asset not supported, 1017 for a callbackUrl
  that is not HTTPS (the docs say only that it must be HTTPS), 10063/10064 expiredTimestamp below the minimum / above the maximum, 10131 invalid
  callbackEvent, 10062 **unknown order or trace** (``payments_result``,
  ``payments/refresh``), 10020 re-creating an order that already succeeded, 10065
  re-creating an order that failed, 10084 refreshing a trace that is final or has no payment
  asset, 1429 rate limited, -1 server error (injected faults), 404 unknown API path.
* HTTP status of errors: 400 for parameter errors, 404 for 10062 and unknown paths, 409 for
  10020/10065/10084, 429 for 1429, 500 for -1. ``error_http_status=False`` answers every
  error except 1429 with HTTP 200 (the body code is what counts).
* Idempotent creation: creating again with an existing payeeId+orderId (or traceId) returns
  the SAME payment (same ``code``/``traceId``) and never a second one, keeping the first
  request's parameters; the session's ``create_requests`` counts the requests. Only a final
  payment is refused (10020 after success, 10065 after failure). ``/payments`` on an
  existing order attaches the payment asset to it (one trace, as the lifecycle doc says).
* ``data.code`` of ``one_time_payment`` is the traceId (a given ``traceId`` sets it, as the
  doc says; otherwise a new UUID), so ``payments_result?traceId=<code>`` works.
* ``quoteAmount`` with more decimals than the quote asset's ``decimalDigit`` (fiat: JPY 0,
  KWD 3, the others 2) is a parameter error (1017).
* ``quoteAmount`` is kept exactly as received (the string, or the JSON number's text) and
  returned unchanged by ``payments_result``.
* ``paymentAmount`` for a payment asset is ``quoteAmount * price(quote) / price(asset)``,
  rounded up to 8 decimals, with the USD prices ``fiat_prices_usd`` and ``assets`` (see
  ``sim.set_price``). Before anything is paid ``payments_result.paymentAmount`` is ``"0"``;
  ``payableAmount`` is empty while no payment asset is known (one-time payment without
  ``paymentAssetId`` and a settlement asset the simulator does not know).
* ``payments_result`` also returns ``orderId`` and ``expiredAt`` (the order deadline as Unix
  seconds, null without ``expiredTimestamp``); ``date`` is the payment time (creation time
  while unpaid) in Unix seconds; ``settleStatus`` is ``pending`` until success, then
  ``success``; ``confirmations`` is -1 except while ``pending`` (``confirmations``, default 1).
  ``payment.isMultiPay`` is true (the rest of an underpayment can be paid on the same link).
* Without ``expiredTimestamp`` a payment never expires by itself. At the deadline an unpaid
  payment fails with 40000 "Payment overtime", an underpaid one with 40024 (``paymentAmount``
  keeps what arrived: a refund is due). A payment fully received and still ``pending`` or
  ``auditing`` at the deadline is NOT failed: the countdown reaching zero does not by itself
  mean the order failed; it turns ``success`` when confirmed.
* Controls: ``pay`` -> ``success`` (``amount`` is what this transfer sends; below what is
  still due it leaves the payment underpaid, above it leaves a ``surplusAmount`` with
  ``surplusStatus`` ``pending``), ``set_status(id, "pending"|"auditing")`` (the full amount
  received, not yet confirmed/reviewed), ``underpay(fraction)`` -> ``pending`` with
  ``isFullyPaid: false``, ``fail(id, reason, paid=)`` -> ``failed`` with ``failureCode`` =
  the reason when it is a code (else ``code=``, default 40020) and ``failureReason`` from
  MixPay's table (or the text); 40020, 40021 and 40025 mean money arrived, so ``paymentAmount``
  is what is due unless ``paid`` says otherwise; ``expire`` -> ``failed`` 40000 "Payment
  overtime" (40024 when underpaid), ``cancel`` -> ``failed`` 40032 "Payment cancelled"
  (from the older notes). Controls accept a traceId or orderId.
* Rate limit: a sliding window of ``rate_limit_window`` (60) seconds over
  ``rate_limit_time`` (default ``time.monotonic``); refused requests do not count. Past the
  limit: HTTP 429, code 1429, ``Retry-After`` (seconds until a slot frees). ``sim.
  rate_limited_count`` counts refusals; ``rate_limit_per_minute=None`` disables the limit.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal, localcontext
from typing import Any, ClassVar

from aiohttp import web

from bot.gateways.bolt11 import make_bech32_address
from testkit.gateway_base import (
    Clock,
    GatewaySimulator,
    InvalidTransition,
    SimSession,
    decimal_text,
    is_http_url,
    json_response,
    parse_decimal,
)

STATUSES = ("unpaid", "pending", "auditing", "success", "failed")
FINAL_STATUSES = frozenset({"success", "failed"})
CALLBACK_EVENTS = frozenset({"settle", "pending", "paid_less", "success", "fail"})
FAILURE_REASONS: dict[str, str] = {
    "40000": "Payment overtime",
    "40020": "Wrong asset paid",
    "40021": "Double payment",
    "40024": "Wrong Amount paid",
    "40025": "Too much market volatility.",
    "40032": "Payment cancelled",
    "10095": "Payment rejected during review",
}
API_MESSAGES: dict[int, str] = {
    -1: "Server error, please try again later.",
    404: "The payment link you visited does not exist.",
    1017: "Parameter error.",
    1429: "Your request frequency is too high, please try again later.",
    10001: "User does not exist.",
    10002: "The currency does not exist or does not supported exchanging.",
    10003: "Does not support this quote asset.",
    10020: "The trace or merchant order has already completed.",
    10062: "The requested order does not exist.",
    10063: "The requested expiration is below the accepted minimum.",
    10064: "The requested expiration exceeds the accepted maximum.",
    10065: "The trace has expired or is already in a terminal failed state.",
    10084: "The trace is not available for the requested operation.",
    10131: "The requested callback event is invalid.",
}
# Failures in which the payer's money arrived (wrong asset, double payment, volatility).
_MONEY_ARRIVED = frozenset({"40020", "40021", "40025"})
_HTTP_STATUS: dict[int, int] = {
    -1: 500, 404: 404, 1429: 429, 10062: 404, 10020: 409, 10065: 409, 10084: 409,
}
_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{6,36}$")
_MAX_EXPIRY = timedelta(minutes=2880)
_MIN_EXPIRY = timedelta(seconds=10)
_DEFAULT_QUOTE_TTL = timedelta(seconds=600)
DEFAULT_PAYEE_ID = "834c17e1-1427-434a-a280-1b3cfee05111"
MIXPAY_CHECKOUT_BASE = "https://mixpay.me/code/"


@dataclass(frozen=True)
class MixPayAsset:
    """A crypto asset the simulator quotes and takes (price in USD, for conversions)."""

    asset_id: str
    symbol: str
    price_usd: Decimal
    chain: str = "bitcoin"  # "bitcoin" | "ethereum" | "tron" | "mixin": address style
    decimals: int = 8
    version: str = ""
    memo_field: str = ""  # "memo" or "tag": deposits to a shared address need one


BTC = "c6d0c728-2624-429b-8e0d-d9d19b6592fa"
ETH = "43d61dcd-e413-450d-80b8-101d5e903357"
USDT_ERC20 = "4d8c508b-91c5-375b-92b0-ee702ed2dac5"
USDT_TRC20 = "b91e18ff-a9ae-3dc7-8679-e935d9a4b34b"
TRX = "25dabac5-056a-48ff-b9f9-f67395dc407c"
XRP = "23dfb5a5-5d7b-48b6-905f-3970e3176e27"
XLM = "56e63c06-b506-4ec5-885a-4a5ac17b83c1"
EOS = "6cfe566e-4aad-470b-8c9a-2fd35b49c68d"

DEFAULT_ASSETS: tuple[MixPayAsset, ...] = (
    MixPayAsset(BTC, "BTC", Decimal("60000"), "bitcoin"),
    MixPayAsset(ETH, "ETH", Decimal("3000"), "ethereum"),
    MixPayAsset(USDT_ERC20, "USDT", Decimal("1"), "ethereum", version="ERC20"),
    MixPayAsset(USDT_TRC20, "USDT", Decimal("1"), "tron", version="TRC20"),
    MixPayAsset(TRX, "TRX", Decimal("0.1"), "tron"),
    MixPayAsset(XRP, "XRP", Decimal("0.5"), "ripple", decimals=6, memo_field="tag"),
    MixPayAsset(XLM, "XLM", Decimal("0.1"), "stellar", decimals=7, memo_field="memo"),
    MixPayAsset(EOS, "EOS", Decimal("0.8"), "eos", decimals=4, memo_field="memo"),
)
DEFAULT_FIAT_PRICES_USD: dict[str, Decimal] = {
    "usd": Decimal("1"),
    "eur": Decimal("1.08"),
    "gbp": Decimal("1.27"),
    "chf": Decimal("1.13"),
    "cad": Decimal("0.73"),
    "aud": Decimal("0.66"),
    "jpy": Decimal("0.0067"),
    "kwd": Decimal("3.25"),
    "cny": Decimal("0.14"),
    "hkd": Decimal("0.128"),
    "sgd": Decimal("0.74"),
}
FIAT_DECIMALS: dict[str, int] = {"jpy": 0, "kwd": 3}  # the others have 2
_EXPLORERS = {
    "bitcoin": "https://blockchair.com/bitcoin/transaction/{txid}",
    "ethereum": "https://etherscan.io/tx/0x{txid}",
    "tron": "https://tronscan.org/#/transaction/{txid}",
    "mixin": "https://viewblock.io/mixin/tx/{txid}",
}


class _ApiError(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or API_MESSAGES.get(code, "Error."))
        self.code = code
        self.message = message or API_MESSAGES.get(code, "Error.")


@dataclass
class MixPaySession(SimSession):
    """One MixPay payment (trace); ``id`` is the traceId (= one_time_payment's code)."""

    payee_id: str = ""
    quote_amount: str = ""  # exactly as received
    quote_asset_id: str = ""
    settlement_asset_id: str = ""
    payment_asset_id: str | None = None
    strict_mode: bool = False
    remark: str | None = None
    note: str | None = None
    settlement_memo: str | None = None
    return_to: str | None = None
    failed_return_to: str | None = None
    callback_url: str | None = None
    callback_events: tuple[str, ...] = ()
    expired_timestamp: int | None = None
    is_chain: bool = False
    via: str = "one_time_payment"  # or "payments"
    client_ids: list[str] = field(default_factory=list)
    payment_amount: Decimal | None = None  # recognized amount, all transfers together
    pending_confirmations: int = 1  # `confirmations` while `pending`
    surplus_amount: Decimal = Decimal(0)
    txid: str = ""
    block_explorer_url: str = ""
    confirmations: int = -1
    failure_code: str = "0"
    failure_reason: str = ""
    settle_status: str = "pending"
    destination: str = ""
    deposit_memo: str = ""  # the memo or tag of `destination`, when the asset needs one
    quote_expire: int | None = None

    @property
    def trace_id(self) -> str:
        return self.id

    @property
    def code(self) -> str:
        return self.id

    @property
    def order_id(self) -> str | None:
        return self.reference


class MixPaySimulator(GatewaySimulator[MixPaySession]):
    """MixPay's API; see the module docstring for every choice."""

    name: ClassVar[str] = "mixpay"
    api_prefix: ClassVar[str] = "/v1"
    default_callback_retry_delays: ClassVar[tuple[float, ...]] = (
        0.0, 0.1, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.5,
    )

    def __init__(
        self,
        payee_id: str | None = DEFAULT_PAYEE_ID,
        rate_limit_per_minute: int | None = 60,
        quote_assets: Iterable[str] | None = None,
        assets: Iterable[MixPayAsset] = DEFAULT_ASSETS,
        fiat_prices_usd: Mapping[str, Decimal] | None = None,
        *,
        quote_ttl: timedelta = _DEFAULT_QUOTE_TTL,
        error_http_status: bool = True,
        rate_limit_window: float = 60.0,
        rate_limit_time: Callable[[], float] | None = None,
        checkout_base: str = MIXPAY_CHECKOUT_BASE,
        clock: Clock | None = None,
        callback_retry_delays: Iterable[float] | None = None,
        callback_timeout: float = 2.0,
        tick_interval: float = 0.05,
    ) -> None:
        super().__init__(
            clock=clock,
            callback_retry_delays=callback_retry_delays,
            callback_timeout=callback_timeout,
            tick_interval=tick_interval,
        )
        self.payee_id = payee_id
        self.rate_limit_per_minute = rate_limit_per_minute
        self.rate_limit_window = rate_limit_window
        self.rate_limit_time: Callable[[], float] = rate_limit_time or time.monotonic
        self.rate_limited_count = 0
        self.assets: dict[str, MixPayAsset] = {a.asset_id: a for a in assets}
        self.fiat_prices_usd: dict[str, Decimal] = dict(
            DEFAULT_FIAT_PRICES_USD if fiat_prices_usd is None else fiat_prices_usd
        )
        self.quote_assets: frozenset[str] = (
            frozenset(quote_assets)
            if quote_assets is not None
            else frozenset(self.fiat_prices_usd) | frozenset(self.assets)
        )
        self.quote_ttl = quote_ttl
        self.error_http_status = error_http_status
        self.checkout_base = checkout_base
        self._by_order: dict[tuple[str, str], str] = {}
        self._window: deque[float] = deque()

    # -- helpers --------------------------------------------------------------------------------

    def checkout_url(self, code: str) -> str:
        return self.checkout_base + code

    def set_price(self, asset_or_fiat_id: str, price_usd: Decimal) -> None:
        """Change a USD price (a fiat id like ``eur`` or an asset id)."""
        if asset_or_fiat_id in self.assets:
            old = self.assets[asset_or_fiat_id]
            self.assets[asset_or_fiat_id] = MixPayAsset(
                old.asset_id, old.symbol, Decimal(price_usd), old.chain, old.decimals, old.version
            )
        else:
            self.fiat_prices_usd[asset_or_fiat_id] = Decimal(price_usd)

    def _price(self, asset_id: str) -> Decimal | None:
        if asset_id in self.assets:
            return self.assets[asset_id].price_usd
        return self.fiat_prices_usd.get(asset_id)

    def _symbol(self, asset_id: str) -> str:
        if asset_id in self.assets:
            return self.assets[asset_id].symbol
        return asset_id.upper() if asset_id in self.fiat_prices_usd else ""

    def convert(
        self, amount: Decimal, from_id: str, to_asset: MixPayAsset, rounding: str
    ) -> Decimal | None:
        """`amount` of `from_id` in `to_asset`, quantized to its decimals with `rounding`."""
        price = self._price(from_id)
        if price is None or to_asset.price_usd <= 0:
            return None
        with localcontext() as ctx:
            ctx.prec = 60
            value = amount * price / to_asset.price_usd
            return value.quantize(Decimal(1).scaleb(-to_asset.decimals), rounding=rounding)

    def payment_asset(self, session: MixPaySession) -> MixPayAsset | None:
        """The asset the payer pays in: the chosen one, else the settlement asset if known."""
        if session.payment_asset_id:
            return self.assets.get(session.payment_asset_id)
        return self.assets.get(session.settlement_asset_id)

    def payable_amount(self, session: MixPaySession) -> Decimal | None:
        asset = self.payment_asset(session)
        if asset is None:
            return None
        return self.convert(Decimal(session.quote_amount), session.quote_asset_id, asset, ROUND_UP)

    def quote_decimals(self, asset_id: str) -> int:
        """`decimalDigit` of a quote asset (fiat: its ISO 4217 minor unit)."""
        asset = self.assets.get(asset_id)
        return asset.decimals if asset else FIAT_DECIMALS.get(asset_id, 2)

    def fully_paid(self, session: MixPaySession) -> bool:
        """Whether what arrived covers what is due (``payment.isFullyPaid``)."""
        paid, payable = session.payment_amount, self.payable_amount(session)
        if paid is None or paid <= 0:
            return False
        return payable is None or paid >= payable

    def _find_session(self, key: str) -> MixPaySession | None:
        for (_, order_id), sid in self._by_order.items():
            if order_id == key:
                return self.sessions.get(sid)
        return None

    def _reset_extra(self) -> None:
        self._by_order.clear()
        self._window.clear()
        self.rate_limited_count = 0

    def _timestamp_ms(self) -> int:
        return int(self.now().timestamp() * 1000)

    def ok(self, data: Any) -> web.Response:
        return json_response(
            {"code": 0, "success": True, "message": "", "data": data,
             "timestampMs": self._timestamp_ms()}
        )

    def error(self, code: int, message: str | None = None) -> web.Response:
        http = _HTTP_STATUS.get(code, 400)
        if not self.error_http_status and code != 1429:
            http = 200
        return json_response(
            {"code": code, "success": False, "message": message or API_MESSAGES.get(code, ""),
             "data": [], "timestampMs": self._timestamp_ms()},
            http,
        )

    def _error_response(self, status: int, message: str) -> web.Response:
        if status == 404:
            return self.error(404)
        if status == 429:
            return json_response(
                {"code": 1429, "success": False, "message": API_MESSAGES[1429], "data": [],
                 "timestampMs": self._timestamp_ms()},
                429,
            )
        if status >= 500:
            return json_response(
                {"code": -1, "success": False, "message": API_MESSAGES[-1], "data": [],
                 "timestampMs": self._timestamp_ms()},
                status,
            )
        return json_response(
            {"code": 1017, "success": False, "message": message, "data": [],
             "timestampMs": self._timestamp_ms()},
            status,
        )

    def _malformed_body(self) -> bytes:
        return b'{"code":0,"success":true,"message":"","data":{"status":"succ'

    def _is_create(self, request: web.Request) -> bool:
        return request.method == "POST" and request.path.rstrip("/") in (
            "/v1/one_time_payment", "/v1/payments",
        )

    # -- rate limit -----------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        while self._window and now - self._window[0] >= self.rate_limit_window:
            self._window.popleft()

    def _pre_handle(self, request: web.Request) -> web.StreamResponse | None:
        limit = self.rate_limit_per_minute
        if not limit or not request.path.startswith(self.api_prefix):
            return None
        now = self.rate_limit_time()
        self._prune(now)
        if len(self._window) >= limit:
            self.rate_limited_count += 1
            response = self.error(1429)
            wait = self.rate_limit_window - (now - self._window[0])
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        self._window.append(now)
        return None

    def _decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        limit = self.rate_limit_per_minute
        if not limit or not request.path.startswith(self.api_prefix):
            return
        self._prune(self.rate_limit_time())
        response.headers["x-ratelimit-limit"] = str(limit)
        response.headers["x-ratelimit-remaining"] = str(max(0, limit - len(self._window)))

    # -- parameters -----------------------------------------------------------------------------

    def _params(self, request: web.Request) -> dict[str, Any]:
        rec = self.record(request)
        if rec.parse_error is not None:
            raise _ApiError(1017, f"Parameter error: {rec.parse_error}")
        params: dict[str, Any] = dict(request.query)
        if rec.parsed is not None:
            if not isinstance(rec.parsed, dict):
                raise _ApiError(1017, "Parameter error: the body must be an object")
            params.update(rec.parsed)
        return params

    @staticmethod
    def _text(params: Mapping[str, Any], name: str) -> str | None:
        value = params.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, Decimal):
            return decimal_text(value)
        if isinstance(value, (int, str)):
            text = str(value)
            return text if text != "" else None
        raise _ApiError(1017, f"Parameter error: {name} must be a string")

    @staticmethod
    def _bool(params: Mapping[str, Any], name: str) -> bool | None:
        value = params.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, Decimal)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("1", "true", "0", "false"):
            return value.lower() in ("1", "true")
        raise _ApiError(1017, f"Parameter error: {name} must be a boolean")

    def _max_len(self, params: Mapping[str, Any], name: str, limit: int) -> str | None:
        value = self._text(params, name)
        if value is not None and len(value) > limit:
            raise _ApiError(1017, f"Parameter error: {name} must be at most {limit} characters")
        return value

    def _create(self, params: Mapping[str, Any], *, via: str) -> tuple[MixPaySession, bool]:
        """Validate and create (or find) the payment; (session, created)."""
        now = self.now()
        payee_id = self._text(params, "payeeId")
        if not payee_id:
            raise _ApiError(1017, "Parameter error: payeeId is required")
        if self.payee_id is not None and payee_id != self.payee_id:
            raise _ApiError(10001)
        order_id = self._text(params, "orderId")
        trace_id = self._text(params, "traceId")
        if order_id is None and trace_id is None:
            raise _ApiError(1017, "Parameter error: orderId or traceId is required")
        if order_id is not None and not _ORDER_ID_RE.fullmatch(order_id):
            raise _ApiError(
                1017,
                "Parameter error: orderId must be 6-36 letters, numbers, dashes and underscores",
            )
        if trace_id is not None:
            try:
                trace_id = str(uuid.UUID(trace_id))
            except ValueError:
                raise _ApiError(1017, "Parameter error: traceId must be a UUID") from None
        quote_amount = self._text(params, "quoteAmount")
        amount = parse_decimal(quote_amount) if quote_amount is not None else None
        if quote_amount is None or amount is None or amount <= 0:
            raise _ApiError(1017, "Parameter error: quoteAmount must be a positive number")
        quote_asset_id = self._text(params, "quoteAssetId")
        if not quote_asset_id:
            raise _ApiError(1017, "Parameter error: quoteAssetId is required")
        if quote_asset_id not in self.quote_assets:
            raise _ApiError(10003)
        places = amount.normalize().as_tuple().exponent
        if isinstance(places, int) and -places > self.quote_decimals(quote_asset_id):
            raise _ApiError(
                1017,
                f"Parameter error: quoteAmount has more decimals than {quote_asset_id} "
                f"allows ({self.quote_decimals(quote_asset_id)})",
            )
        settlement_asset_id = self._text(params, "settlementAssetId")
        if not settlement_asset_id:
            raise _ApiError(1017, "Parameter error: settlementAssetId is required")
        payment_asset_id = self._text(params, "paymentAssetId")
        if via == "payments" and not payment_asset_id:
            raise _ApiError(1017, "Parameter error: paymentAssetId is required")
        if payment_asset_id is not None and payment_asset_id not in self.assets:
            raise _ApiError(10002)
        is_chain = self._bool(params, "isChain")
        if via == "payments" and is_chain is None:
            raise _ApiError(1017, "Parameter error: isChain is required")
        strict_mode = bool(self._bool(params, "strictMode"))
        remark = self._max_len(params, "remark", 50)
        note = self._max_len(params, "note", 50)
        settlement_memo = self._max_len(params, "settlementMemo", 200)
        return_to = self._text(params, "returnTo")
        failed_return_to = self._text(params, "failedReturnTo")
        callback_url = self._text(params, "callbackUrl")
        if callback_url is not None:
            if not is_http_url(callback_url):
                raise _ApiError(1017, "Parameter error: callbackUrl must be a URL")
            if not is_http_url(callback_url, https_only=True):
                raise _ApiError(1017, "Parameter error: callbackUrl must be an HTTPS URL")
        events_text = self._text(params, "callbackEvent")
        events: tuple[str, ...] = ()
        if events_text is not None:
            events = tuple(e.strip() for e in events_text.split("|") if e.strip())
            if not events or any(e not in CALLBACK_EVENTS for e in events):
                raise _ApiError(10131)
        expired_text = self._text(params, "expiredTimestamp")
        expired_ts: int | None = None
        if expired_text is not None:
            if not re.fullmatch(r"\d+", expired_text):
                raise _ApiError(1017, "Parameter error: expiredTimestamp must be an integer")
            expired_ts = int(expired_text)
            ahead = expired_ts - now.timestamp()
            if ahead <= _MIN_EXPIRY.total_seconds():
                raise _ApiError(10063)
            if ahead >= _MAX_EXPIRY.total_seconds():
                raise _ApiError(10064)

        existing = self.sessions.get(trace_id) if trace_id else None
        if existing is None and order_id is not None:
            sid = self._by_order.get((payee_id, order_id))
            existing = self.sessions.get(sid) if sid else None
        if existing is not None:
            self._advance(existing, now)
            if existing.status == "success":
                raise _ApiError(10020)
            if existing.status == "failed":
                raise _ApiError(10065)
            existing.create_requests += 1
            if via == "payments":
                existing.payment_asset_id = payment_asset_id
                existing.is_chain = bool(is_chain)
            return existing, False

        session = MixPaySession(
            id=trace_id or str(uuid.uuid4()),
            amount=amount,
            currency=quote_asset_id,
            reference=order_id,
            status="unpaid",
            created_at=now,
            expires_at=(
                datetime.fromtimestamp(expired_ts, tz=now.tzinfo) if expired_ts else None
            ),
            payee_id=payee_id,
            quote_amount=quote_amount,
            quote_asset_id=quote_asset_id,
            settlement_asset_id=settlement_asset_id,
            payment_asset_id=payment_asset_id,
            strict_mode=strict_mode,
            remark=remark,
            note=note,
            settlement_memo=settlement_memo,
            return_to=return_to,
            failed_return_to=failed_return_to,
            callback_url=callback_url,
            callback_events=events,
            expired_timestamp=expired_ts,
            is_chain=bool(is_chain),
            via=via,
        )
        if callback_url:
            session.callback_urls.append(callback_url)
        session.history.append((now, "unpaid"))
        self.sessions[session.id] = session
        if order_id is not None:
            self._by_order[(payee_id, order_id)] = session.id
        self.create_count += 1
        return session, True

    # -- objects --------------------------------------------------------------------------------

    def instruction(self, session: MixPaySession, client_id: str | None = None) -> dict[str, Any]:
        """The ``/payments`` (and ``/payments/refresh``) data object; renews the quote."""
        asset = self.payment_asset(session)
        if asset is None:
            raise _ApiError(10084)
        payable = self.payable_amount(session)
        if payable is None:
            raise _ApiError(10003)
        now = self.now()
        expire = now + self.quote_ttl
        if session.expires_at is not None:
            expire = min(expire, session.expires_at)
        session.quote_expire = int(expire.timestamp())
        client_id = client_id or str(uuid.uuid4())
        if client_id not in session.client_ids:
            session.client_ids.append(client_id)
        if session.is_chain and not session.destination:
            session.destination = make_address(asset.chain)
            if asset.memo_field == "tag":
                session.deposit_memo = str(secrets.randbelow(2**32 - 1) + 1)
            elif asset.memo_field:
                session.deposit_memo = "mp" + secrets.token_hex(8)
        settle_asset = self.assets.get(session.settlement_asset_id)
        settle_amount = (
            self.convert(Decimal(session.quote_amount), session.quote_asset_id, settle_asset,
                         ROUND_DOWN)
            if settle_asset
            else None
        )
        return {
            "isChain": session.is_chain,
            "expire": session.quote_expire,
            "seconds": max(0, session.quote_expire - int(now.timestamp())),
            "payeeId": session.payee_id,
            "traceId": session.id,
            "clientId": client_id,
            "paymentAssetId": asset.asset_id,
            "settlementAssetId": session.settlement_asset_id,
            "quoteAssetId": session.quote_asset_id,
            "paymentAmount": _fmt(payable),
            "quoteAmount": session.quote_amount,
            "estimatedSettlementAmount": _fmt(settle_amount) if settle_amount else "",
            "memo": (
                (session.deposit_memo if asset.memo_field == "memo" else "")
                if session.is_chain
                else _mixin_memo(session)
            ),
            "recipient": "" if session.is_chain else str(uuid.uuid5(uuid.NAMESPACE_DNS, "mixpay")),
            "settlementAssetSymbol": self._symbol(session.settlement_asset_id),
            "paymentAssetSymbol": asset.symbol,
            "quoteAssetSymbol": self._symbol(session.quote_asset_id),
            "destination": session.destination if session.is_chain else "",
            "tag": session.deposit_memo if session.is_chain and asset.memo_field == "tag" else "",
        }

    def result_object(self, session: MixPaySession, with_: Iterable[str] = ()) -> dict[str, Any]:
        asset = self.payment_asset(session)
        payable = self.payable_amount(session)
        settle_asset = self.assets.get(session.settlement_asset_id)
        settled = session.settle_status == "success"
        settle_amount = (
            self.convert(Decimal(session.quote_amount), session.quote_asset_id, settle_asset,
                         ROUND_DOWN)
            if settle_asset and settled
            else None
        )
        return_to = ""
        if session.status == "success":
            return_to = session.return_to or ""
        elif session.status == "failed":
            return_to = session.failed_return_to or ""
        paid = session.payment_amount
        data: dict[str, Any] = {
            "status": session.status,
            "quoteAmount": session.quote_amount,
            "quoteSymbol": self._symbol(session.quote_asset_id),
            "quoteAssetId": session.quote_asset_id,
            "quoteAssetVersion": "",
            "paymentAmount": _fmt(paid) if paid is not None else "0",
            "paymentSymbol": asset.symbol if asset else "",
            "paymentAssetId": asset.asset_id if asset else "",
            "paymentAssetVersion": asset.version if asset else "",
            "payee": "mixpay-simulator",
            "payeeId": session.payee_id,
            "payeeMixinNumber": "",
            "payeeAvatarUrl": "",
            "txid": session.txid,
            "blockExplorerUrl": session.block_explorer_url,
            "date": int((session.paid_at or session.created_at).timestamp()),
            "surplusAmount": _fmt(session.surplus_amount),
            "surplusStatus": "pending" if session.surplus_amount > 0 else "no",
            "confirmations": session.confirmations,
            "payableAmount": _fmt(payable) if payable is not None else "",
            "payableSymbol": asset.symbol if asset else "",
            "payableAssetId": asset.asset_id if asset else "",
            "payableAssetVersion": asset.version if asset else "",
            "failureCode": session.failure_code,
            "failureReason": session.failure_reason,
            "returnTo": return_to,
            "traceId": session.id,
            "orderId": session.order_id or "",
            "expiredAt": session.expired_timestamp,
            "settleStatus": session.settle_status,
            "settleAmount": _fmt(settle_amount) if settle_amount is not None else "",
            "settleSymbol": settle_asset.symbol if settle_asset and settled else "",
            "settleAsset": session.settlement_asset_id if settled else "",
            "settleAssetVersion": "",
        }
        wanted = set(with_)
        if "payment" in wanted:
            data["payment"] = {
                "isMultiPay": True,
                "isFullyPaid": self.fully_paid(session),
                "totalTransactionsAmount": _fmt(paid) if paid is not None else "0",
            }
        if "transactions" in wanted:
            data["transactions"] = (
                [
                    {
                        "paymentAmount": _fmt(paid),
                        "paymentAssetId": asset.asset_id if asset else "",
                        "paymentAssetSymbol": asset.symbol if asset else "",
                        "paymentAssetVersion": asset.version if asset else "",
                        "requiredConfirms": 1,
                        "confirmations": max(session.confirmations, 0),
                        "txid": session.txid,
                        "blockExplorerUrl": session.block_explorer_url,
                        "broadcastAt": (session.paid_at or session.created_at)
                        .strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                        "confirmSeconds": 0,
                    }
                ]
                if paid is not None and session.txid
                else []
            )
        return data

    # -- routes ---------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/one_time_payment", self._wrap(self._one_time_payment))
        app.router.add_post("/v1/payments", self._wrap(self._payments))
        app.router.add_post("/v1/payments/refresh", self._wrap(self._refresh))
        app.router.add_get("/v1/payments_result", self._wrap(self._payments_result))
        app.router.add_get("/v1/setting/quote_assets", self._wrap(self._quote_assets))
        app.router.add_get("/v1/setting/payment_assets", self._wrap(self._payment_assets))

    def _wrap(
        self, handler: Callable[[web.Request], web.Response]
    ) -> Callable[[web.Request], Any]:
        async def run(request: web.Request) -> web.Response:
            try:
                return handler(request)
            except _ApiError as exc:
                return self.error(exc.code, exc.message)

        return run

    def _one_time_payment(self, request: web.Request) -> web.Response:
        session, _ = self._create(self._params(request), via="one_time_payment")
        return self.ok({"code": session.code})

    def _payments(self, request: web.Request) -> web.Response:
        params = self._params(request)
        session, _ = self._create(params, via="payments")
        return self.ok(self.instruction(session, self._text(params, "clientId")))

    def _refresh(self, request: web.Request) -> web.Response:
        params = self._params(request)
        trace_id = self._text(params, "traceId")
        if not trace_id:
            raise _ApiError(1017, "Parameter error: traceId is required")
        session = self.sessions.get(trace_id)
        if session is None:
            raise _ApiError(10062)
        if session.status in FINAL_STATUSES:
            raise _ApiError(10084)
        return self.ok(self.instruction(session, self._text(params, "clientId")))

    def _payments_result(self, request: web.Request) -> web.Response:
        params = self._params(request)
        trace_id = self._text(params, "traceId")
        order_id = self._text(params, "orderId")
        payee_id = self._text(params, "payeeId")
        session: MixPaySession | None
        if trace_id:
            session = self.sessions.get(trace_id)
        elif order_id:
            if not payee_id:
                raise _ApiError(1017, "Parameter error: payeeId is required with orderId")
            sid = self._by_order.get((payee_id, order_id))
            session = self.sessions.get(sid) if sid else None
        else:
            raise _ApiError(1017, "Parameter error: traceId or orderId is required")
        if session is None:
            raise _ApiError(10062)
        wanted = {w.strip() for w in (self._text(params, "with") or "").split(",") if w.strip()}
        return self.ok(self.result_object(session, wanted))

    def _quote_assets(self, request: web.Request) -> web.Response:
        rows = []
        for asset_id in sorted(self.quote_assets):
            asset = self.assets.get(asset_id)
            rows.append({
                "symbol": self._symbol(asset_id),
                "assetId": asset_id,
                "isAsset": 1 if asset else 0,
                "decimalDigit": self.quote_decimals(asset_id),
                "minQuoteAmount": "0.00000001" if asset else "0.01",
                "maxQuoteAmount": "1000000",
            })
        return self.ok(rows)

    def _payment_assets(self, request: web.Request) -> web.Response:
        return self.ok([
            {"assetId": a.asset_id, "symbol": a.symbol, "network": a.chain,
             "version": a.version, "decimalDigit": a.decimals, "isAvailable": True}
            for a in self.assets.values()
        ])

    # -- time and callbacks ---------------------------------------------------------------------

    def _advance(self, session: MixPaySession, now: datetime) -> None:
        if session.expires_at is None or now < session.expires_at:
            return
        # Only what is not (fully) paid fails at the deadline: a payment received in full and
        # still confirming or under review goes on to `success`.
        if session.status == "unpaid":
            self._fail_with(session, "40000", None, session.expires_at)
        elif session.status == "pending" and not self.fully_paid(session):
            self._fail_with(session, "40024", None, session.expires_at)

    def _on_status_change(self, session: MixPaySession, old: str) -> None:
        event = {"success": "success", "failed": "fail", "pending": "pending"}.get(session.status)
        if event == "pending" and not self.fully_paid(session):
            event = "paid_less"
        if event is None:
            return
        if event in ("success", "fail") or event in session.callback_events:
            self._callback(session)

    def _callback(self, session: MixPaySession) -> None:
        if not session.callback_url:
            return
        payload = {"orderId": session.order_id or "", "traceId": session.id,
                   "payeeId": session.payee_id}
        self._send_callback(session.callback_url, payload, _acknowledged, session.id)

    def _checkout_lines(self, session: MixPaySession) -> list[tuple[str, str]]:
        return [
            ("Amount", f"{session.quote_amount} {self._symbol(session.quote_asset_id)}"),
            ("Order", session.order_id or "-"),
            ("Status", session.status),
        ]

    def _checkout_return(self, session: MixPaySession) -> str | None:
        return session.return_to

    # -- controls -------------------------------------------------------------------------------

    def _ensure_asset(self, session: MixPaySession) -> MixPayAsset:
        """The payment asset; the payer picks BTC when the payment named none we know."""
        asset = self.payment_asset(session)
        if asset is None:
            asset = self.assets.get(BTC) or next(iter(self.assets.values()))
            session.payment_asset_id = asset.asset_id
        return asset

    def _record_payment(
        self, session: MixPaySession, amount: Decimal | None, at: datetime | None
    ) -> None:
        asset = self._ensure_asset(session)
        if amount is None:
            amount = self.payable_amount(session) or Decimal(0)
        session.payment_amount = amount
        if not session.txid:
            session.txid = secrets.token_hex(32)
            session.block_explorer_url = (
                _EXPLORERS.get(asset.chain, "").format(txid=session.txid)
                if session.is_chain or session.via == "one_time_payment"
                else ""
            )
        session.paid_at = at or self.now()

    def _check_open(self, session: MixPaySession, force: bool = False) -> None:
        if session.status in FINAL_STATUSES and not force:
            raise InvalidTransition(f"payment {session.id} is {session.status}")

    def pay(
        self,
        session_id: str,
        at: datetime | None = None,
        *,
        force: bool = False,
        payment_asset_id: str | None = None,
        amount: Decimal | None = None,
    ) -> MixPaySession:
        """A transfer of `amount` (default: all that is still due) arrives and is confirmed."""
        session = self.session(session_id)
        self._advance(session, self.now())
        if session.status == "success":
            raise InvalidTransition(f"payment {session.id} is already paid")
        self._check_open(session, force)
        if payment_asset_id is not None:
            if payment_asset_id not in self.assets:
                raise ValueError(f"unknown asset {payment_asset_id}")
            session.payment_asset_id = payment_asset_id
        self._ensure_asset(session)
        before = session.payment_amount or Decimal(0)
        payable = self.payable_amount(session)
        if amount is None:
            amount = max(Decimal(0), (payable or Decimal(0)) - before)
        self._record_payment(session, before + amount, at)
        session.failure_code, session.failure_reason = "0", ""
        if not self.fully_paid(session):
            session.confirmations = session.pending_confirmations
            self._set_status(session, "pending", at)
            return session
        if payable is not None and session.payment_amount is not None:
            session.surplus_amount = max(Decimal(0), session.payment_amount - payable)
        session.confirmations = -1
        self._set_status(session, "success", at)
        session.settle_status = "success"
        if "settle" in session.callback_events:
            self._callback(session)
        return session

    def underpay(self, session_id: str, paid_fraction: Decimal = Decimal("0.5")) -> MixPaySession:
        """Less than is due arrives: ``pending`` with ``payment.isFullyPaid: false``."""
        session = self.session(session_id)
        self._check_open(session)
        fraction = Decimal(paid_fraction)
        if not 0 < fraction < 1:
            raise ValueError("paid_fraction must be between 0 and 1")
        self._ensure_asset(session)
        payable = self.payable_amount(session) or Decimal(0)
        asset = self.payment_asset(session)
        places = Decimal(1).scaleb(-(asset.decimals if asset else 8))
        self._record_payment(session, (payable * fraction).quantize(places, ROUND_DOWN), None)
        session.confirmations = session.pending_confirmations
        self._set_status(session, "pending")
        return session

    def _fail_with(
        self, session: MixPaySession, code: str, reason: str | None, at: datetime | None = None
    ) -> None:
        session.failure_code = code
        session.failure_reason = reason or FAILURE_REASONS.get(code, "Payment failed")
        session.confirmations = -1
        self._set_status(session, "failed", at)

    def fail(
        self,
        session_id: str,
        reason: str | int | None = None,
        *,
        code: str | int | None = None,
        paid: Decimal | None = None,
    ) -> MixPaySession:
        """The payment fails; `paid` is what the payer sent (refund due)."""
        session = self.session(session_id)
        self._check_open(session)
        text: str | None = None
        if code is None and reason is not None and str(reason).strip().isdigit():
            code = str(reason).strip()
        elif reason is not None:
            text = str(reason)
        code_text = str(code or "40020")
        if paid is not None:
            self._record_payment(session, paid, None)
        elif code_text in _MONEY_ARRIVED and not session.payment_amount:
            self._record_payment(session, None, None)
        self._fail_with(session, code_text, text)
        return session

    def expire(self, session_id: str) -> MixPaySession:
        session = self.session(session_id)
        self._check_open(session)
        underpaid = session.status == "pending" and not self.fully_paid(session)
        self._fail_with(session, "40024" if underpaid else "40000", None)
        return session

    def cancel(self, session_id: str) -> MixPaySession:
        session = self.session(session_id)
        self._check_open(session)
        self._fail_with(session, "40032", None)
        return session

    def set_status(self, session_id: str, status: str) -> MixPaySession:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        session = self.session(session_id)
        if status == "success":
            return self.pay(session_id, force=True)
        if status == "failed":
            return self.fail(session_id)
        if status == "unpaid":
            session.payment_amount = None
            session.txid = session.block_explorer_url = ""
            session.paid_at = None
        elif not self.fully_paid(session):  # pending, auditing: the full amount was received
            self._record_payment(session, None, None)
        session.confirmations = session.pending_confirmations if status == "pending" else -1
        self._set_status(session, status)
        return session

    def _http_pay(
        self, session_id: str, at: datetime | None, force: bool, params: dict[str, Any]
    ) -> MixPaySession:
        asset = params.get("payment_asset_id")
        amount = parse_decimal(params.get("amount")) if params.get("amount") is not None else None
        return self.pay(
            session_id, at, force=force,
            payment_asset_id=asset if isinstance(asset, str) else None, amount=amount,
        )

    def _http_fail(self, session_id: str, params: dict[str, Any]) -> MixPaySession:
        reason = params.get("reason")
        code = params.get("code")
        paid = parse_decimal(params.get("paid")) if params.get("paid") is not None else None
        return self.fail(
            session_id,
            None if reason is None else str(reason),
            code=None if code is None else str(code),
            paid=paid,
        )


def _fmt(amount: Decimal) -> str:
    """An amount as MixPay writes it: plain digits, no trailing zeros ("0.00025836", "10")."""
    return decimal_text(amount.normalize()) if amount else "0"


def _acknowledged(status: int, body: bytes) -> bool:
    """MixPay wants HTTP 200 with ``{"code": "SUCCESS"}``."""
    if status != 200:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("code") == "SUCCESS"


def _mixin_memo(session: MixPaySession) -> str:
    raw = f"mixpay|{session.payee_id}|{session.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def make_address(chain: str) -> str:
    """A random, plausibly shaped deposit address for the chain."""
    if chain == "ethereum":
        return "0x" + secrets.token_hex(20)
    if chain == "ripple":
        return "r" + "".join(secrets.choice(_BASE58) for _ in range(33))
    if chain == "stellar":
        return "G" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(55))
    if chain == "eos":
        return "mixpay" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz12345") for _ in range(6))
    if chain == "tron":
        alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        return "T" + "".join(secrets.choice(alphabet) for _ in range(33))
    return make_bech32_address()

