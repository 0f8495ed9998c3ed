"""The sandbox's side of the wire: Mion's assumed API, answered in-process from the database.

`SandboxBank` is the state machine of sandbox payment sessions. Its state lives in the bot's
own database (`sandbox_sessions`, through the repository), so every instance sharing the
database sees the same sessions, and every change is a compare-and-set on the row's version.

`SandboxApi` answers the Mion adapter's requests (the paths and JSON of `MionApi`'s defaults)
from the bank, as an `httpx.MockTransport` handler: the sandbox gateway is the real Mion
adapter over a transport that opens no socket. There is no fault and no control endpoint;
simulating a payment is a call to `SandboxBank.pay`, not a request.

Sessions (Mion's vocabulary): "created" until paid ("funded", with `paidAt`), past
`expiresAt` ("expired"); point-of-sale sessions get Lightning payment attempts that live two
minutes. With `auto_pay_after`, a new session is paid by itself that long after it was
created (demos). Time only acts when a session is read or changed: nothing runs in the
background.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any
from urllib.parse import unquote

import httpx

from bot.domain.models import SandboxSession
from bot.gateways.bolt11 import make_bech32_address, make_bolt11
from bot.gateways.mion import MION_PAID_STATUSES, MionApi
from bot.times import iso_z, parse_time
from storage.base import Repository

SANDBOX_URL = "https://sandbox.tillbot.invalid"  # never resolved: the transport answers
SANDBOX_API_KEY = "sandbox"  # public: nothing to protect

UNPAID = "created"
PAID = "funded"
EXPIRED = "expired"
ATTEMPT_TTL = timedelta(minutes=2)
BTC_RATE = Decimal("60000")  # minor units of any currency per bitcoin, for attempt amounts
_CURRENCY = re.compile(r"[A-Z]{3,5}")
_CHANGE_TRIES = 20


class SandboxRefused(Exception):
    """What the sandbox refuses, with the HTTP status Mion would answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def advance(session: SandboxSession, now: datetime) -> SandboxSession:
    """What time has done to a session: paid by itself (auto-pay), or expired."""
    if session.status != UNPAID or session.paid_at is not None:
        return session
    auto = session.auto_pay_at
    if auto is not None and auto <= now and auto < session.expires_at:
        return replace(session, status=PAID, paid_at=auto,
                       payment_method=session.payment_method or "lightning")
    if now >= session.expires_at:
        return replace(session, status=EXPIRED)
    return session


def amount_msat(amount_minor: int) -> int:
    """The attempt's amount: ceil(minor * 10^9 / BTC_RATE) millisatoshi, exact."""
    with localcontext() as ctx:
        ctx.prec = 60
        value = Decimal(amount_minor) * Decimal(10) ** 9 / BTC_RATE
        return int(value.to_integral_value(rounding=ROUND_CEILING))


