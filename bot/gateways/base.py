"""The one interface every payment gateway adapter implements, and our error tree.

Adapters translate everything at the edge: the payment service sees only the types below
and never an httpx exception or a gateway's JSON.

Errors (all carry `retryable` and a `user_message` fit to show a merchant):

    GatewayError
     ├── GatewayUnavailable      retryable: timeout, connection error, 5xx, malformed answer
     │    └── GatewayRateLimited  retryable: 429 / MixPay code 1429; `retry_after` seconds
     ├── GatewayAuthError        not retryable: wrong or missing credentials (401/403)
     ├── GatewayRejected         not retryable: the gateway refused the request (validation,
     │    │                      currency not supported, redirect domain not allowed, ...)
     │    └── GatewayComplianceBlocked  a payment blocked by compliance (Mion); names the
     │                           customer details that are missing
     ├── GatewayNotFound         not retryable: no such session / reference
     └── GatewayUnsupported      not retryable: this gateway cannot do that (currency, kind)

Messages never contain credentials, request URLs with secrets, or raw bodies with secrets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.domain.ledger import Settlement
from bot.domain.models import InvoiceKind


class GatewayError(Exception):
    """A gateway call failed; `retryable` says whether trying again later may succeed."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        gateway: str = "",
        retryable: bool | None = None,
        code: str | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.gateway = gateway
        if retryable is not None:
            self.retryable = retryable
        self.code = code
        self.user_message = user_message or message


class GatewayUnavailable(GatewayError):
    retryable = True


class GatewayRateLimited(GatewayUnavailable):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class GatewayAuthError(GatewayError):
    retryable = False


class GatewayRejected(GatewayError):
    retryable = False


