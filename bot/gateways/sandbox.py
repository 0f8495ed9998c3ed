"""The sandbox: Tillbot's built-in gateway, so anyone can try the bot with only a bot token.

It is the Mion adapter (same wire format, same code path) whose HTTP client answers in
process: `SandboxApi` (bot/gateways/sandbox_api.py) is its transport, and the sessions are
rows of the bot's own database. No socket is opened, there is no fault or control endpoint,
and several instances on one database share the sandbox's sessions. Any currency; payments
are simulated (`simulate_payment`, the Simulate payment button). The checkout URL comes from
`checkout_url_for(session_id)` (the wiring passes a function building a t.me deep link). With
`auto_pay_seconds` (SANDBOX_AUTO_PAY_SECONDS) every new session is paid by itself that many
seconds after it was created (demos).

    gateway = open_sandbox(repo, clock=clock, checkout_url_for=...)
    ...
    await gateway.aclose()
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote

import httpx

from bot.domain.models import InvoiceKind, utcnow
from bot.domain.money import known_exponent
from bot.gateways.base import (
    GatewayError,
    GatewayNotFound,
    GatewayRejected,
    GatewayUnavailable,
)
from bot.gateways.http import Backoff, NowFn, RandomFn, SleepFn
from bot.gateways.mion import MionGateway
from bot.gateways.sandbox_api import (
    SANDBOX_API_KEY,
    SANDBOX_URL,
    SandboxApi,
    SandboxBank,
    SandboxRefused,
)
from storage.base import Repository


class SandboxGateway(MionGateway):
    """Mion's wire format against the in-process sandbox; any currency; payments simulated."""

    name = "sandbox"
    title = "Sandbox"
    kinds = frozenset({InvoiceKind.CHECKOUT, InvoiceKind.LIGHTNING})
    can_simulate = True
    supports_callbacks = False  # the sandbox calls no one: its sessions are polled
    key_setting = "the sandbox key"
    key_is_secret = False

    def __init__(
        self,
        bank: SandboxBank,
        *,
        client: httpx.AsyncClient | None = None,
        api_key: str = SANDBOX_API_KEY,
        checkout_url_for: Callable[[str], str] | None = None,
        online_expiry: timedelta = timedelta(days=1),
        pos_expiry: timedelta = timedelta(minutes=15),
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        sleep: SleepFn = asyncio.sleep,
        random: RandomFn = _random.random,
        now: NowFn | None = None,
    ) -> None:
        """`client`: by default one over `SandboxApi(bank).transport()` (closed by
        `aclose`); a test may pass its own around that transport."""
        self.bank = bank
        self._own_client = client is None
        if client is None:
            client = httpx.AsyncClient(transport=SandboxApi(bank).transport())
        super().__init__(
            client,
            api_url=SANDBOX_URL,
            api_key=api_key,
            online_expiry=online_expiry,
            pos_expiry=pos_expiry,
            currencies=None,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            sleep=sleep,
            random=random,
            now=now or bank.clock,
        )
        self.client = client
        self.root_url = SANDBOX_URL
        self._checkout_url_for = checkout_url_for

    @property
    def currencies(self) -> tuple[str, ...]:
        return ()  # any currency whose minor unit Tillbot knows

    def accepts_currency(self, currency: str) -> bool:
        """Any ISO 4217 currency Tillbot knows the decimals of (EUR, USD, JPY, ...); not
        crypto (`BTC`), whose amounts no sandbox checkout would show."""
        return known_exponent(currency) is not None

    def _checkout_url(self, session_id: str) -> str:
        if self._checkout_url_for is not None:
            return self._checkout_url_for(session_id)
        return f"{self.root_url}/checkout/{quote(session_id, safe='')}"

    async def aclose(self) -> None:
        """Close the client this gateway made."""
        if self._own_client:
            await self.client.aclose()

    async def simulate_payment(self, session_id: str) -> None:
        """Pay the session in the sandbox (the Simulate payment button)."""
        try:
            await self.bank.pay(session_id)
        except SandboxRefused as refused:
            raise _refusal(refused, session_id) from None


def _refusal(refused: SandboxRefused, session_id: str) -> GatewayError:
    text = f"sandbox: cannot pay {session_id}: {refused.message}"
    user_message = f"The sandbox could not pay this invoice: {refused.message}"
    if refused.status == 404:
        return GatewayNotFound(text, gateway="sandbox", code="404", user_message=user_message)
    if refused.status >= 500:
        return GatewayUnavailable(text, gateway="sandbox", code="busy", user_message=user_message)
    return GatewayRejected(
        text, gateway="sandbox", code=str(refused.status), user_message=user_message
    )


def open_sandbox(
    repo: Repository,
    *,
    clock: Callable[[], datetime] = utcnow,
    checkout_url_for: Callable[[str], str] | None = None,
    auto_pay_seconds: float | None = None,
) -> SandboxGateway:
    """The sandbox gateway on `repo` (migrated), its sessions timed by `clock` (aware UTC)."""
    auto_pay = timedelta(seconds=auto_pay_seconds) if auto_pay_seconds is not None else None
    bank = SandboxBank(repo, clock=clock, auto_pay_after=auto_pay)
    return SandboxGateway(bank, checkout_url_for=checkout_url_for)