class SandboxBank:
    """Sandbox sessions in the repository; every change is a compare-and-set."""

    def __init__(
        self,
        repo: Repository,
        *,
        clock: Callable[[], datetime],
        auto_pay_after: timedelta | None = None,
    ) -> None:
        self.repo = repo
        self.clock = clock
        self.auto_pay_after = auto_pay_after

    async def open(
        self,
        *,
        reference: str | None,
        amount_minor: int,
        currency: str,
        retail_pos: bool,
        expires_at: datetime,
    ) -> SandboxSession:
        """A new unpaid session; 409 when the reference is taken."""
        now = self.clock()
        session = SandboxSession(
            session_id=str(uuid.uuid4()),
            reference=reference,
            amount_minor=amount_minor,
            currency=currency,
            retail_pos=retail_pos,
            status=UNPAID,
            created_at=now,
            expires_at=expires_at,
            auto_pay_at=now + self.auto_pay_after if self.auto_pay_after is not None else None,
        )
        if not await self.repo.sandbox_insert(session):
            raise SandboxRefused(409, "A payment session with this reference already exists")
        return session

    async def session(self, session_id: str) -> SandboxSession | None:
        found = await self.repo.sandbox_get(session_id)
        return None if found is None else advance(found, self.clock())

    async def by_reference(self, reference: str) -> SandboxSession | None:
        found = await self.repo.sandbox_by_reference(reference)
        return None if found is None else advance(found, self.clock())

    async def change(
        self, session_id: str, edit: Callable[[SandboxSession, datetime], SandboxSession]
    ) -> SandboxSession:
        """Apply `edit` (which may raise SandboxRefused) to the session as time left it, as a
        compare-and-set; read again and retry when another writer came first."""
        for _ in range(_CHANGE_TRIES):
            stored = await self.repo.sandbox_get(session_id)
            if stored is None:
                raise SandboxRefused(404, "Payment session not found")
            now = self.clock()
            changed = edit(advance(stored, now), now)
            if changed == stored:
                return stored
            if await self.repo.sandbox_update(stored, changed):
                return replace(changed, version=stored.version + 1)
        raise SandboxRefused(503, "The payment session is busy, try again")

    async def new_attempt(self, session_id: str) -> SandboxSession:
        """A new Lightning payment attempt of a point-of-sale session."""

        def attempt(session: SandboxSession, now: datetime) -> SandboxSession:
            if session.paid_at is not None:
                raise SandboxRefused(409, "Payment session is already paid")
            if session.status != UNPAID:
                raise SandboxRefused(409, f"Payment session is {session.status}")
            return replace(
                session,
                attempts=session.attempts + 1,
                attempt_expires_at=min(now + ATTEMPT_TTL, session.expires_at),
                payment_method="lightning",
            )

        return await self.change(session_id, attempt)

    async def pay(self, session_id: str, *, force: bool = False) -> SandboxSession:
        """Pay the session now ("Simulate payment"); `force` also pays an expired one."""

        def pay(session: SandboxSession, now: datetime) -> SandboxSession:
            if session.paid_at is not None or session.status in MION_PAID_STATUSES:
                raise SandboxRefused(409, "Payment session is already paid")
            if not force:
                if session.status == EXPIRED:
                    raise SandboxRefused(409, "Payment session has expired")
                if session.status != UNPAID:
                    raise SandboxRefused(409, f"Payment session is {session.status}")
                if session.attempt_expires_at is not None and now >= session.attempt_expires_at:
                    raise SandboxRefused(409, "The Lightning invoice has expired: wait for "
                                              "the new one")
            return replace(session, status=PAID, paid_at=now,
                           payment_method=session.payment_method or "lightning")

        return await self.change(session_id, pay)


Route = Callable[[httpx.Request, dict[str, str]], Awaitable[httpx.Response]]


