"""Mion (mion.group) simulator: the API Tillbot assumes for Mion, over HTTP.

Mion's API reference is not public; this follows exactly the assumed API of
``gateway-docs/api-notes.md`` (all relative to ``sim.url``, which is the server root)::

    POST /payment-sessions                      -> 201 session object
    GET  /payment-sessions/{id}                 -> 200 session object
    GET  /payment-sessions/{id}/status          -> 200 status object
    GET  /payment-sessions/by-reference/{ref}   -> 200 session object
    POST /payment-sessions/{id}/payment-attempts  {paymentMethod, retailPos} -> 201 attempt
    POST /payment-sessions/{id}/webhooks        {url} -> 201 {webhookId, paymentSessionId, url}

Authentication: header ``x-api-key``; missing or wrong -> 401 ``{"message": "Invalid API
key"}``. Errors are non-2xx with a JSON ``{"message": ...}`` body.

Documented behaviour (from the guides and api-notes): amounts in cents, ``currencyIso3``
(only "EUR" by default), ``retailPos``, the checkout page ``https://app.mion.group/checkout/
<paymentSessionId>``, payment attempts (``amountMsat``, ``blockedByCompliance``, ``expiry``
about 2 minutes, ``lnInvoice``, ``missingComplianceCustomerFields``, ``onChainAddress``,
``paymentMethod``, ``paymentSessionId``, ``suggestedFeeRate``), the status object
(``expiresAt``, ``feeStatus``, ``fundingAmountAvailable``, ``fundingStatus``, ``paidAt``,
``paymentMethod``, ``paymentSessionId``, ``refundSessionIds``, ``status``), paid means
``paidAt`` set and status one of ``funding-received``, ``funding-collected``, ``exchanged``,
``funded``; the status webhook POSTs the status object on each change.

Choices where the docs are silent (the simulator's, documented here):

* Unpaid status value: ``"created"``. Other non-paid values: ``"expired"`` (``expiresAt``
  passed without ``paidAt``), ``"failed"`` (``sim.fail``), ``"cancelled"`` (``sim.cancel``).
* After ``sim.pay``: ``"funding-received"`` with ``paidAt``, then ``"funded"`` once
  ``funded_after`` (default 0.3 s of ``sim.now()``; None: never by itself) has passed.
  ``sim.set_status(id, "funding-collected" | "exchanged" | ...)`` forces any value.
* ``feeStatus``/``fundingStatus``: ``"unknown"``/``"not-funded"`` until paid, then
  ``"correct"``/``"well-funded"`` (the guide's example values). ``fundingAmountAvailable``
  is the integer 0. ``paymentMethod`` is null until an attempt is requested or the session
  is paid (then ``"lightning"`` unless told otherwise). ``refundSessionIds`` is ``[]``.
* ``expiry`` on creation, in ONE format, the assumed one (``expiry_format``, default
  ``"iso"``: an ISO-8601 timestamp like every timestamp Mion returns, e.g. the attempt's
  ``expiry``; ``"unix"``: integer Unix seconds; ``"seconds"``: an integer duration). Any other
  shape -> 400 "Invalid expiry: expected ..."; not in the future -> 400. Missing ->
  ``default_expiry`` from now (24 h; ``default_expiry=None`` makes it required: 400 "expiry
  is required"). Stored as ``expiresAt``.
* ``reference`` is optional (the checkout guide calls it optional), a non-empty string
  unique per account: reuse -> 409 ``{"message": "A payment session with this reference
  already exists"}``. ``retailPos`` defaults to false; ``redirectUrl`` must be http(s).
* ``amount`` must be a JSON integer > 0 (``12.0``, ``"1200"``, ``true`` -> 400
  ``{"message": "amount must be a positive integer"}``). ``currencyIso3`` not in
  ``currencies`` -> 400 ``{"message": "Currency not supported"}``; ``currencies=None``
  (Tillbot's built-in sandbox gateway) accepts any 3-5 upper-case letter code.
* Unknown session id or reference -> 404 ``{"message": "Payment session not found"}``;
  unknown path -> 404 ``{"message": "Not Found"}``; invalid JSON -> 400.
* The session object (create, by id, by reference) is the status object plus ``amount``,
  ``currencyIso3``, ``reference``, ``retailPos``, ``redirectUrl``, ``createdAt`` and
  ``checkoutUrl`` (``checkout_base + id``; ``checkout_base=None`` uses the simulator's own
  page ``{root}/checkout/{id}``).
* Payment attempts: ``paymentMethod`` ``"lightning"`` or ``"onchain"`` (else 400);
  ``retailPos`` must be true (else 400); a paid, expired, failed or cancelled session -> 409.
  ``amountMsat = ceil(cents * 10^9 / btc_rate)`` computed with Decimal (the one
  ``btc_eur_rate`` is used whatever the currency). ``expiry = min(now + attempt_ttl,
  expiresAt)``. ``lnInvoice`` is a structurally valid mainnet BOLT11 string (bech32 checksum,
  amount, timestamp, payment hash, description, expiry; random signature, so not payable),
  unique per attempt; ``onChainAddress`` a bech32 ``bc1q...`` address;
  ``suggestedFeeRate`` 0 for lightning, 5 for onchain.
* ``sim.pay`` refuses (`InvalidTransition`) a session already paid, failed, cancelled or
  past ``expiresAt``, and a point-of-sale session whose latest attempt expired before the
  payment time; ``force=True`` pays anyway (a late payment).
* Webhooks: several URLs per session (one URL registered twice counts once); each gets the
  status object (``application/json``) on every status change, retried after each of
  ``callback_retry_delays`` (default 0, 0.1, 0.2, 0.4 s) until it answers 2xx.
* ``underpay`` is not supported (Lightning invoices are for a fixed amount).

Documented variants, produced on demand (methods, and the same over ``/_sim``):

* ``compliance(id, fields)`` (``POST /_sim/sessions/{id}/compliance {"fields": "a,b"}``):
  the session's payment attempts answer ``blockedByCompliance: true`` with those
  ``missingComplianceCustomerFields`` and no ``lnInvoice``; empty fields lift the block.
  ``MionSimulator(compliance_missing=[...])`` blocks every new session so.
* ``funding(id, status, available)`` (``POST /_sim/sessions/{id}/funding {"status":
  "under-funded", "available": 600}``): ``fundingStatus`` and ``fundingAmountAvailable``
  (cents) of the status object, e.g. money that arrived but falls short.
* ``vanish(id, seconds)`` (``POST /_sim/sessions/{id}/vanish {"seconds": 2}``): every
  request naming the session (by id or reference) answers 404 "Payment session not found"
  for that long (a gateway that briefly loses track of a session).
* ``lookup_mode`` (``POST /_sim/lookup {"mode": ...}``): how lookup by reference answers:
  ``"object"`` (default) the session object; ``"list"`` a JSON array of the sessions with
  that reference (``[]`` when none, status 200); ``"list-all"`` a JSON array of every
  session of the account, whatever the reference (an API that ignores the filter).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import Any, ClassVar

from aiohttp import web

from bot.gateways.bolt11 import make_bech32_address, make_bolt11
from testkit.gateway_base import (
    Clock,
    GatewaySimulator,
    InvalidTransition,
    SimSession,
    is_http_url,
    iso_z,
    json_response,
    parse_iso,
)

PAID_STATUSES = frozenset({"funding-received", "funding-collected", "exchanged", "funded"})
UNPAID_STATUS = "created"
ATTEMPT_METHODS = frozenset({"lightning", "onchain"})
EXPIRY_FORMATS = ("iso", "unix", "seconds")
_EXPIRY_WANTED = {"iso": "an ISO-8601 timestamp", "unix": "Unix seconds", "seconds": "seconds"}
LOOKUP_MODES = ("object", "list", "list-all")

_DEFAULT_ATTEMPT_TTL = timedelta(seconds=120)
_DEFAULT_FUNDED_AFTER = timedelta(seconds=0.3)
_DEFAULT_EXPIRY = timedelta(hours=24)
_DEFAULT_RATE = Decimal("60000")
_DEFAULT_CURRENCIES = frozenset({"EUR"})


@dataclass
class MionAttempt:
    payment_method: str
    amount_msat: int
    ln_invoice: str
    on_chain_address: str
    expiry: datetime
    created_at: datetime
    suggested_fee_rate: int = 0
    paid: bool = False


@dataclass
class MionSession(SimSession):
    retail_pos: bool = False
    redirect_url: str | None = None
    expiry_sent: Any = None  # the `expiry` value as received
    payment_method: str | None = None
    fee_status: str = "unknown"
    funding_status: str = "not-funded"
    funding_amount_available: int = 0
    refund_session_ids: list[str] = field(default_factory=list)
    attempts: list[MionAttempt] = field(default_factory=list)
    failure_reason: str | None = None
    compliance_missing: list[str] = field(default_factory=list)
    vanished_until: datetime | None = None

    @property
    def amount_cents(self) -> int:
        return int(self.amount)

    @property
    def webhooks(self) -> list[str]:
        return self.callback_urls

    @property
    def is_paid(self) -> bool:
        return self.paid_at is not None


class MionSimulator(GatewaySimulator[MionSession]):
    """Mion's assumed API; see the module docstring for every choice."""

    name: ClassVar[str] = "mion"
    api_prefix: ClassVar[str] = ""
    default_callback_retry_delays: ClassVar[tuple[float, ...]] = (0.0, 0.1, 0.2, 0.4)

    def __init__(
        self,
        api_key: str = "mion-sim-key",
        currencies: Iterable[str] | None = _DEFAULT_CURRENCIES,
        attempt_ttl: timedelta = _DEFAULT_ATTEMPT_TTL,
        btc_eur_rate: Decimal = _DEFAULT_RATE,
        checkout_base: str | None = "https://app.mion.group/checkout/",
        *,
        funded_after: timedelta | None = _DEFAULT_FUNDED_AFTER,
        default_expiry: timedelta | None = _DEFAULT_EXPIRY,
        expiry_format: str = "iso",
        api_key_header: str = "x-api-key",
        api_key_prefix: str = "",
        lookup_mode: str = "object",
        compliance_missing: Iterable[str] = (),
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
        self.api_key = api_key
        self.currencies: frozenset[str] | None = (
            None if currencies is None else frozenset(currencies)
        )
        self.attempt_ttl = attempt_ttl
        self.btc_eur_rate = Decimal(btc_eur_rate)
        self.checkout_base = checkout_base
        self.funded_after = funded_after
        self.default_expiry = default_expiry
        if expiry_format not in EXPIRY_FORMATS:
            raise ValueError(f"expiry_format must be one of {', '.join(EXPIRY_FORMATS)}")
        self.expiry_format = expiry_format
        self.api_key_header = api_key_header
        self.api_key_prefix = api_key_prefix
        self.lookup_mode = lookup_mode
        self.compliance_missing = list(compliance_missing)  # for every new session
        self._by_reference: dict[str, str] = {}

    # -- helpers --------------------------------------------------------------------------------

    def checkout_url(self, session_id: str) -> str:
        base = self.checkout_base
        if base is None:
            base = f"{self.root_url}/checkout/"
        return base + session_id

    def amount_msat(self, cents: int) -> int:
        """mSat for `cents` at the configured rate: ceil(cents * 10^9 / rate), exact."""
        with localcontext() as ctx:
            ctx.prec = 60
            value = Decimal(cents) * Decimal(10) ** 9 / self.btc_eur_rate
            return int(value.to_integral_value(rounding=ROUND_CEILING))

    def _vanished(self, session: MionSession) -> bool:
        return session.vanished_until is not None and self.now() < session.vanished_until

    def _find_session(self, key: str) -> MionSession | None:
        sid = self._by_reference.get(key)
        return self.sessions.get(sid) if sid else None

    def _reset_extra(self) -> None:
        self._by_reference.clear()

    def _error_response(self, status: int, message: str) -> web.Response:
        return json_response({"message": message}, status)

    def _err(self, status: int, message: str) -> web.Response:
        return self._error_response(status, message)

    def _is_create(self, request: web.Request) -> bool:
        return request.method == "POST" and request.path.rstrip("/") == "/payment-sessions"

    def _auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get(self.api_key_header)
        expected = (self.api_key_prefix + self.api_key).encode()
        if not key or not secrets.compare_digest(key.encode(), expected):
            return self._err(401, "Invalid API key")
        return None

    def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        rec = self.record(request)
        if rec.parse_error is not None:
            return self._err(400, "Invalid JSON body")
        if not isinstance(rec.parsed, dict):
            return self._err(400, "Request body must be a JSON object")
        return rec.parsed

    def _lookup(self, session_id: str) -> MionSession | web.Response:
        session = self.sessions.get(session_id)
        if session is None or self._vanished(session):
            return self._err(404, "Payment session not found")
        return session

    def status_object(self, session: MionSession) -> dict[str, Any]:
        return {
            "expiresAt": iso_z(session.expires_at) if session.expires_at else None,
            "feeStatus": session.fee_status,
            "fundingAmountAvailable": session.funding_amount_available,
            "fundingStatus": session.funding_status,
            "paidAt": iso_z(session.paid_at) if session.paid_at else None,
            "paymentMethod": session.payment_method,
            "paymentSessionId": session.id,
            "refundSessionIds": list(session.refund_session_ids),
            "status": session.status,
        }

    def session_object(self, session: MionSession) -> dict[str, Any]:
        data: dict[str, Any] = {
            "paymentSessionId": session.id,
            "amount": session.amount_cents,
            "currencyIso3": session.currency,
            "reference": session.reference,
            "retailPos": session.retail_pos,
            "redirectUrl": session.redirect_url,
            "createdAt": iso_z(session.created_at),
            "checkoutUrl": self.checkout_url(session.id),
        }
        data.update(self.status_object(session))
        return data

    @staticmethod
    def attempt_object(session: MionSession, attempt: MionAttempt) -> dict[str, Any]:
        blocked = bool(session.compliance_missing)
        return {
            "amountMsat": attempt.amount_msat,
            "blockedByCompliance": blocked,
            "expiry": iso_z(attempt.expiry),
            "lnInvoice": None if blocked else attempt.ln_invoice,
            "missingComplianceCustomerFields": list(session.compliance_missing),
            "onChainAddress": None if blocked else attempt.on_chain_address,
            "paymentMethod": attempt.payment_method,
            "paymentSessionId": session.id,
            "suggestedFeeRate": attempt.suggested_fee_rate,
        }

    def _parse_expiry(self, value: Any, now: datetime) -> datetime | str:
        """The expiry as a timestamp, or the error message: only `expiry_format` is taken."""
        if value is None:
            if self.default_expiry is None:
                return "expiry is required"
            return now + self.default_expiry
        if self.expiry_format == "iso":
            if isinstance(value, str):
                try:
                    return parse_iso(value)
                except ValueError:
                    pass
            return "Invalid expiry: expected an ISO-8601 timestamp"
        if not isinstance(value, int) or isinstance(value, bool):
            return f"Invalid expiry: expected {_EXPIRY_WANTED[self.expiry_format]}"
        if self.expiry_format == "unix":
            if value < 1_000_000_000:
                return "Invalid expiry: expected Unix seconds"
            return datetime.fromtimestamp(value, tz=now.tzinfo)
        if value <= 0:
            return "expiry must be in the future"
        return now + timedelta(seconds=value)

    # -- routes ---------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/payment-sessions", self._create)
        app.router.add_get("/payment-sessions/by-reference/{reference}", self._get_by_reference)
        app.router.add_get("/payment-sessions/{id}", self._get)
        app.router.add_get("/payment-sessions/{id}/status", self._get_status)
        app.router.add_post("/payment-sessions/{id}/payment-attempts", self._new_attempt)
        app.router.add_post("/payment-sessions/{id}/webhooks", self._add_webhook)

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = self._body(request)
        if isinstance(body, web.Response):
            return body
        now = self.now()
        amount = body.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            return self._err(400, "amount must be a positive integer")
        currency = body.get("currencyIso3")
        if not isinstance(currency, str):
            return self._err(400, "currencyIso3 is required")
        if self.currencies is None:
            if not re.fullmatch(r"[A-Z]{3,5}", currency):
                return self._err(400, "Currency not supported")
        elif currency not in self.currencies:
            return self._err(400, "Currency not supported")
        expires_at = self._parse_expiry(body.get("expiry"), now)
        if isinstance(expires_at, str):
            return self._err(400, expires_at)
        if expires_at <= now:
            return self._err(400, "expiry must be in the future")
        reference = body.get("reference")
        if reference is not None and (not isinstance(reference, str) or not reference.strip()):
            return self._err(400, "reference must be a non-empty string")
        retail_pos = body.get("retailPos", False)
        if not isinstance(retail_pos, bool):
            return self._err(400, "retailPos must be a boolean")
        redirect_url = body.get("redirectUrl")
        if redirect_url is not None and not is_http_url(redirect_url):
            return self._err(400, "redirectUrl must be a valid http(s) URL")
        if reference is not None and reference in self._by_reference:
            return self._err(409, "A payment session with this reference already exists")
        session = MionSession(
            id=str(uuid.uuid4()),
            amount=Decimal(amount),
            currency=currency,
            reference=reference,
            status=UNPAID_STATUS,
            created_at=now,
            expires_at=expires_at,
            retail_pos=retail_pos,
            redirect_url=redirect_url,
            expiry_sent=body.get("expiry"),
            compliance_missing=list(self.compliance_missing),
        )
        session.history.append((now, UNPAID_STATUS))
        self.sessions[session.id] = session
        if reference is not None:
            self._by_reference[reference] = session.id
        self.create_count += 1
        return json_response(self.session_object(session), 201)

    async def _get(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        found = self._lookup(request.match_info["id"])
        if isinstance(found, web.Response):
            return found
        return json_response(self.session_object(found))

    async def _get_status(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        found = self._lookup(request.match_info["id"])
        if isinstance(found, web.Response):
            return found
        return json_response(self.status_object(found))

    async def _get_by_reference(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        reference = request.match_info["reference"]
        if self.lookup_mode == "list-all":
            return json_response(
                [self.session_object(s) for s in self.sessions.values() if not self._vanished(s)]
            )
        sid = self._by_reference.get(reference)
        found = self.sessions[sid] if sid is not None else None
        if found is not None and self._vanished(found):
            found = None
        if self.lookup_mode == "list":
            return json_response([] if found is None else [self.session_object(found)])
        if found is None:
            return self._err(404, "Payment session not found")
        return json_response(self.session_object(found))

    async def _new_attempt(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        found = self._lookup(request.match_info["id"])
        if isinstance(found, web.Response):
            return found
        body = self._body(request)
        if isinstance(body, web.Response):
            return body
        method = body.get("paymentMethod")
        if method not in ATTEMPT_METHODS:
            return self._err(400, "paymentMethod must be one of: lightning, onchain")
        if body.get("retailPos") is not True:
            return self._err(400, "retailPos must be true for point-of-sale payment attempts")
        session = found
        if session.is_paid:
            return self._err(409, "Payment session is already paid")
        if session.status != UNPAID_STATUS:
            return self._err(409, f"Payment session is {session.status}")
        attempt = self.new_attempt(session, str(method))
        return json_response(self.attempt_object(session, attempt), 201)

    def new_attempt(self, session: MionSession, method: str = "lightning") -> MionAttempt:
        """Create a payment attempt (what the HTTP endpoint does after its checks)."""
        now = self.now()
        expiry = now + self.attempt_ttl
        if session.expires_at is not None:
            expiry = min(expiry, session.expires_at)
        msat = self.amount_msat(session.amount_cents)
        attempt = MionAttempt(
            payment_method=method,
            amount_msat=msat,
            ln_invoice=(
                make_bolt11(msat, now, self.attempt_ttl, f"Mion payment {session.id}")
                if method == "lightning"
                else ""
            ),
            on_chain_address=make_bech32_address(),
            expiry=expiry,
            created_at=now,
            suggested_fee_rate=0 if method == "lightning" else 5,
        )
        session.attempts.append(attempt)
        session.payment_method = method
        return attempt

    async def _add_webhook(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        found = self._lookup(request.match_info["id"])
        if isinstance(found, web.Response):
            return found
        body = self._body(request)
        if isinstance(body, web.Response):
            return body
        url = body.get("url")
        if not is_http_url(url):
            return self._err(400, "url must be a valid http(s) URL")
        assert isinstance(url, str)
        if url not in found.callback_urls:
            found.callback_urls.append(url)
        webhook_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{found.id}|{url}"))
        return json_response(
            {"webhookId": webhook_id, "paymentSessionId": found.id, "url": url}, 201
        )

    # -- time and callbacks ---------------------------------------------------------------------

    def _advance(self, session: MionSession, now: datetime) -> None:
        if (
            session.paid_at is None
            and session.status == UNPAID_STATUS
            and session.expires_at is not None
            and now >= session.expires_at
        ):
            self._set_status(session, "expired", session.expires_at)
        if (
            session.status == "funding-received"
            and session.paid_at is not None
            and self.funded_after is not None
            and now >= session.paid_at + self.funded_after
        ):
            self._set_status(session, "funded", now)
            session.funding_amount_available = 0

    def _on_status_change(self, session: MionSession, old: str) -> None:
        payload = self.status_object(session)
        for url in session.callback_urls:
            self._send_callback(url, payload, _is_2xx, session.id)

    def _checkout_lines(self, session: MionSession) -> list[tuple[str, str]]:
        major = Decimal(session.amount_cents) / 100
        return [
            ("Amount", f"{major:.2f} {session.currency}"),
            ("Reference", session.reference or "-"),
            ("Status", session.status),
            ("Expires", iso_z(session.expires_at) if session.expires_at else "-"),
        ]

    def _checkout_return(self, session: MionSession) -> str | None:
        return session.redirect_url

    # -- controls -------------------------------------------------------------------------------

    def pay(
        self,
        session_id: str,
        at: datetime | None = None,
        *,
        force: bool = False,
        payment_method: str | None = None,
    ) -> MionSession:
        session = self.session(session_id)
        now = self.now()
        self._advance(session, now)
        when = at or now
        if session.is_paid:
            raise InvalidTransition(f"session {session.id} is already paid")
        if not force:
            if session.status in ("failed", "cancelled"):
                raise InvalidTransition(f"session {session.id} is {session.status}")
            if session.status == "expired" or (
                session.expires_at is not None and when >= session.expires_at
            ):
                raise InvalidTransition(f"session {session.id} has expired")
            if session.attempts and when >= session.attempts[-1].expiry:
                raise InvalidTransition(
                    f"the latest payment attempt of {session.id} expired at "
                    f"{iso_z(session.attempts[-1].expiry)}: request a new attempt "
                    "(or pay with force=True)"
                )
        if session.attempts:
            session.attempts[-1].paid = True
        session.paid_at = when
        session.payment_method = payment_method or session.payment_method or "lightning"
        session.fee_status = "correct"
        session.funding_status = "well-funded"
        self._set_status(session, "funding-received", when)
        self._advance(session, now)
        return session

    def expire(self, session_id: str) -> MionSession:
        session = self.session(session_id)
        if session.is_paid or session.status != UNPAID_STATUS:
            raise InvalidTransition(f"session {session.id} is {session.status}")
        now = self.now()
        if session.expires_at is None or session.expires_at > now:
            session.expires_at = now
        self._set_status(session, "expired", now)
        return session

    def fail(self, session_id: str, reason: str | int | None = None) -> MionSession:
        session = self.session(session_id)
        if session.is_paid or session.status != UNPAID_STATUS:
            raise InvalidTransition(f"session {session.id} is {session.status}")
        session.failure_reason = None if reason is None else str(reason)
        self._set_status(session, "failed")
        return session

    def cancel(self, session_id: str) -> MionSession:
        session = self.session(session_id)
        if session.is_paid or session.status != UNPAID_STATUS:
            raise InvalidTransition(f"session {session.id} is {session.status}")
        self._set_status(session, "cancelled")
        return session

    def set_status(self, session_id: str, status: str) -> MionSession:
        session = self.session(session_id)
        if status in PAID_STATUSES and session.paid_at is None:
            session.paid_at = self.now()
            session.payment_method = session.payment_method or "lightning"
            session.fee_status = "correct"
            session.funding_status = "well-funded"
        self._set_status(session, status)
        return session

    # -- documented variants ------------------------------------------------------------------

    def compliance(self, session_id: str, fields: Iterable[str]) -> MionSession:
        """Block the session's payment attempts for compliance, naming the missing fields."""
        session = self.session(session_id)
        session.compliance_missing = [f for f in fields if f]
        return session

    def funding(self, session_id: str, status: str, available: int = 0) -> MionSession:
        """Set `fundingStatus` and `fundingAmountAvailable` (cents)."""
        session = self.session(session_id)
        session.funding_status = status
        session.funding_amount_available = int(available)
        return session

    def vanish(self, session_id: str, seconds: float) -> MionSession:
        """Answer 404 for the session (by id and by reference) for `seconds`."""
        session = self.session(session_id)
        session.vanished_until = self.now() + timedelta(seconds=seconds)
        return session

    def _http_control(self, session_id: str, action: str, params: dict[str, Any]) -> MionSession:
        if action == "compliance":
            raw = params.get("fields", "")
            fields = raw if isinstance(raw, list) else str(raw).split(",")
            return self.compliance(session_id, [str(f).strip() for f in fields])
        if action == "funding":
            status = params.get("status")
            if not isinstance(status, str) or not status:
                raise ValueError("status is required")
            return self.funding(session_id, status, int(params.get("available", 0)))
        if action == "vanish":
            return self.vanish(session_id, float(params.get("seconds", 0)))
        return super()._http_control(session_id, action, params)

    def _add_control_routes(self, app: web.Application) -> None:
        super()._add_control_routes(app)
        app.router.add_post("/_sim/lookup", self._ctl_lookup)

    async def _ctl_lookup(self, request: web.Request) -> web.Response:
        mode = (await self._ctl_params(request)).get("mode")
        if mode not in LOOKUP_MODES:
            return json_response(
                {"ok": False, "error": f"mode must be one of {', '.join(LOOKUP_MODES)}"}, 400
            )
        self.lookup_mode = str(mode)
        return json_response({"ok": True, "mode": self.lookup_mode})

    def _http_pay(
        self, session_id: str, at: datetime | None, force: bool, params: dict[str, Any]
    ) -> MionSession:
        method = params.get("payment_method")
        return self.pay(
            session_id, at, force=force, payment_method=method if isinstance(method, str) else None
        )


def _is_2xx(status: int, body: bytes) -> bool:
    return 200 <= status < 300
