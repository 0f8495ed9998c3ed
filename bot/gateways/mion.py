"""Mion (mion.group): online checkout and point-of-sale Lightning payment sessions.

Mion's API reference is not public. What its guides say (amounts in cents, EUR only,
`retailPos`, payment attempts with `lnInvoice`/`amountMsat`/`expiry`, the status object and
the four paid statuses) is followed exactly; everything else (base URL, paths, the API key
header, the `expiry` format) is an ASSUMPTION kept in `MionApi` below and overridable through
the constructor (`api=MionApi(...)`).

Online (kind CHECKOUT): a session with `retailPos: false`; the customer pays on
`MION_CHECKOUT_URL + paymentSessionId`.
Point of sale (kind LIGHTNING): a session with `retailPos: true`, then a payment attempt
(`paymentMethod: "lightning"`); its Lightning invoice lives ~2 minutes, `renew_attempt`
requests a new one.
Paid iff `paidAt` holds a timestamp AND `status` is one of the paid statuses; any other status
is unpaid, and unpaid past `expiresAt` is expired.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random as _random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import httpx

from bot.domain.models import InvoiceKind
from bot.gateways.base import (
    CallbackHint,
    Gateway,
    GatewayAuthError,
    GatewayComplianceBlocked,
    GatewayError,
    GatewayNotFound,
    GatewayRejected,
    GatewayUnsupported,
    PaymentSession,
    PaymentState,
    SessionRequest,
    SessionStatus,
)
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
from bot.times import iso_z, parse_time

logger = logging.getLogger("bot.gateways.mion")

MION_PAID_STATUSES = frozenset({"funding-received", "funding-collected", "exchanged", "funded"})
DEFAULT_CHECKOUT_URL = "https://app.mion.group/checkout/"


ExpiryFormat = Literal["iso", "unix", "seconds"]
EXPIRY_FORMATS: tuple[ExpiryFormat, ...] = ("iso", "unix", "seconds")
WELL_FUNDED = "well-funded"  # the guide's `fundingStatus` of a fully funded session
OVER_FUNDED = "over-funded"  # more than enough arrived: still paid


@dataclass(frozen=True, slots=True)
class MionApi:
    """Every ASSUMPTION about Mion's unpublished API, in one place; each field is overridable
    by a setting (README, "Mion: what is assumed"; `bot.gateways.registry.mion_api`).

    Paths are templates filled with the percent-encoded `{id}` (paymentSessionId) or
    `{reference}`. `expiry_format`: how `expiry` is sent when creating a session:
      "iso"     an ISO 8601 UTC timestamp string, "2026-11-21T22:00:00Z" (default)
      "unix"    unix seconds (int)
      "seconds" a duration in seconds (int)
    `api_key_header` carries `api_key_prefix + key`. Errors: non-2xx with a JSON object whose
    `error_message_field` is the message. The status webhook POSTs the status object, whose
    `webhook_session_field` names the session.
    """

    create_session: str = "/payment-sessions"
    session: str = "/payment-sessions/{id}"  # documented endpoint; the adapter needs none
    status: str = "/payment-sessions/{id}/status"
    by_reference: str = "/payment-sessions/by-reference/{reference}"
    payment_attempts: str = "/payment-sessions/{id}/payment-attempts"
    webhooks: str = "/payment-sessions/{id}/webhooks"
    api_key_header: str = "x-api-key"
    api_key_prefix: str = ""
    expiry_format: ExpiryFormat = "iso"
    error_message_field: str = "message"
    webhook_session_field: str = "paymentSessionId"
    # Documented (the guides), not assumed: kept here so all of Mion's vocabulary is together.
    paid_statuses: frozenset[str] = field(default=MION_PAID_STATUSES)

    def path(self, template: str, **values: str) -> str:
        """Fill a path template; every value is percent-encoded as one path segment."""
        return template.format(**{k: quote(v, safe="") for k, v in values.items()})

    def expiry(self, now: datetime, expires_in: timedelta) -> str | int:
        if self.expiry_format == "unix":
            return int((now + expires_in).timestamp())
        if self.expiry_format == "seconds":
            return int(expires_in.total_seconds())
        return iso_z(now + expires_in)


def _checkout_base(url: str) -> str:
    return url if url.endswith(("/", "=")) else url + "/"


class MionGateway(Gateway):
    """Mion payment sessions: online checkout and point-of-sale Lightning."""

    name = "mion"
    title = "Mion"
    kinds = frozenset({InvoiceKind.CHECKOUT, InvoiceKind.LIGHTNING})
    supports_renewal = True
    supports_callbacks = True
    key_setting = "MION_API_KEY"  # named in the merchant-facing auth error
    key_is_secret = True  # redacted from every message (the sandbox's key is public)

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_url: str,
        api_key: str,
        checkout_url: str = DEFAULT_CHECKOUT_URL,
        online_expiry: timedelta = timedelta(days=1),
        pos_expiry: timedelta = timedelta(minutes=15),
        redirect_url: str | None = None,
        api: MionApi | None = None,
        currencies: tuple[str, ...] | None = ("EUR",),
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        sleep: SleepFn = asyncio.sleep,
        random: RandomFn = _random.random,
        now: NowFn | None = None,
    ) -> None:
        self.api = api or MionApi()
        self.checkout_base = _checkout_base(checkout_url)
        self.online_expiry = online_expiry
        self.pos_expiry = pos_expiry
        self.redirect_url = redirect_url
        self._currencies = tuple(c.upper() for c in currencies) if currencies else None
        self._now: NowFn = now or (lambda: datetime.now(UTC))
        self.http = GatewayHttp(
            client,
            gateway=self.name,
            title=self.title,
            base_url=api_url,
            headers={self.api.api_key_header: self.api.api_key_prefix + api_key},
            secrets=[api_key] if self.key_is_secret else [],
            map_error=self._map_error,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            sleep=sleep,
            random=random,
            now=self._now,
        )

    # -- currencies ---------------------------------------------------------------------------
    @property
    def currencies(self) -> tuple[str, ...]:
        return self._currencies or ()

    def accepts_currency(self, currency: str) -> bool:
        if self._currencies is None:
            return len(currency) == 3 and currency.isalpha()
        return currency.upper() in self._currencies

    # -- errors -------------------------------------------------------------------------------
    def _message(self, failure: HttpFailure) -> str:
        """The error's message in the assumed format (`error_message_field`)."""
        body = failure.body
        if isinstance(body, dict) and self.api.error_message_field != "message":
            found = body.get(self.api.error_message_field)
            if isinstance(found, str) and found.strip():
                return self.http.redact(" ".join(found.split()))[:300]
        return failure.message

    def _map_error(self, failure: HttpFailure) -> GatewayError:
        failure = replace(failure, message=self._message(failure))
        text = f"{self.name}: HTTP {failure.status} on {failure.method} {failure.path}"
        if failure.message:
            text += f": {failure.message}"
        if failure.status == 401:
            return GatewayAuthError(
                text, gateway=self.name, code="401",
                user_message=f"{self.title} rejected our API key: check {self.key_setting}",
            )
        if failure.status == 403:
            return GatewayAuthError(
                text, gateway=self.name, code="403",
                user_message=(
                    f"{self.title} refused our API key: check {self.key_setting} and its "
                    "permissions (Payments Read & Write; Retail Point-of-sale Payments Create "
                    "for point of sale)"
                ),
            )
        if failure.status == 404:
            return GatewayNotFound(
                text, gateway=self.name, code="404",
                user_message=f"{self.title}: no such payment session",
            )
        if failure.status in (400, 409, 422):
            why = failure.message or "the request was refused"
            return GatewayRejected(
                text, gateway=self.name, code=str(failure.status),
                user_message=f"{self.title}: {why}",
            )
        return default_error(failure)

    def _unsupported(self, request: SessionRequest) -> GatewayUnsupported | None:
        if request.kind not in self.kinds:
            return GatewayUnsupported(
                f"{self.name} cannot create {request.kind} sessions", gateway=self.name,
                code="kind", user_message=f"{self.title} cannot take {request.kind} payments",
            )
        if not self.accepts_currency(request.currency):
            takes = ", ".join(self.currencies)
            return GatewayUnsupported(
                f"{self.name} does not take {request.currency}", gateway=self.name,
                code="currency", user_message=f"{self.title} only takes {takes}",
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
        return None

    # -- parsing ------------------------------------------------------------------------------
    @staticmethod
    def _session_object(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise MalformedAnswer("expected a JSON object")
        session_id = body.get("paymentSessionId")
        if not isinstance(session_id, str) or not session_id:
            raise MalformedAnswer("no paymentSessionId")
        return body

    @staticmethod
    def _found_session(request: SessionRequest, body: Any) -> dict[str, Any] | None:
        """The by-reference answer (a session object, or a list of them): only a session
        whose `reference`, `amount` and `currencyIso3` are ours is ours; anything else is
        "not found" (a stranger's session must never be attached to our invoice)."""
        candidates = body if isinstance(body, list) else [body]
        for candidate in candidates:
            if (
                isinstance(candidate, dict)
                and candidate.get("reference") == request.reference
                and candidate.get("amount") == request.amount_minor
                and not isinstance(candidate.get("amount"), bool)
                and str(candidate.get("currencyIso3", "")).upper() == request.currency.upper()
            ):
                return MionGateway._session_object(candidate)
        return None

    def _attempt_payment(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise MalformedAnswer("expected a JSON object")
        if body.get("blockedByCompliance") is True:
            raw_fields = body.get("missingComplianceCustomerFields")
            fields = tuple(
                str(f) for f in (raw_fields if isinstance(raw_fields, list) else [])
                if isinstance(f, str | int) and str(f).strip()
            )
            missing = ", ".join(fields) if fields else "not named by Mion"
            raise GatewayComplianceBlocked(
                f"{self.name}: payment attempt blocked by compliance (missing: {missing})",
                gateway=self.name, code="compliance", missing_fields=fields,
                user_message=(
                    f"{self.title} blocked this payment for compliance reasons; missing "
                    f"customer details: {missing}"
                ),
            )
        invoice = body.get("lnInvoice")
        if not isinstance(invoice, str) or not invoice:
            raise MalformedAnswer("no lnInvoice")
        msat_raw = body.get("amountMsat")
        if isinstance(msat_raw, bool) or not isinstance(msat_raw, int | str):
            raise MalformedAnswer("amountMsat is not an integer")
        if isinstance(msat_raw, str) and not msat_raw.strip().isdigit():
            raise MalformedAnswer("amountMsat is not an integer")
        msat = int(msat_raw)
        if msat <= 0:
            raise MalformedAnswer("amountMsat is not positive")
        expires = parse_time(body.get("expiry"))
        if expires is None:
            # The guide says attempts live about two minutes.
            expires = self._now() + timedelta(minutes=2)
        return {
            "ln_invoice": invoice,
            "amount_msat": msat,
            "sats": msat // 1000,
            "attempt_expires_at": iso_z(expires),
        }

    def _checkout_url(self, session_id: str) -> str:
        return self.checkout_base + quote(session_id, safe="")

    def _online_session(self, raw: Mapping[str, Any], fallback_expiry: datetime) -> PaymentSession:
        session_id = str(raw["paymentSessionId"])
        return PaymentSession(
            session_id=session_id,
            kind=InvoiceKind.CHECKOUT,
            checkout_url=self._checkout_url(session_id),
            expires_at=parse_time(raw.get("expiresAt")) or fallback_expiry,
            raw=dict(raw),
        )

    # -- operations ---------------------------------------------------------------------------
    def expect_existing(self, reference: str) -> None:
        self.http.mark_uncertain(reference)

    async def create_session(self, request: SessionRequest) -> PaymentSession:
        problem = self._unsupported(request)
        if problem is not None:
            raise problem
        pos = request.kind == InvoiceKind.LIGHTNING
        now = self._now()
        expires_in = request.expires_in or (self.pos_expiry if pos else self.online_expiry)
        body: dict[str, Any] = {
            "amount": request.amount_minor,
            "currencyIso3": request.currency.upper(),
            "expiry": self.api.expiry(now, expires_in),
            "reference": request.reference,
            "retailPos": pos,
        }
        if self.redirect_url:
            body["redirectUrl"] = self.redirect_url

        async def send() -> dict[str, Any]:
            return await self.http.request(
                "POST", self.api.create_session, json_body=body, retry=False,
                parse=self._session_object,
            )

        async def lookup() -> dict[str, Any] | None:
            return await self._lookup(request)

        raw = await self.http.create_with_lookup(request.reference, send, lookup)
        fallback_expiry = now + expires_in
        if not pos:
            return self._online_session(raw, fallback_expiry)
        session_id = str(raw["paymentSessionId"])
        # If the attempt fails, the session exists: the next create for this reference
        # finds it by reference instead of creating a second one.
        self.http.mark_uncertain(request.reference)
        attempt = await self._new_attempt(session_id)
        self.http.settle(request.reference)
        return PaymentSession(
            session_id=session_id,
            kind=InvoiceKind.LIGHTNING,
            checkout_url=None,
            expires_at=parse_time(raw.get("expiresAt")) or fallback_expiry,
            payment=attempt[0],
            raw={"session": raw, "attempt": attempt[1]},
        )

    async def _lookup(self, request: SessionRequest) -> dict[str, Any] | None:
        try:
            return await self.http.request(
                "GET", self.api.path(self.api.by_reference, reference=request.reference),
                parse=lambda body: self._found_session(request, body),
            )
        except GatewayNotFound:
            return None

    async def _new_attempt(self, session_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        def parse(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            return self._attempt_payment(body), body

        # A second attempt is harmless (it is what renewal does), so this one is retried.
        return await self.http.request(
            "POST",
            self.api.path(self.api.payment_attempts, id=session_id),
            json_body={"paymentMethod": "lightning", "retailPos": True},
            parse=parse,
        )

    async def renew_attempt(self, session_id: str) -> PaymentSession:
        payment, raw = await self._new_attempt(session_id)
        return PaymentSession(
            session_id=session_id, kind=InvoiceKind.LIGHTNING, payment=payment, raw=raw
        )

    def _status(self, body: Any) -> SessionStatus:
        if not isinstance(body, dict):
            raise MalformedAnswer("expected a JSON object")
        raw_status = body.get("status")
        if not isinstance(raw_status, str) or not raw_status:
            raise MalformedAnswer("no status")
        paid_at = parse_time(body.get("paidAt"))
        expires_at = parse_time(body.get("expiresAt"))
        funding = body.get("fundingStatus")
        available = body.get("fundingAmountAvailable")
        arrived = (
            available if isinstance(available, int) and not isinstance(available, bool) else 0
        )
        # Paid means `paidAt` and a paid status (the guides); a `fundingStatus` saying the
        # funds fall short (anything but well- or over-funded) is never booked as paid.
        short = isinstance(funding, str) and funding not in (WELL_FUNDED, OVER_FUNDED)
        detail = None
        says_paid = paid_at is not None and raw_status in self.api.paid_statuses
        if says_paid and not short:
            state = PaymentState.PAID
        elif short and (says_paid or arrived > 0):
            state = PaymentState.UNDERPAID
            detail = f"fundingStatus {funding}"
        elif expires_at is not None and self._now() >= expires_at:
            state = PaymentState.EXPIRED
        else:
            state = PaymentState.PENDING
        return SessionStatus(
            state=state,
            raw_status=raw_status,
            paid_at=paid_at if state == PaymentState.PAID else None,
            # fundingAmountAvailable: cents, like every Mion amount.
            paid_amount_minor=arrived if state == PaymentState.UNDERPAID and arrived else None,
            detail=detail,
            expires_at=expires_at,
            raw=body,
        )

    async def get_status(self, session_id: str, reference: str) -> SessionStatus:
        return await self.http.request(
            "GET", self.api.path(self.api.status, id=session_id), parse=self._status
        )

    async def register_callback(self, session_id: str, url: str) -> None:
        await self.http.request(
            "POST", self.api.path(self.api.webhooks, id=session_id), json_body={"url": url}
        )

    def parse_callback(self, body: bytes, content_type: str) -> CallbackHint:
        """Mion POSTs the status object: read its `paymentSessionId` (a hint only)."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError("Mion callback is not JSON") from exc
        if not isinstance(data, dict):
            raise ValueError("Mion callback is not a JSON object")
        session_id = data.get(self.api.webhook_session_field)
        if not isinstance(session_id, str) or not session_id.strip():
            raise ValueError(f"Mion callback has no {self.api.webhook_session_field}")
        reference = data.get("reference")
        return CallbackHint(
            session_id=session_id.strip(),
            reference=reference if isinstance(reference, str) and reference else None,
        )


__all__ = [
    "DEFAULT_CHECKOUT_URL",
    "EXPIRY_FORMATS",
    "MION_PAID_STATUSES",
    "MionApi",
    "MionGateway",
]
