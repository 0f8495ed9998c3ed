"""The sandbox: Tillbot's built-in gateway, so anyone can try the bot with only a bot token.

It is the Mion adapter (same wire format, same code path) pointed at an in-process
`MionSimulator(currencies=None)` that takes any currency. Payments are simulated:
`simulate_payment(session_id)` POSTs `{root_url}/_sim/sessions/{id}/pay` over HTTP through
the same injected client. The checkout URL comes from `checkout_url_for(session_id)` (the
wiring passes a function building a t.me deep link); by default it is the simulator's own
`{root_url}/checkout/{id}` page. With `auto_pay_seconds` (SANDBOX_AUTO_PAY_SECONDS) every new
session is paid by itself that many seconds after it was created (demos).

    runtime = await start_sandbox(client)      # (gateway, simulator), with .stop()
    gateway, simulator = runtime
    ...
    await runtime.stop()
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

import httpx

from bot.domain.models import InvoiceKind
from bot.gateways.base import GatewayError, PaymentSession, SessionRequest
from bot.gateways.http import Backoff, NowFn, RandomFn, SleepFn
from bot.gateways.mion import MionApi, MionGateway

if TYPE_CHECKING:  # the simulator comes from the test kit, imported only when started
    from testkit.mion import MionSimulator

logger = logging.getLogger("bot.gateways.sandbox")

SANDBOX_API_KEY = "sandbox"  # the local simulator's key: not a secret


class SandboxGateway(MionGateway):
    """Mion's wire format against a local simulator; any currency; payments simulated."""

    name = "sandbox"
    title = "Sandbox"
    kinds = frozenset({InvoiceKind.CHECKOUT, InvoiceKind.LIGHTNING})
    can_simulate = True
    key_setting = "the sandbox key"
    key_is_secret = False

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        api_url: str,
        root_url: str | None = None,
        api_key: str = SANDBOX_API_KEY,
        checkout_url_for: Callable[[str], str] | None = None,
        online_expiry: timedelta = timedelta(days=1),
        pos_expiry: timedelta = timedelta(minutes=15),
        api: MionApi | None = None,
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        sleep: SleepFn = asyncio.sleep,
        random: RandomFn = _random.random,
        now: NowFn | None = None,
        auto_pay_seconds: float | None = None,
    ) -> None:
        super().__init__(
            client,
            api_url=api_url,
            api_key=api_key,
            online_expiry=online_expiry,
            pos_expiry=pos_expiry,
            api=api,
            currencies=None,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            sleep=sleep,
            random=random,
            now=now,
        )
        self.root_url = (root_url or api_url).rstrip("/")
        self._checkout_url_for = checkout_url_for
        self.auto_pay_seconds = auto_pay_seconds
        self._auto_pay_tasks: set[asyncio.Task[None]] = set()

    @property
    def currencies(self) -> tuple[str, ...]:
        return ()  # any currency

    def _checkout_url(self, session_id: str) -> str:
        if self._checkout_url_for is not None:
            return self._checkout_url_for(session_id)
        return f"{self.root_url}/checkout/{quote(session_id, safe='')}"

    async def create_session(self, request: SessionRequest) -> PaymentSession:
        session = await super().create_session(request)
        if self.auto_pay_seconds is not None:
            task = asyncio.create_task(self._auto_pay(session.session_id, self.auto_pay_seconds))
            self._auto_pay_tasks.add(task)
            task.add_done_callback(self._auto_pay_tasks.discard)
        return session

    async def _auto_pay(self, session_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.simulate_payment(session_id)
        except GatewayError as exc:
            logger.info("sandbox auto-pay of %s skipped: %s", session_id, exc)

    async def aclose(self) -> None:
        """Cancel pending auto-payments."""
        tasks = list(self._auto_pay_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def simulate_payment(self, session_id: str) -> None:
        """Pay the session at the simulator (over HTTP, through the injected client)."""
        try:
            await self.http.request(
                "POST", f"{self.root_url}/_sim/sessions/{quote(session_id, safe='')}/pay",
                json_body={},
            )
        except GatewayError as exc:
            exc.user_message = f"The sandbox could not pay this invoice: {exc.user_message}"
            raise


class SandboxRuntime(NamedTuple):
    """A started sandbox: unpack as (gateway, simulator); `await runtime.stop()` at the end."""

    gateway: SandboxGateway
    simulator: MionSimulator

    async def stop(self) -> None:
        await self.gateway.aclose()
        await self.simulator.stop()


async def start_sandbox(
    client: httpx.AsyncClient,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    checkout_url_for: Callable[[str], str] | None = None,
    online_expiry: timedelta = timedelta(days=1),
    pos_expiry: timedelta = timedelta(minutes=15),
    max_retries: int = 3,
    request_timeout: float | None = None,
    clock: Callable[[], datetime] | None = None,
    auto_pay_seconds: float | None = None,
    backoff: Backoff | None = None,
    sleep: SleepFn = asyncio.sleep,
    random: RandomFn = _random.random,
    simulator: MionSimulator | None = None,
) -> SandboxRuntime:
    """Start an in-process Mion simulator taking any currency, and a gateway pointed at it.

    `clock` (aware UTC datetimes) drives both the simulator and the adapter.
    """
    from testkit.mion import MionSimulator

    sim = simulator or MionSimulator(
        api_key=SANDBOX_API_KEY, currencies=None, checkout_base=None, clock=clock
    )
    await sim.start(host=host, port=port)
    gateway = SandboxGateway(
        client,
        api_url=sim.url,
        root_url=sim.root_url,
        api_key=sim.api_key,
        checkout_url_for=checkout_url_for,
        online_expiry=online_expiry,
        pos_expiry=pos_expiry,
        max_retries=max_retries,
        timeout=request_timeout,
        backoff=backoff,
        sleep=sleep,
        random=random,
        now=clock,
        auto_pay_seconds=auto_pay_seconds,
    )
    logger.info("sandbox gateway simulator listening on %s", sim.root_url)
    return SandboxRuntime(gateway, sim)
