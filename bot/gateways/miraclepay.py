"""MiraclePay (api.miraclecash.info): payment prompts with a checkout URL.

* Auth: `Authorization: Basic base64(clientId:apiKey)`.
* Create: `POST /external/payments/prompt` with `amount` a JSON number in USD (at most two
  decimals), `blockchainIds`, `payer`, `note` (our reference) and `redirectUrl` when set.
  The body is written by hand from the Decimal amount, so no float is ever involved:
  2050 cents -> `20.5`, 1000 -> `10`, 1234 -> `12.34` (the shortest exact form).
* Status: `GET /external/payments/prompt/{id}`: pending -> PENDING, successful -> PAID,
  unsuccessful -> FAILED, expired -> EXPIRED, cancelled -> CANCELLED.
* Errors are `{statusCode, message, error}`; the message is shown to the merchant
  ("MiraclePay: Redirect URL domain not allowed").
* Commission: `prompt.amount` (what the customer pays at checkout, the commission included
  when the customer pays it) and `prompt.commissionAmount` are kept, in cents, as the
  session's `payment` and shown next to the invoice amount. JSON numbers are read as Decimal.
* Setup: `check_setup` (at start) reads `GET /external/blockchains/active`; blockchains of
  MIRACLEPAY_BLOCKCHAINS without a payment address are named, and creating a prompt is
  refused with that text instead of MiraclePay's "Missing payment addresses for some
  blockchains".

No double prompts: MiraclePay has no lookup by our reference, so a create whose answer was
lost is NOT blindly retried. Only failures proving nothing was created are retried
(connection refused / connect timeout, HTTP 429); after a read timeout, a reset connection,
a 5xx or an unreadable answer the create raises a non-retryable GatewayUnavailable telling
the merchant to check the MiraclePay dashboard for the note (our reference) first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random as _random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx

from bot.domain.models import InvoiceKind
from bot.domain.money import minor_from_plain, plain_decimal
from bot.gateways.base import (
    Gateway,
    GatewayAuthError,
    GatewayError,
    GatewayNotFound,
    GatewayRejected,
    GatewayUnavailable,
    GatewayUnsupported,
    PaymentSession,
    PaymentState,
    SessionRequest,
    SessionStatus,
)
from bot.gateways.http import (
    Backoff,
    GatewayAnswerLost,
    GatewayHttp,
    HttpFailure,
    MalformedAnswer,
    NowFn,
    RandomFn,
    SleepFn,
    default_error,
)
from bot.gateways.settlement import miraclepay_settlement
from bot.times import parse_time

logger = logging.getLogger("bot.gateways.miraclepay")

DEFAULT_API_URL = "https://api.miraclecash.info"
CREATE_PATH = "/external/payments/prompt"
STATUS_PATH = "/external/payments/prompt/{id}"
ACTIVE_BLOCKCHAINS_PATH = "/external/blockchains/active"
# The guide's 400s when a requested blockchain has no payment address.
MISSING_ADDRESS_MESSAGES = (
    "missing payment addresses for some blockchains",
    "no payment addresses configured",
)

STATES: dict[str, PaymentState] = {
    "pending": PaymentState.PENDING,
    "successful": PaymentState.PAID,
    "unsuccessful": PaymentState.FAILED,
    "expired": PaymentState.EXPIRED,
    "cancelled": PaymentState.CANCELLED,
}


def json_amount(amount_minor: int) -> str:
    """Minor units of USD -> the JSON number text: 2050 -> '20.5', 1000 -> '10'."""
    return plain_decimal(amount_minor, "USD")


class MiraclePayGateway(Gateway):
    """MiraclePay payment prompts (USD), checked by polling."""

    name = "miraclepay"
    title = "MiraclePay"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        client_id: str,
        api_key: str,
        api_url: str = DEFAULT_API_URL,
        blockchains: Sequence[str] = ("btc", "eth"),
        payer: Literal["customer", "merchant"] = "customer",
        redirect_url: str | None = None,
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        sleep: SleepFn = asyncio.sleep,
        random: RandomFn = _random.random,
        now: NowFn | None = None,
    ) -> None:
        self.blockchains = [b.strip() for b in blockchains if b.strip()]
        self.payer = payer
        self.redirect_url = redirect_url or None
        self._now: NowFn = now or (lambda: datetime.now(UTC))
        token = base64.b64encode(f"{client_id}:{api_key}".encode()).decode("ascii")
        self.http = GatewayHttp(
            client,
            gateway=self.name,
            title=self.title,
            base_url=api_url,
            headers={"Authorization": f"Basic {token}"},
            secrets=[api_key, token, client_id],
            map_error=self._map_error,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            sleep=sleep,
            random=random,
            now=self._now,
            parse_float=Decimal,
        )
        # Blockchains in MIRACLEPAY_BLOCKCHAINS without a payment address at MiraclePay, as
        # the last check of GET /external/blockchains/active found them.
        self.missing_blockchains: list[str] = []

    @property
    def currencies(self) -> tuple[str, ...]:
        return ("USD",)

    def accepts_currency(self, currency: str) -> bool:
        return currency.strip().upper() == "USD"

    # -- errors -------------------------------------------------------------------------------
    def _map_error(self, failure: HttpFailure) -> GatewayError:
        message = failure.message or f"HTTP {failure.status}"
        text = f"{self.name}: HTTP {failure.status} on {failure.method} {failure.path}: {message}"
        code = str(failure.status)
        if failure.status in (401, 403):
            return GatewayAuthError(
                text, gateway=self.name, code=code,
                user_message=(
                    f"{self.title} rejected our credentials ({message}): check "
                    "MIRACLEPAY_CLIENT_ID and MIRACLEPAY_API_KEY"
                ),
            )
        if failure.status == 404:
            return GatewayNotFound(
                text, gateway=self.name, code=code, user_message=f"{self.title}: {message}"
            )
        if 400 <= failure.status < 500 and failure.status not in (408, 425):
            return GatewayRejected(
                text, gateway=self.name, code=code, user_message=f"{self.title}: {message}"
            )
        return default_error(failure)

    # -- operations ---------------------------------------------------------------------------
    def _body(self, request: SessionRequest) -> bytes:
        rest: dict[str, Any] = {
            "blockchainIds": self.blockchains,
            "payer": self.payer,
            "note": request.reference,
        }
        if self.redirect_url:
            rest["redirectUrl"] = self.redirect_url
        tail = json.dumps(rest, ensure_ascii=False)
        return ('{"amount": ' + json_amount(request.amount_minor) + ", " + tail[1:]).encode()

    def _created(self, body: Any) -> PaymentSession:
        if not isinstance(body, dict):
            raise MalformedAnswer("expected a JSON object")
        prompt = body.get("prompt")
        checkout = body.get("checkoutUrl")
        if not isinstance(prompt, dict):
            raise MalformedAnswer("no prompt")
        prompt_id = prompt.get("id")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise MalformedAnswer("no prompt id")
        if not isinstance(checkout, str) or not checkout.startswith(("https://", "http://")):
            raise MalformedAnswer("no checkoutUrl")
        expires_at = parse_time(prompt.get("expiresAt")) or self._now() + timedelta(hours=24)
        # What the customer pays at checkout: `prompt.amount` includes the commission when
        # the customer pays it. Shown next to the invoice amount; absent when not exact.
        payment: dict[str, Any] = {}
        checkout_minor = minor_from_plain(prompt.get("amount"), "USD")
        commission_minor = minor_from_plain(prompt.get("commissionAmount"), "USD")
        if checkout_minor is not None and commission_minor is not None:
            payment = {"checkout_amount_minor": checkout_minor, "commission_minor": commission_minor}
        return PaymentSession(
            session_id=prompt_id, kind=InvoiceKind.CHECKOUT, checkout_url=checkout,
            expires_at=expires_at, payment=payment, raw=body,
        )

    # -- setup --------------------------------------------------------------------------------
    async def active_blockchains(self) -> set[str]:
        """The blockchains with a payment address (GET /external/blockchains/active)."""

        def parse(body: Any) -> set[str]:
            if not isinstance(body, list):
                raise MalformedAnswer("expected a JSON array")
            found: set[str] = set()
            for item in body:
                chain = item.get("id") if isinstance(item, dict) else item
                if isinstance(chain, str) and chain:
                    found.add(chain)
            return found

        return await self.http.request("GET", ACTIVE_BLOCKCHAINS_PATH, parse=parse)

    def _missing_text(self) -> str:
        chains = ", ".join(self.missing_blockchains)
        return (
            f"no payment address for {chains} (in MIRACLEPAY_BLOCKCHAINS): add one in the "
            "MiraclePay dashboard or remove it from MIRACLEPAY_BLOCKCHAINS"
        )

    async def check_setup(self) -> list[str]:
        """Every blockchain of MIRACLEPAY_BLOCKCHAINS needs a payment address, else
        MiraclePay refuses every prompt: name the missing ones."""
        active = await self.active_blockchains()
        self.missing_blockchains = [b for b in self.blockchains if b not in active]
        return [self._missing_text()] if self.missing_blockchains else []

    def _missing_error(self) -> GatewayRejected:
        text = self._missing_text()
        return GatewayRejected(
            f"{self.name}: {text}", gateway=self.name, code="blockchains",
            user_message=f"{self.title}: {text}",
        )

    async def create_session(self, request: SessionRequest) -> PaymentSession:
        if request.kind != InvoiceKind.CHECKOUT:
            raise GatewayUnsupported(
                f"{self.name} cannot create {request.kind} sessions", gateway=self.name,
                code="kind", user_message=f"{self.title} cannot take {request.kind} payments",
            )
        if not self.accepts_currency(request.currency):
            raise GatewayUnsupported(
                f"{self.name} does not take {request.currency}", gateway=self.name,
                code="currency", user_message=f"{self.title} only takes USD",
            )
        if (
            isinstance(request.amount_minor, bool)
            or not isinstance(request.amount_minor, int)
            or request.amount_minor <= 0
        ):
            raise GatewayUnsupported(
                f"{self.name}: amount must be positive integer cents", gateway=self.name,
                code="amount", user_message=f"{self.title}: the amount must be more than zero",
            )
        if self.missing_blockchains:
            # MiraclePay would refuse the prompt: look again (an address may have been added
            # since), and say exactly why when it still would.
            with contextlib.suppress(GatewayError):
                await self.check_setup()
            if self.missing_blockchains:
                raise self._missing_error()
        try:
            return await self.http.request(
                "POST", CREATE_PATH, content=self._body(request),
                headers={"Content-Type": "application/json"}, retry=False, parse=self._created,
            )
        except GatewayRejected as exc:
            if not any(m in exc.user_message.lower() for m in MISSING_ADDRESS_MESSAGES):
                raise
            try:  # name the blockchains the gateway's message does not name
                await self.check_setup()
            except GatewayError:
                raise exc from None
            if not self.missing_blockchains:
                raise
            raise self._missing_error() from None
        except GatewayAnswerLost as lost:
            raise GatewayUnavailable(
                f"{self.name}: the answer to creating {request.reference} was lost ({lost}); "
                "not retried because MiraclePay cannot look a prompt up by reference",
                gateway=self.name, retryable=False, code="answer-lost",
                user_message=(
                    f"{self.title} did not confirm the payment ({lost.user_message}). It may "
                    f"have been created: check the MiraclePay dashboard for note "
                    f"{request.reference} before trying again"
                ),
            ) from None

    def _status(self, body: Any) -> SessionStatus:
        if not isinstance(body, dict):
            raise MalformedAnswer("expected a JSON object")
        raw_status = body.get("status")
        if not isinstance(raw_status, str) or not raw_status:
            raise MalformedAnswer("no status")
        state = STATES.get(raw_status.lower())
        if state is None:
            logger.warning("miraclepay: unknown status %r, treated as pending", raw_status)
            state = PaymentState.PENDING
        paid_at = None
        if state == PaymentState.PAID:
            paid_at = (
                parse_time(body.get("paidAt"))
                or parse_time(body.get("completedAt"))
                or self._now()
            )
        failure = None
        if state in (PaymentState.FAILED, PaymentState.EXPIRED, PaymentState.CANCELLED):
            reason = body.get("reason") or body.get("failureReason")
            failure = reason if isinstance(reason, str) and reason else f"MiraclePay: {raw_status}"
        return SessionStatus(
            state=state, raw_status=raw_status, paid_at=paid_at, failure_reason=failure,
            currency="USD", expires_at=parse_time(body.get("expiresAt")), raw=body,
            settlement=miraclepay_settlement(body),
        )

    async def get_status(self, session_id: str, reference: str) -> SessionStatus:
        return await self.http.request(
            "GET", STATUS_PATH.format(id=quote(session_id, safe="")), parse=self._status
        )