class SandboxApi:
    """Mion's assumed API (`MionApi()`'s paths and JSON) answered from a `SandboxBank`."""

    def __init__(self, bank: SandboxBank, *, api_key: str = SANDBOX_API_KEY) -> None:
        self.bank = bank
        self.api_key = api_key
        api = MionApi()
        self.routes: list[tuple[str, re.Pattern[str], Route]] = [
            ("POST", _pattern(api.create_session), self._create),
            ("GET", _pattern(api.status), self._status),
            ("GET", _pattern(api.by_reference), self._by_reference),
            ("GET", _pattern(api.session), self._session),
            ("POST", _pattern(api.payment_attempts), self._attempt),
        ]

    def transport(self) -> httpx.MockTransport:
        """An in-process transport for an `httpx.AsyncClient`: no socket is opened."""
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request of the Mion adapter."""
        key = request.headers.get("x-api-key", "")
        if not secrets.compare_digest(key.encode(), self.api_key.encode()):
            return _error(401, "Invalid API key")
        path = request.url.path
        for method, pattern, route in self.routes:
            match = pattern.fullmatch(path)
            if match is not None and request.method == method:
                params = {name: unquote(value) for name, value in match.groupdict().items()}
                try:
                    return await route(request, params)
                except SandboxRefused as refused:
                    return _error(refused.status, refused.message)
        return _error(404, "Not Found")

    async def _create(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        body = _body(request)
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise SandboxRefused(400, "amount must be a positive integer")
        currency = body.get("currencyIso3")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise SandboxRefused(400, "Currency not supported")
        expires_at = parse_time(body.get("expiry")) if isinstance(body.get("expiry"), str) else None
        if expires_at is None:
            raise SandboxRefused(400, "Invalid expiry: expected an ISO-8601 timestamp")
        if expires_at <= self.bank.clock():
            raise SandboxRefused(400, "expiry must be in the future")
        reference = body.get("reference")
        if reference is not None and (not isinstance(reference, str) or not reference):
            raise SandboxRefused(400, "reference must be a non-empty string")
        retail_pos = body.get("retailPos", False)
        if not isinstance(retail_pos, bool):
            raise SandboxRefused(400, "retailPos must be a boolean")
        session = await self.bank.open(
            reference=reference, amount_minor=amount, currency=currency,
            retail_pos=retail_pos, expires_at=expires_at,
        )
        return _json(201, session_object(session))

    async def _found(self, session_id: str) -> SandboxSession:
        session = await self.bank.session(session_id)
        if session is None:
            raise SandboxRefused(404, "Payment session not found")
        return session

    async def _session(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        return _json(200, session_object(await self._found(params["id"])))

    async def _status(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        return _json(200, status_object(await self._found(params["id"])))

    async def _by_reference(
        self, request: httpx.Request, params: dict[str, str]
    ) -> httpx.Response:
        session = await self.bank.by_reference(params["reference"])
        if session is None:
            raise SandboxRefused(404, "Payment session not found")
        return _json(200, session_object(session))

    async def _attempt(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        body = _body(request)
        if body.get("paymentMethod") != "lightning":
            raise SandboxRefused(400, "paymentMethod must be lightning")
        if body.get("retailPos") is not True:
            raise SandboxRefused(400, "retailPos must be true for point-of-sale payment attempts")
        session = await self.bank.new_attempt(params["id"])
        return _json(201, attempt_object(session, self.bank.clock()))


def status_object(session: SandboxSession) -> dict[str, Any]:
    """Mion's status object of a session."""
    paid = session.paid_at is not None
    return {
        "expiresAt": iso_z(session.expires_at),
        "feeStatus": "correct" if paid else "unknown",
        "fundingAmountAvailable": 0,
        "fundingStatus": "well-funded" if paid else "not-funded",
        "paidAt": iso_z(session.paid_at) if session.paid_at is not None else None,
        "paymentMethod": session.payment_method,
        "paymentSessionId": session.session_id,
        "refundSessionIds": [],
        "status": session.status,
    }


def session_object(session: SandboxSession) -> dict[str, Any]:
    """Mion's session object: the status object and what the session was created with."""
    return {
        "amount": session.amount_minor,
        "currencyIso3": session.currency,
        "reference": session.reference,
        "retailPos": session.retail_pos,
        "redirectUrl": None,
        "createdAt": iso_z(session.created_at),
        "checkoutUrl": f"{SANDBOX_URL}/checkout/{session.session_id}",
        **status_object(session),
    }


def attempt_object(session: SandboxSession, now: datetime) -> dict[str, Any]:
    """Mion's payment attempt: a Lightning invoice (of the look, never payable)."""
    msat = amount_msat(session.amount_minor)
    expires = session.attempt_expires_at or now + ATTEMPT_TTL
    return {
        "amountMsat": msat,
        "blockedByCompliance": False,
        "expiry": iso_z(expires),
        "lnInvoice": make_bolt11(
            msat, now, max(expires - now, timedelta(seconds=1)),
            f"Tillbot sandbox {session.session_id}",
        ),
        "missingComplianceCustomerFields": [],
        "onChainAddress": make_bech32_address(),
        "paymentMethod": "lightning",
        "paymentSessionId": session.session_id,
        "suggestedFeeRate": 0,
    }


def _pattern(template: str) -> re.Pattern[str]:
    escaped = re.escape(template)
    for name in ("id", "reference"):
        escaped = escaped.replace(re.escape("{" + name + "}"), f"(?P<{name}>[^/]+)")
    return re.compile(escaped)


def _body(request: httpx.Request) -> dict[str, Any]:
    try:
        body = json.loads(request.content or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SandboxRefused(400, "Invalid JSON body") from exc
    if not isinstance(body, dict):
        raise SandboxRefused(400, "Request body must be a JSON object")
    return body


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def _error(status: int, message: str) -> httpx.Response:
    return _json(status, {"message": message})
