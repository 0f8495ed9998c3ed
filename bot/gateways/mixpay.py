"""MixPay (mixpay.me): one-time checkout links and on-chain payments.

* kind CHECKOUT: `POST /one_time_payment`; the customer pays on `https://mixpay.me/code/<code>`.
* kind ONCHAIN (when MIXPAY_PAYMENT_ASSET_ID is set): `POST /payments` with `isChain: true`;
  the customer sends `paymentAmount` of `paymentAssetSymbol` to `destination`. The quote
  lives ~10 minutes; `renew_attempt` refreshes it (`POST /payments/refresh`).
* Status: `GET /payments_result?orderId=<our reference>&payeeId=<payee>`.

MixPay has no API key: payments are tied to `payeeId`. It allows 60 requests per minute for
all APIs together, so EVERY request (create, status, refresh, lookup and every retry) first
acquires the adapter's `RequestBudget` (MIXPAY_REQUESTS_PER_MINUTE, default 50).

Answers are `{code, success, message, data, timestampMs}`; `code: 0` is success. Code 1429
(rate limited) is retried like HTTP 429 whether it comes with HTTP 429 or 200.

Our reference (e.g. "tillbot-42") is MixPay's `orderId`, unique with `payeeId`: when a
create's answer is lost, the payment is looked up by orderId before creating again. A
one-time payment's `code` is its `traceId` (MixPay's refresh docs: "If you are using one time
payment API, it's the data.code field"), so a payment found that way gets its checkout link
back from the `traceId`.

Statuses (`payments_result?...&with=payment`, MixPay's newest docs):
* `success` is PAID only when `payeeId`, `quoteAssetId` and `quoteAmount` are all present and
  equal to the invoice's (`strict_match`: the payment service fails closed and alerts the
  admins once); `surplusAmount` > 0 is an overpayment the merchant is told of, with
  `surplusStatus` (MixPay's refund of it).
* `pending` with `payment.isFullyPaid: false` is UNDERPAID (what arrived and what is due, in
  crypto: MixPay reports no quote-currency amount for it); so is `paid_less` (older notes).
* `failed`: money arrived (`paymentAmount` > 0) -> FAILED with `refund_due`, whatever the
  code (never silently "expired"); else failureCode 40000 (payment overtime) -> EXPIRED,
  40032 (cancelled, older notes) -> CANCELLED, every other code -> FAILED with the reason.
* Every other status (`unpaid`, `pending` with confirmations, `auditing`, and any status we
  do not know) is PENDING with `processing`: MixPay is still at work and fails the order
  itself at `expiredTimestamp`, so it is never expired locally (the countdown reaching zero
  does not by itself mean the order failed).
* A payments_result that does not know the order yet (no payer has opened the link) is
  PENDING with raw status "not-found" (and may expire locally).

Quote amounts are written and read with the quote asset's own decimals (`bot.domain.money`: JPY 0,
KWD 3, most 2); a quote asset whose decimals are unknown is refused at start
(`quote_asset_problem`). On-chain payment assets that need a memo or tag carry it in the
message and the QR payload; one whose memo no QR payload can carry is refused at start
(`payment_asset_problem`). `callbackUrl` is sent only when it is HTTPS (MixPay takes no
other); the on-chain refresh sends back the payment's `clientId`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random as _random
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote

import httpx

from bot.domain.models import InvoiceKind
from bot.domain.money import plain_decimal
from bot.gateways.base import (
    CallbackHint,
    Gateway,
    GatewayAuthError,
    GatewayError,
    GatewayNotFound,
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnavailable,
    GatewayUnsupported,
    PaymentSession,
    PaymentState,
    SessionRequest,
    SessionStatus,
)
from bot.gateways.budget import RequestBudget
from bot.gateways.http import (
    Backoff,
    GatewayHttp,
    HttpFailure,
    MalformedAnswer,
    NowFn,
    RandomFn,
    SleepFn,
    default_error,
)
from bot.gateways.mixpay_status import status_of
from bot.gateways.mixpay_wire import (
    NOT_FOUND_CODES,
    PAYEE_CODES,
    RATE_LIMITED_CODES,
    UNAVAILABLE_CODES,
    code_of,
    currency_of,
    payment_asset_problem,
    quote_asset_problem,
)
from bot.times import iso_z, parse_time

logger = logging.getLogger("bot.gateways.mixpay")

DEFAULT_API_URL = "https://api.mixpay.me/v1"
DEFAULT_CHECKOUT_URL = "https://mixpay.me/code/"
ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{6,36}$")
REMARK_MAX = 50

# expiredTimestamp: "more than 10 s and less than 2880 min ahead" (one-time payments);
# the on-chain guide says less than 240 min. We keep a margin on both ends.
_ONE_TIME_EXPIRY = (timedelta(seconds=60), timedelta(minutes=2880) - timedelta(seconds=60))
_ONCHAIN_EXPIRY = (timedelta(seconds=60), timedelta(minutes=240) - timedelta(seconds=60))



class MixPayGateway(Gateway):
    """MixPay one-time payments (checkout) and on-chain payments, within a request budget."""

    name = "mixpay"
    title = "MixPay"
    supports_renewal = True
    supports_callbacks = True  # MixPay POSTs to the callbackUrl given at creation

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        payee_id: str,
        settlement_asset_id: str,
        api_url: str = DEFAULT_API_URL,
        quote_asset_id: str = "usd",
        payment_asset_id: str | None = None,
        requests_per_minute: int = 50,
        expiry: timedelta = timedelta(hours=1),
        checkout_url: str = DEFAULT_CHECKOUT_URL,
        budget: RequestBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        sleep: SleepFn = asyncio.sleep,
        random: RandomFn = _random.random,
        now: NowFn | None = None,
    ) -> None:
        self.payee_id = payee_id
        self.settlement_asset_id = settlement_asset_id
        self.quote_asset_id = quote_asset_id.strip().lower()
        self.payment_asset_id = payment_asset_id or None
        for problem in (quote_asset_problem(quote_asset_id), payment_asset_problem(payment_asset_id)):
            if problem is not None:
                raise ValueError(problem)
        self.quote_currency = currency_of(self.quote_asset_id)
        self.expiry = expiry
        self.checkout_base = checkout_url if checkout_url.endswith("/") else checkout_url + "/"
        # The budget's clock and sleep: `clock` (monotonic seconds) and the adapter's `sleep`.
        self.budget = budget or RequestBudget(requests_per_minute, clock=clock, sleep=sleep)
        kinds = {InvoiceKind.CHECKOUT}
        if self.payment_asset_id:
            kinds.add(InvoiceKind.ONCHAIN)
        self.kinds = frozenset(kinds)
        self._now: NowFn = now or (lambda: datetime.now(UTC))
        self.http = GatewayHttp(
            client,
            gateway=self.name,
            title=self.title,
            base_url=api_url,
            map_error=self._map_error,
            check_body=self._check_body,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            budget=self.budget,
            sleep=sleep,
            random=random,
            now=self._now,
        )

    # -- currencies and budget ----------------------------------------------------------------
    @property
    def currencies(self) -> tuple[str, ...]:
        return (self.quote_currency,)

    def accepts_currency(self, currency: str) -> bool:
        return currency.strip().upper() == self.currencies[0].upper()

    @property
    def request_interval(self) -> timedelta | None:
        return timedelta(seconds=self.budget.interval)

    # -- errors -------------------------------------------------------------------------------
    def _code_error(self, code: int | None, failure: HttpFailure) -> GatewayError:
        name, title = self.name, self.title
        message = failure.message or (f"code {code}" if code is not None else "error")
        text = f"{name}: code {code} (HTTP {failure.status}) on {failure.method} {failure.path}"
        text += f": {message}"
        code_text = str(code) if code is not None else None
        if code in RATE_LIMITED_CODES:
            return GatewayRateLimited(
                text, gateway=name, code=code_text, retry_after=failure.retry_after,
                user_message=f"{title} is rate limiting us; try again in a minute",
            )
        if code in UNAVAILABLE_CODES:
            return GatewayUnavailable(
                text, gateway=name, code=code_text,
                user_message=f"{title} is unavailable right now ({message}); try again later",
            )
        if code in PAYEE_CODES:
            return GatewayAuthError(
                text, gateway=name, code=code_text,
                user_message=f"{title} does not accept our payee: check MIXPAY_PAYEE_ID",
            )
        if code in NOT_FOUND_CODES:
            return GatewayNotFound(
                text, gateway=name, code=code_text, user_message=f"{title}: no such payment"
            )
        if code == 10003:
            return GatewayRejected(
                text, gateway=name, code=code_text,
                user_message=(
                    f"{title} does not support quote asset {self.quote_asset_id}: "
                    "check MIXPAY_QUOTE_ASSET_ID"
                ),
            )
        if code == 10002:
            return GatewayRejected(
                text, gateway=name, code=code_text,
                user_message=(
                    f"{title}: {message}: check MIXPAY_SETTLEMENT_ASSET_ID and "
                    "MIXPAY_PAYMENT_ASSET_ID"
                ),
            )
        return GatewayRejected(
            text, gateway=name, code=code_text, user_message=f"{title}: {message}"
        )

    def _check_body(self, failure: HttpFailure) -> GatewayError | None:
        body = failure.body
        if not isinstance(body, Mapping) or "code" not in body:
            return self.http.malformed(failure.method, failure.path, "no MixPay envelope")
        code = code_of(body.get("code"))
        if code == 0 and body.get("success", True) is not False:
            return None
        return self._code_error(code, failure)

    def _map_error(self, failure: HttpFailure) -> GatewayError:
        if failure.status in (401, 403):
            return GatewayAuthError(
                f"{self.name}: HTTP {failure.status} on {failure.method} {failure.path}",
                gateway=self.name, code=str(failure.status),
                user_message=f"{self.title} refused us: check MIXPAY_PAYEE_ID",
            )
        body = failure.body
        code = code_of(body.get("code")) if isinstance(body, Mapping) else None
        if code is not None and code != 0:
            return self._code_error(code, failure)
        return default_error(failure)

    # -- parsing ------------------------------------------------------------------------------
    @staticmethod
    def _data(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise MalformedAnswer("no data object")
        data: dict[str, Any] = body["data"]
        return data

    def _onchain_payment(self, body: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(traceId, payment for the customer, raw data) from a /payments(/refresh) answer."""
        data = self._data(body)
        trace_id = data.get("traceId")
        address = data.get("destination")
        amount = data.get("paymentAmount")
        symbol = data.get("paymentAssetSymbol")
        if not isinstance(trace_id, str) or not trace_id:
            raise MalformedAnswer("no traceId")
        if not isinstance(address, str) or not address:
            raise MalformedAnswer("no destination")
        if isinstance(amount, bool) or not isinstance(amount, str | int):
            raise MalformedAnswer("paymentAmount is not a decimal string")
        amount_text = str(amount).strip()
        if not re.fullmatch(r"\d+(\.\d+)?", amount_text):
            raise MalformedAnswer("paymentAmount is not a decimal string")
        if not isinstance(symbol, str) or not symbol:
            raise MalformedAnswer("no paymentAssetSymbol")
        payment: dict[str, Any] = {
            "address": address,
            "crypto_amount": amount_text,
            "crypto_symbol": symbol,
        }
        expire = parse_time(data.get("expire"))
        if expire is None and code_of(data.get("seconds")):
            expire = self._now() + timedelta(seconds=code_of(data.get("seconds")) or 0)
        if expire is not None:
            payment["attempt_expires_at"] = iso_z(expire)
        for key in ("memo", "tag"):
            value = data.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                payment[key] = str(value)
        client_id = data.get("clientId")
        if isinstance(client_id, str) and client_id:
            payment["client_id"] = client_id  # sent back on refresh
        return trace_id, payment, data

    def _result(self, body: Any) -> dict[str, Any] | None:
        """The `data` of payments_result, or None when MixPay does not know the order."""
        if not isinstance(body, dict):
            raise MalformedAnswer("expected a JSON object")
        data = body.get("data")
        if data is None or data == [] or data == {}:
            return None
        if not isinstance(data, dict):
            raise MalformedAnswer("data is not an object")
        if not isinstance(data.get("status"), str) or not data.get("status"):
            raise MalformedAnswer("no status")
        return data

    def _status_of(self, data: Mapping[str, Any]) -> SessionStatus:
        return status_of(data, self.quote_currency, self._now)

    # -- operations ---------------------------------------------------------------------------
    def _unsupported(self, request: SessionRequest) -> GatewayError | None:
        if request.kind not in self.kinds:
            why = (
                "set MIXPAY_PAYMENT_ASSET_ID for on-chain payments"
                if request.kind == InvoiceKind.ONCHAIN
                else f"it cannot take {request.kind} payments"
            )
            return GatewayUnsupported(
                f"{self.name} cannot create {request.kind} sessions", gateway=self.name,
                code="kind", user_message=f"{self.title}: {why}",
            )
        if not self.accepts_currency(request.currency):
            return GatewayUnsupported(
                f"{self.name} does not take {request.currency}", gateway=self.name,
                code="currency", user_message=f"{self.title} only takes {self.currencies[0]}",
            )
        if isinstance(request.amount_minor, bool) or not isinstance(request.amount_minor, int):
            return GatewayUnsupported(
                f"{self.name}: amount must be integer minor units", gateway=self.name,
                code="amount", user_message=f"{self.title}: the amount is not valid",
            )
        if request.amount_minor <= 0:
            return GatewayUnsupported(
                f"{self.name}: amount must be positive", gateway=self.name, code="amount",
                user_message=f"{self.title}: the amount must be more than zero",
            )
        if not ORDER_ID.fullmatch(request.reference):
            return GatewayRejected(
                f"{self.name}: reference {request.reference!r} is not a valid orderId",
                gateway=self.name, code="orderId",
                user_message=f"{self.title}: the invoice reference is not a valid order id",
            )
        return None

    def _expires(self, request: SessionRequest, bounds: tuple[timedelta, timedelta]) -> datetime:
        wanted = request.expires_in or self.expiry
        wanted = min(max(wanted, bounds[0]), bounds[1])
        return (self._now() + wanted).replace(microsecond=0)

    def _checkout_url(self, code: str) -> str:
        return self.checkout_base + quote(code, safe="")

    def expect_existing(self, reference: str) -> None:
        self.http.mark_uncertain(reference)

    async def create_session(self, request: SessionRequest) -> PaymentSession:
        problem = self._unsupported(request)
        if problem is not None:
            raise problem
        onchain = request.kind == InvoiceKind.ONCHAIN
        expires_at = self._expires(request, _ONCHAIN_EXPIRY if onchain else _ONE_TIME_EXPIRY)
        body: dict[str, Any] = {
            "payeeId": self.payee_id,
            # In the quote asset's own decimals (JPY 0, KWD 3): known, checked at start.
            "quoteAmount": plain_decimal(request.amount_minor, self.quote_currency),
            "quoteAssetId": self.quote_asset_id,
            "settlementAssetId": self.settlement_asset_id,
            "orderId": request.reference,
            "expiredTimestamp": int(expires_at.timestamp()),
        }
        remark = request.description.strip()[:REMARK_MAX]
        if remark:
            body["remark"] = remark
        if request.callback_url and request.callback_url.startswith("https://"):
            body["callbackUrl"] = request.callback_url  # MixPay calls only HTTPS URLs
        if onchain:
            body["paymentAssetId"] = self.payment_asset_id
            body["isChain"] = True

        async def lookup() -> PaymentSession | None:
            data = await self._find(request.reference)
            if data is None:
                return None
            trace_id = data.get("traceId")
            if not isinstance(trace_id, str) or not trace_id:
                return None
            if onchain:
                return await self.renew_attempt(trace_id)
            return PaymentSession(
                session_id=trace_id, kind=InvoiceKind.CHECKOUT,
                checkout_url=self._checkout_url(trace_id), expires_at=expires_at, raw=data,
            )

        if onchain:
            async def send_onchain() -> PaymentSession:
                trace_id, payment, raw = await self.http.request(
                    "POST", "/payments", json_body=body, retry=False, parse=self._onchain_payment
                )
                return PaymentSession(
                    session_id=trace_id, kind=InvoiceKind.ONCHAIN, expires_at=expires_at,
                    payment=payment, raw=raw,
                )

            return await self.http.create_with_lookup(request.reference, send_onchain, lookup)

        def parse_code(answer: Any) -> tuple[str, dict[str, Any]]:
            data = self._data(answer)
            code = data.get("code")
            if not isinstance(code, str) or not code:
                raise MalformedAnswer("no code")
            return code, data

        async def send_one_time() -> PaymentSession:
            code, raw = await self.http.request(
                "POST", "/one_time_payment", json_body=body, retry=False, parse=parse_code
            )
            return PaymentSession(
                session_id=code, kind=InvoiceKind.CHECKOUT,
                checkout_url=self._checkout_url(code), expires_at=expires_at, raw=raw,
            )

        return await self.http.create_with_lookup(request.reference, send_one_time, lookup)

    async def _find(self, reference: str) -> dict[str, Any] | None:
        try:
            return await self.http.request(
                "GET", "/payments_result",
                params={"orderId": reference, "payeeId": self.payee_id}, parse=self._result,
            )
        except GatewayNotFound:
            return None

    async def renew_attempt(self, session_id: str) -> PaymentSession:
        """Refresh an on-chain payment's quote (a new amount and expiry; same traceId)."""
        return await self.renew_payment(session_id, {})

    async def renew_payment(self, session_id: str, payment: Mapping[str, Any]) -> PaymentSession:
        """Refresh an on-chain payment's quote, sending back its original `clientId`."""
        body: dict[str, Any] = {"traceId": session_id}
        client_id = payment.get("client_id")
        if isinstance(client_id, str) and client_id:
            body["clientId"] = client_id
        trace_id, renewed, raw = await self.http.request(
            "POST", "/payments/refresh", json_body=body, parse=self._onchain_payment,
        )
        return PaymentSession(
            session_id=trace_id, kind=InvoiceKind.ONCHAIN, payment=renewed, raw=raw
        )

    async def get_status(self, session_id: str, reference: str) -> SessionStatus:
        if reference:
            params = {"orderId": reference, "payeeId": self.payee_id}
        else:
            params = {"traceId": session_id}
        params["with"] = "payment"  # isFullyPaid tells an underpayment apart
        try:
            data = await self.http.request(
                "GET", "/payments_result", params=params, parse=self._result
            )
        except GatewayNotFound:
            data = None
        if data is None:
            return SessionStatus(
                state=PaymentState.PENDING, raw_status="not-found",
                detail="MixPay does not know this payment yet",
            )
        return self._status_of(data)

    async def register_callback(self, session_id: str, url: str) -> None:
        """Nothing to do: MixPay takes the callback URL when the payment is created."""
        logger.debug("mixpay: callbacks are requested at creation (callbackUrl), not later")

    def parse_callback(self, body: bytes, content_type: str) -> CallbackHint:
        """MixPay POSTs `{orderId, traceId, payeeId}` (JSON or a form); a hint only."""
        fields: dict[str, Any]
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("MixPay callback is not UTF-8") from exc
        if "form" in content_type.lower() or not text.lstrip().startswith(("{", "[")):
            parsed = parse_qs(text, keep_blank_values=False, strict_parsing=False)
            fields = {k: v[0] for k, v in parsed.items() if v}
        else:
            try:
                loaded = json.loads(text)
            except ValueError as exc:
                raise ValueError("MixPay callback is not JSON") from exc
            if not isinstance(loaded, dict):
                raise ValueError("MixPay callback is not an object")
            fields = loaded

        def text_of(key: str) -> str | None:
            value = fields.get(key)
            return value.strip() or None if isinstance(value, str) else None

        order_id, trace_id = text_of("orderId"), text_of("traceId")
        if order_id is None and trace_id is None:
            raise ValueError("MixPay callback has neither orderId nor traceId")
        return CallbackHint(session_id=trace_id, reference=order_id, payee=text_of("payeeId"))

    def callback_response(self) -> tuple[int, Mapping[str, Any]]:
        return 200, {"code": "SUCCESS"}