class GatewayComplianceBlocked(GatewayRejected):
    """The gateway's compliance checks block the payment until the customer gives details."""

    def __init__(self, message: str, *, missing_fields: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.missing_fields = missing_fields


class GatewayNotFound(GatewayError):
    retryable = False


class GatewayUnsupported(GatewayError):
    retryable = False


class PaymentState(StrEnum):
    """A gateway status normalised to what Tillbot acts on."""

    PENDING = "pending"
    PAID = "paid"
    UNDERPAID = "underpaid"  # money arrived but less than asked; not final by itself
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What Tillbot asks a gateway for: a payment session for one invoice."""

    reference: str  # our invoice id as the gateway sees it (`reference_for` in payments)
    amount_minor: int
    currency: str  # ISO 4217 upper case, e.g. "EUR"
    description: str
    kind: InvoiceKind
    expires_in: timedelta | None = None
    callback_url: str | None = None  # where the gateway may POST status hints


@dataclass(frozen=True, slots=True)
class PaymentSession:
    """A created session and what the customer needs to pay it."""

    session_id: str
    kind: InvoiceKind
    checkout_url: str | None = None
    expires_at: datetime | None = None
    # Shown to the customer, by kind (stored as Invoice.payment):
    #   lightning: {"ln_invoice", "amount_msat", "attempt_expires_at" (ISO 8601)}
    #   onchain:   {"address", "crypto_amount", "crypto_symbol", "attempt_expires_at"?}
    payment: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """A session's status normalised, with what is needed to check it matches the invoice."""

    state: PaymentState
    raw_status: str
    paid_at: datetime | None = None
    failure_reason: str | None = None
    # For matching a status to the invoice before acting on it (None: gateway does not say).
    amount_minor: int | None = None
    currency: str | None = None
    payee: str | None = None
    # For underpaid sessions: how much arrived / is missing, in the invoice's minor units
    # when the gateway says so, else a display string in `detail`.
    paid_amount_minor: int | None = None
    detail: str | None = None
    expires_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    # The gateway is still working on this payment (money may be on its way or confirming):
    # a pending status with this flag is never turned into a local expiry.
    processing: bool = False
    # PAID counts only when payee, currency and amount are all present and equal to the
    # invoice's (MixPay's security guideline); anything else never pays and alerts admins.
    strict_match: bool = False
    # What the payer sent and what was due, as the gateway writes them ("0.0001 BTC"), for
    # underpaid, overpaid and failed-with-money notices.
    received: str | None = None
    due: str | None = None
    # Money arrived but the payment failed: the payer must be refunded.
    refund_due: bool = False
    # An overpayment ("0.00001 BTC") and the gateway's refund status of it.
    surplus: str | None = None
    surplus_status: str | None = None
    # What the gateway reports about the money, for the ledger (bot/gateways/settlement.py).
    settlement: Settlement | None = None


@dataclass(frozen=True, slots=True)
class CallbackHint:
    """What a gateway callback says: which session to re-read. Never proof of payment."""

    session_id: str | None = None
    reference: str | None = None
    payee: str | None = None


class Gateway(ABC):
    """A payment gateway adapter. Gets its `httpx.AsyncClient` from the wiring."""

    name: str
    title: str  # shown to merchants, e.g. "Mion"
    kinds: frozenset[InvoiceKind] = frozenset({InvoiceKind.CHECKOUT})

    @abstractmethod
    def accepts_currency(self, currency: str) -> bool: ...

    @property
    @abstractmethod
    def currencies(self) -> tuple[str, ...]:
        """The currencies this gateway takes, for replies ('Mion takes EUR')."""

    @abstractmethod
    async def create_session(self, request: SessionRequest) -> PaymentSession:
        """Create a session; when the answer is lost, find it by reference before retrying."""

    @abstractmethod
    async def get_status(self, session_id: str, reference: str) -> SessionStatus: ...

    def expect_existing(self, reference: str) -> None:
        """A creation for `reference` may have reached the gateway before this process (or
        another) died: the next `create_session` for it looks it up by reference first.
        Gateways without a lookup by reference create anew."""
        return None

    # -- optional abilities -----------------------------------------------------------------
    supports_renewal: bool = False
    supports_callbacks: bool = False
    supports_cancel: bool = False
    can_simulate: bool = False

    async def check_setup(self) -> list[str]:
        """Ask the gateway whether our configuration can work (at start); one line per
        problem, naming the setting to change. Raises GatewayError when it cannot tell."""
        return []

    async def renew_attempt(self, session_id: str) -> PaymentSession:
        """Request a new payment attempt (Mion point of sale Lightning)."""
        raise GatewayUnsupported(f"{self.name} cannot renew payment attempts", gateway=self.name)

    async def renew_payment(self, session_id: str, payment: Mapping[str, Any]) -> PaymentSession:
        """Renew with what the current payment data says (MixPay sends back its clientId)."""
        return await self.renew_attempt(session_id)

    async def register_callback(self, session_id: str, url: str) -> None:
        """Ask the gateway to POST status changes to `url` (Mion's status webhook)."""
        raise GatewayUnsupported(f"{self.name} has no callback registration", gateway=self.name)

    def parse_callback(self, body: bytes, content_type: str) -> CallbackHint:
        """Read a callback body; raises ValueError when it is malformed."""
        raise GatewayUnsupported(f"{self.name} sends no callbacks", gateway=self.name)

    def callback_response(self) -> tuple[int, Mapping[str, Any]]:
        """The HTTP answer a processed callback gets (MixPay wants {"code": "SUCCESS"})."""
        return 200, {"ok": True}

    async def cancel(self, session_id: str) -> bool:
        """Cancel at the gateway; False when the gateway has no such ability."""
        return False

    async def simulate_payment(self, session_id: str) -> None:
        """Sandbox only: pay the session at the simulator."""
        raise GatewayUnsupported(f"{self.name} cannot simulate payments", gateway=self.name)

    @property
    def request_interval(self) -> timedelta | None:
        """The minimum spacing of status requests this gateway's budget allows, if any."""
        return None
