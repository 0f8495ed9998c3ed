"""MiraclePay (api.miraclecash.info) simulator: the External Payments API over HTTP.

``sim.url`` is the server root (it stands for ``https://api.miraclecash.info``)::

    POST /external/payments/prompt      {amount, blockchainIds, payer, note?, redirectUrl?}
        -> 201 {prompt: {id, amount, commissionAmount, status: "pending", sessionStatus,
                         expiresAt, createdAt, redirectUrl}, checkoutUrl}
    GET  /external/payments/prompt/{id} -> 200 {id, blockchainId, status, createdAt}
    GET  /external/blockchains/active   -> 200 the chains with a payment address

Authentication: ``Authorization: Basic base64(clientId:apiKey)`` on every endpoint.
Errors: ``{statusCode, message, error}`` with the guide's messages:
401 "Basic authorization header is required" (missing or malformed), "Invalid client ID",
"Invalid API key", "User is not active" (``active=False``), "User is not a merchant admin"
(``merchant_admin=False``); 400 "No redirect domains configured", "Redirect URL domain not
allowed", "Invalid redirect URL format", "No payment addresses configured", "Missing
payment addresses for some blockchains"; 404 "Payment prompt not found". ``error`` is the
HTTP reason phrase ("Unauthorized", "Bad Request", "Not Found").

Documented behaviour followed: ``amount`` is a JSON number in USD with at most 2 decimals
(parsed from the raw JSON text with Decimal: ``20.50`` accepted, ``20.505`` refused),
``payer`` ``customer`` (the commission is added to ``prompt.amount``) or ``merchant`` (it is
not), ``prompt.commissionAmount`` a string, ``expiresAt`` 24 h after ``createdAt``, the
redirect URL's hostname must exactly match an allowed domain, every requested blockchain
needs a payment address (``active_blockchains``), statuses ``pending`` (not final),
``successful``, ``unsuccessful``, ``expired``, ``cancelled`` (final). No callbacks.

Choices where the docs are silent (the simulator's, documented here):

* Commission: ``commission_rate`` (default 3 %) of the amount, rounded half-up to cents
  (the guide's example: 100.50 -> "3.02", amount 103.52). ``prompt.amount`` is written as a
  JSON number without trailing zeros (103.5, not 103.50).
* Validation errors (400, ``error`` "Bad Request") carry one string ``message`` in
  class-validator wording, e.g. "amount must be a number conforming to the specified
  constraints" (not a number, or more than 2 decimals), "amount must be a positive number",
  "blockchainIds should not be empty", "payer must be one of the following values:
  customer, merchant", "redirectUrl must be shorter than or equal to 2048 characters".
  (A real NestJS server may send an array of messages; adapters should accept both.)
* Order of checks: authentication, body validation, blockchains (an unknown or unconfigured
  id counts as a missing address; none configured -> "No payment addresses configured"),
  redirect URL ("No redirect domains configured" first, then the format, then the domain).
* ``GET /external/blockchains/active`` answers a JSON array of ``{"id", "name",
  "isTestnet"}`` objects, sorted by id.
* ``GET .../prompt/{id}``: ``blockchainId`` is null until paid, unless the prompt allows a
  single chain (then that chain); after ``sim.pay`` it is the chain paid on (the first
  requested one unless ``blockchain_id=`` says otherwise). Unknown id -> 404.
* ``checkoutUrl`` is ``checkout_base + id`` (default the guide's
  ``https://checkout.miraclepay.com/?sessionId=``); ``checkout_base=None`` uses the
  simulator's own page ``{root}/checkout/{id}``.
* ``redirect_domains`` default: ``t.me``, ``localhost``, ``127.0.0.1``,
  ``shop.example.com``; pass an empty set to get "No redirect domains configured".
* Controls: ``pay`` -> ``successful``, ``fail`` -> ``unsuccessful``, ``expire`` ->
  ``expired`` (also by itself at ``expiresAt``), ``cancel`` -> ``cancelled``; ``underpay``
  is not supported (no such notion in the API). ``sessionStatus`` follows ``status``.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar

from aiohttp import web

from testkit.gateway_base import (
    Clock,
    GatewaySimulator,
    InvalidTransition,
    SimSession,
    iso_z,
    json_response,
    reason_phrase,
)

STATUSES = ("pending", "successful", "unsuccessful", "expired", "cancelled")
BLOCKCHAIN_NAMES: dict[str, str] = {
    "btc": "Bitcoin",
    "eth": "Ethereum",
    "eth-usdc": "USDC (Ethereum)",
    "sol": "Solana",
    "tron": "Tron",
    "tron-usdt": "USDT (Tron)",
    "tron-usdc": "USDC (Tron)",
    "btc-test": "Bitcoin Testnet",
    "eth-test": "Ethereum Testnet",
}
DEFAULT_ACTIVE_BLOCKCHAINS = frozenset(BLOCKCHAIN_NAMES)
DEFAULT_REDIRECT_DOMAINS = frozenset({"t.me", "localhost", "127.0.0.1", "shop.example.com"})
DEFAULT_CHECKOUT_BASE = "https://checkout.miraclepay.com/?sessionId="
_PROMPT_TTL = timedelta(hours=24)
_COMMISSION = Decimal("0.03")
_CENT = Decimal("0.01")
_NUMBER_MESSAGE = "amount must be a number conforming to the specified constraints"


@dataclass
class MiraclePaySession(SimSession):
    """One payment prompt; ``amount`` is the requested USD amount, ``reference`` the note."""

    payer: str = "customer"
    blockchain_ids: list[str] = field(default_factory=list)
    redirect_url: str | None = None
    commission_amount: Decimal = Decimal(0)
    total_amount: Decimal = Decimal(0)  # prompt.amount
    blockchain_id: str | None = None
    session_status: str = "pending"
    failure_reason: str | None = None

    @property
    def note(self) -> str | None:
        return self.reference


class MiraclePaySimulator(GatewaySimulator[MiraclePaySession]):
    """MiraclePay's External Payments API; see the module docstring for every choice."""

    name: ClassVar[str] = "miraclepay"
    api_prefix: ClassVar[str] = ""

    def __init__(
        self,
        client_id: str = "miraclepay-sim-client",
        api_key: str = "miraclepay-sim-key",
        active_blockchains: Iterable[str] = DEFAULT_ACTIVE_BLOCKCHAINS,
        redirect_domains: Iterable[str] = DEFAULT_REDIRECT_DOMAINS,
        *,
        commission_rate: Decimal = _COMMISSION,
        prompt_ttl: timedelta = _PROMPT_TTL,
        checkout_base: str | None = DEFAULT_CHECKOUT_BASE,
        active: bool = True,
        merchant_admin: bool = True,
        clock: Clock | None = None,
        tick_interval: float = 0.05,
    ) -> None:
        super().__init__(clock=clock, callback_retry_delays=(), tick_interval=tick_interval)
        self.client_id = client_id
        self.api_key = api_key
        self.active_blockchains: set[str] = set(active_blockchains)
        self.redirect_domains: set[str] = {d.lower() for d in redirect_domains}
        self.commission_rate = Decimal(commission_rate)
        self.prompt_ttl = prompt_ttl
        self.checkout_base = checkout_base
        self.active = active
        self.merchant_admin = merchant_admin

    # -- helpers --------------------------------------------------------------------------------

    def checkout_url(self, prompt_id: str) -> str:
        base = self.checkout_base
        if base is None:
            base = f"{self.root_url}/checkout/"
        return base + prompt_id

    def _error_response(self, status: int, message: str) -> web.Response:
        return json_response(
            {"statusCode": status, "message": message, "error": reason_phrase(status)}, status
        )

    def _err(self, status: int, message: str) -> web.Response:
        return self._error_response(status, message)

    def _is_create(self, request: web.Request) -> bool:
        return request.method == "POST" and request.path.rstrip("/") == "/external/payments/prompt"

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            return self._err(401, "Basic authorization header is required")
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return self._err(401, "Basic authorization header is required")
        client_id, sep, api_key = decoded.partition(":")
        if not sep:
            return self._err(401, "Basic authorization header is required")
        if not secrets.compare_digest(client_id.encode(), self.client_id.encode()):
            return self._err(401, "Invalid client ID")
        if not secrets.compare_digest(api_key.encode(), self.api_key.encode()):
            return self._err(401, "Invalid API key")
        if not self.active:
            return self._err(401, "User is not active")
        if not self.merchant_admin:
            return self._err(401, "User is not a merchant admin")
        return None

    @staticmethod
    def _amount_json(value: Decimal) -> Decimal:
        """As a JS number prints: no trailing zeros, never an exponent."""
        normal = value.normalize()
        return normal.quantize(Decimal(1)) if normal == normal.to_integral() else normal

    def prompt_object(self, session: MiraclePaySession) -> dict[str, Any]:
        return {
            "id": session.id,
            "amount": self._amount_json(session.total_amount),
            "commissionAmount": f"{session.commission_amount:.2f}",
            "status": session.status,
            "sessionStatus": session.session_status,
            "expiresAt": iso_z(session.expires_at, millis=True) if session.expires_at else None,
            "createdAt": iso_z(session.created_at, millis=True),
            "redirectUrl": session.redirect_url,
        }

    def status_object(self, session: MiraclePaySession) -> dict[str, Any]:
        chain = session.blockchain_id
        if chain is None and len(session.blockchain_ids) == 1:
            chain = session.blockchain_ids[0]
        return {
            "id": session.id,
            "blockchainId": chain,
            "status": session.status,
            "createdAt": iso_z(session.created_at, millis=True),
        }

    # -- routes ---------------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/external/payments/prompt", self._create)
        app.router.add_get("/external/payments/prompt/{id}", self._get)
        app.router.add_get("/external/blockchains/active", self._active)

    async def _create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        rec = self.record(request)
        try:  # the raw JSON text, numbers as Decimal (no float on the way)
            body = json.loads(rec.body, parse_float=Decimal) if rec.body.strip() else None
        except (ValueError, UnicodeDecodeError):
            return self._err(400, "Invalid JSON body")
        if not isinstance(body, dict):
            return self._err(400, "Request body must be a JSON object")
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)):
            return self._err(400, _NUMBER_MESSAGE)
        amount = Decimal(amount)
        exponent = amount.normalize().as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -2:  # NaN/Infinity, or > 2 decimals
            return self._err(400, _NUMBER_MESSAGE)
        if amount <= 0:
            return self._err(400, "amount must be a positive number")
        chains = body.get("blockchainIds")
        if not isinstance(chains, list):
            return self._err(400, "blockchainIds must be an array")
        if not chains:
            return self._err(400, "blockchainIds should not be empty")
        if not all(isinstance(c, str) for c in chains):
            return self._err(400, "each value in blockchainIds must be a string")
        payer = body.get("payer")
        if payer not in ("customer", "merchant"):
            return self._err(400, "payer must be one of the following values: customer, merchant")
        note = body.get("note")
        if note is not None and not isinstance(note, str):
            return self._err(400, "note must be a string")
        redirect_url = body.get("redirectUrl")
        if redirect_url is not None:
            if not isinstance(redirect_url, str):
                return self._err(400, "redirectUrl must be a string")
            if len(redirect_url) > 2048:
                return self._err(400, "redirectUrl must be shorter than or equal to 2048 characters")
        configured = [c for c in chains if c in self.active_blockchains]
        if not configured:
            return self._err(400, "No payment addresses configured")
        if len(configured) != len(chains):
            return self._err(400, "Missing payment addresses for some blockchains")
        if redirect_url is not None:
            if not self.redirect_domains:
                return self._err(400, "No redirect domains configured")
            host = _url_host(redirect_url)
            if host is None:
                return self._err(400, "Invalid redirect URL format")
            if host not in self.redirect_domains:
                return self._err(400, "Redirect URL domain not allowed")

        now = self.now()
        commission = (amount * self.commission_rate).quantize(_CENT, rounding=ROUND_HALF_UP)
        session = MiraclePaySession(
            id=str(uuid.uuid4()),
            amount=amount,
            currency="USD",
            reference=note,
            status="pending",
            created_at=now,
            expires_at=now + self.prompt_ttl,
            payer=str(payer),
            blockchain_ids=[str(c) for c in chains],
            redirect_url=redirect_url,
            commission_amount=commission,
            total_amount=amount + commission if payer == "customer" else amount,
        )
        session.history.append((now, "pending"))
        self.sessions[session.id] = session
        self.create_count += 1
        return json_response(
            {"prompt": self.prompt_object(session), "checkoutUrl": self.checkout_url(session.id)},
            201,
        )

    async def _get(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return self._err(404, "Payment prompt not found")
        return json_response(self.status_object(session))

    async def _active(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        return json_response(
            [
                {"id": c, "name": BLOCKCHAIN_NAMES.get(c, c), "isTestnet": c.endswith("-test")}
                for c in sorted(self.active_blockchains)
            ]
        )

    # -- time -----------------------------------------------------------------------------------

    def _advance(self, session: MiraclePaySession, now: datetime) -> None:
        if session.status == "pending" and session.expires_at and now >= session.expires_at:
            self._move(session, "expired", session.expires_at)

    def _move(self, session: MiraclePaySession, status: str, at: datetime | None = None) -> None:
        session.session_status = status
        self._set_status(session, status, at)

    def _checkout_lines(self, session: MiraclePaySession) -> list[tuple[str, str]]:
        return [
            ("Amount", f"{session.total_amount:.2f} USD"),
            ("Note", session.note or "-"),
            ("Blockchains", ", ".join(session.blockchain_ids)),
            ("Status", session.status),
        ]

    def _checkout_return(self, session: MiraclePaySession) -> str | None:
        if not session.redirect_url:
            return None
        query = urllib.parse.urlencode({"promptId": session.id, "status": session.status})
        sep = "&" if "?" in session.redirect_url else "?"
        return f"{session.redirect_url}{sep}{query}"

    # -- controls -------------------------------------------------------------------------------

    def _pending(self, session_id: str) -> MiraclePaySession:
        session = self.session(session_id)
        self._advance(session, self.now())
        if session.status != "pending":
            raise InvalidTransition(f"prompt {session.id} is {session.status}")
        return session

    def pay(
        self,
        session_id: str,
        at: datetime | None = None,
        *,
        force: bool = False,
        blockchain_id: str | None = None,
    ) -> MiraclePaySession:
        session = self.session(session_id)
        self._advance(session, self.now())
        if session.status == "successful":
            raise InvalidTransition(f"prompt {session.id} is already paid")
        if session.status != "pending" and not force:
            raise InvalidTransition(f"prompt {session.id} is {session.status}")
        if blockchain_id is not None and blockchain_id not in session.blockchain_ids:
            raise ValueError(f"{blockchain_id} is not one of the prompt's blockchains")
        session.blockchain_id = blockchain_id or session.blockchain_ids[0]
        session.paid_at = at or self.now()
        self._move(session, "successful", at)
        return session

    def fail(self, session_id: str, reason: str | int | None = None) -> MiraclePaySession:
        session = self._pending(session_id)
        session.failure_reason = None if reason is None else str(reason)
        self._move(session, "unsuccessful")
        return session

    def expire(self, session_id: str) -> MiraclePaySession:
        session = self._pending(session_id)
        now = self.now()
        if session.expires_at is None or session.expires_at > now:
            session.expires_at = now
        self._move(session, "expired", now)
        return session

    def cancel(self, session_id: str) -> MiraclePaySession:
        session = self._pending(session_id)
        self._move(session, "cancelled")
        return session

    def set_status(self, session_id: str, status: str) -> MiraclePaySession:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        session = self.session(session_id)
        if status == "successful" and session.paid_at is None:
            session.paid_at = self.now()
            session.blockchain_id = session.blockchain_id or session.blockchain_ids[0]
        self._move(session, status)
        return session

    def _http_pay(
        self, session_id: str, at: datetime | None, force: bool, params: dict[str, Any]
    ) -> MiraclePaySession:
        chain = params.get("blockchain_id")
        return self.pay(
            session_id, at, force=force, blockchain_id=chain if isinstance(chain, str) else None
        )


def _url_host(url: str) -> str | None:
    """The hostname of an absolute http(s) URL, or None when it is not one."""
    if not url or any(c.isspace() for c in url):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return host.lower()
