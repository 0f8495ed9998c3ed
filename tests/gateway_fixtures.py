"""Fixtures for the gateway adapter tests: each adapter against its simulator on 127.0.0.1.

Import into a test module: `from tests.gateway_fixtures import gw, harness, CASES, ...`.

`harness(case)` starts the simulator, builds the adapter exactly as production does (an
injected `httpx.AsyncClient`, base URL and credentials as constructor arguments) with a fake
clock: retry sleeps and MixPay's budget sleeps return at once and advance `FakeTime.now`,
and are recorded, so backoff and Retry-After can be measured without waiting.

Cases: sandbox, mion-online, mion-pos, mixpay-checkout, mixpay-onchain, miraclepay.
Credentials are marker values, to prove they never reach a message or a log.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.domain.models import InvoiceKind, utcnow
from bot.gateways.base import Gateway, SessionRequest
from bot.gateways.budget import RequestBudget
from bot.gateways.http import Backoff
from bot.gateways.mion import MionGateway
from bot.gateways.miraclepay import MiraclePayGateway
from bot.gateways.mixpay import MixPayGateway
from bot.gateways.sandbox import SandboxGateway
from bot.gateways.sandbox_api import SandboxBank
from storage import open_repository
from storage.base import Repository
from testkit.gateway_base import GatewaySimulator, RecordedRequest
from testkit.mion import MionSimulator
from testkit.miraclepay import MiraclePaySimulator
from testkit.mixpay import BTC, DEFAULT_PAYEE_ID, USDT_ERC20, MixPaySimulator
from tests.sandbox_kit import SandboxSim

MION_KEY = "mion-key-MARKER-7d1f0c93"
MIRACLE_CLIENT_ID = "mp-client-MARKER-2b9a41"
MIRACLE_KEY = "mp-key-MARKER-9e4c1177"
MIRACLE_TOKEN = base64.b64encode(f"{MIRACLE_CLIENT_ID}:{MIRACLE_KEY}".encode()).decode()
MIXPAY_PAYEE = DEFAULT_PAYEE_ID
MIXPAY_SETTLEMENT = USDT_ERC20
MIXPAY_PAYMENT_ASSET = BTC
SECRET_MARKERS = (MION_KEY, MIRACLE_CLIENT_ID, MIRACLE_KEY, MIRACLE_TOKEN)

CASES = ("sandbox", "mion-online", "mion-pos", "mixpay-checkout", "mixpay-onchain", "miraclepay")
MION_CASES = ("sandbox", "mion-online", "mion-pos")
MIXPAY_CASES = ("mixpay-checkout", "mixpay-onchain")

# Per case: the invoice kind, currency and amount the contract suite uses.
KIND = {
    "sandbox": InvoiceKind.CHECKOUT,
    "mion-online": InvoiceKind.CHECKOUT,
    "mion-pos": InvoiceKind.LIGHTNING,
    "mixpay-checkout": InvoiceKind.CHECKOUT,
    "mixpay-onchain": InvoiceKind.ONCHAIN,
    "miraclepay": InvoiceKind.CHECKOUT,
}
CURRENCY = {
    "sandbox": "GBP",
    "mion-online": "EUR",
    "mion-pos": "EUR",
    "mixpay-checkout": "USD",
    "mixpay-onchain": "USD",
    "miraclepay": "USD",
}
AMOUNT = {
    "sandbox": 1250,
    "mion-online": 1250,
    "mion-pos": 1250,
    "mixpay-checkout": 1000,
    "mixpay-onchain": 1250,
    "miraclepay": 2050,
}
CREATE_PATH = {
    "sandbox": "/payment-sessions",
    "mion-online": "/payment-sessions",
    "mion-pos": "/payment-sessions",
    "mixpay-checkout": "/v1/one_time_payment",
    "mixpay-onchain": "/v1/payments",
    "miraclepay": "/external/payments/prompt",
}

TEST_BACKOFF = Backoff(base=0.5, factor=2.0, max_delay=4.0, max_retry_after=30.0)
TEST_TIMEOUT = 0.5  # seconds per attempt (real time: the hang tests use it)


class FakeTime:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []  # retry sleeps (the HTTP module)
        self.budget_sleeps: list[float] = []  # RequestBudget sleeps

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    async def budget_sleep(self, seconds: float) -> None:
        self.budget_sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


@dataclass
class Harness:
    case: str
    sim: Any  # the case's simulator (MionSimulator, MixPaySimulator, MiraclePaySimulator)
    gateway: Gateway
    client: httpx.AsyncClient
    time: FakeTime
    kind: InvoiceKind
    currency: str
    amount_minor: int
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def request(
        self,
        *,
        amount_minor: int | None = None,
        currency: str | None = None,
        reference: str | None = None,
        kind: InvoiceKind | None = None,
        description: str = "Coffee and cake",
        expires_in: timedelta | None = timedelta(hours=1),
        callback_url: str | None = None,
    ) -> SessionRequest:
        return SessionRequest(
            reference=reference or f"tillbot-{next(self._ids)}",
            amount_minor=self.amount_minor if amount_minor is None else amount_minor,
            currency=currency or self.currency,
            description=description,
            kind=kind or self.kind,
            expires_in=expires_in,
            callback_url=callback_url,
        )

    @property
    def create_path(self) -> str:
        return CREATE_PATH[self.case]

    def creates(self) -> list[RecordedRequest]:
        return [
            r for r in self.sim.requests
            if r.method == "POST" and r.path.rstrip("/") == self.create_path
        ]

    def status_requests(self) -> list[RecordedRequest]:
        return [r for r in self.sim.requests if r.method == "GET"]

    @property
    def family(self) -> str:
        if self.case in MION_CASES:
            return "mion"
        if self.case in MIXPAY_CASES:
            return "mixpay"
        return "miraclepay"


@asynccontextmanager
async def harness(
    case: str,
    *,
    wrong_credentials: bool = False,
    max_retries: int = 3,
    request_timeout: float = TEST_TIMEOUT,
    budget_per_minute: int = 50,
    client_hooks: list[Callable[[httpx.Request], Any]] | None = None,
    sim_options: dict[str, Any] | None = None,
    adapter_options: dict[str, Any] | None = None,
) -> AsyncIterator[Harness]:
    """Start `case`'s simulator and adapter; stop both at the end."""
    fake = FakeTime()
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(5.0), trust_env=False,
        event_hooks={"request": list(client_hooks or [])},
    )
    sim_kw = dict(sim_options or {})
    ad_kw = dict(adapter_options or {})
    common: dict[str, Any] = {
        "max_retries": max_retries, "timeout": request_timeout, "backoff": TEST_BACKOFF,
        "sleep": fake.sleep, "random": lambda: 0.5,
    }
    sim: GatewaySimulator[Any] | SandboxSim
    gateway: Gateway
    sandbox_repo: Repository | None = None
    workdir = tempfile.TemporaryDirectory(prefix="tillbot-sandbox-")
    try:
        if case == "sandbox":
            # The sandbox's sessions live in a database: a real SQLite file, as in the bot.
            sandbox_repo = await open_repository(f"sqlite:///{workdir.name}/sandbox.db")
            sim = SandboxSim(SandboxBank(sandbox_repo, clock=utcnow))
            sandbox_client = httpx.AsyncClient(
                transport=sim.transport(), timeout=httpx.Timeout(5.0),
                event_hooks={"request": list(client_hooks or [])},
            )
            await client.aclose()
            client = sandbox_client
            gateway = SandboxGateway(
                sim.bank, client=client,
                api_key=MION_KEY + "-wrong" if wrong_credentials else "sandbox", **common,
            )
        elif case in ("mion-online", "mion-pos"):
            sim = MionSimulator(api_key=MION_KEY, **sim_kw)
            await sim.start()
            gateway = MionGateway(
                client, api_url=sim.url,
                api_key=MION_KEY + ("-wrong" if wrong_credentials else ""),
                **common, **ad_kw,
            )
        elif case in MIXPAY_CASES:
            sim_kw.setdefault("rate_limit_time", fake.monotonic)
            sim = MixPaySimulator(**sim_kw)
            await sim.start()
            budget = RequestBudget(budget_per_minute, clock=fake.monotonic, sleep=fake.budget_sleep)
            gateway = MixPayGateway(
                client, api_url=sim.url,
                payee_id=MIXPAY_PAYEE if not wrong_credentials else "0f0f0f0f-wrong-payee",
                settlement_asset_id=MIXPAY_SETTLEMENT, quote_asset_id="usd",
                payment_asset_id=MIXPAY_PAYMENT_ASSET, budget=budget, **common, **ad_kw,
            )
        elif case == "miraclepay":
            sim = MiraclePaySimulator(client_id=MIRACLE_CLIENT_ID, api_key=MIRACLE_KEY, **sim_kw)
            await sim.start()
            gateway = MiraclePayGateway(
                client, api_url=sim.url, client_id=MIRACLE_CLIENT_ID,
                api_key=MIRACLE_KEY + ("-wrong" if wrong_credentials else ""),
                **{"blockchains": ["btc", "eth"], "payer": "customer", **ad_kw}, **common,
            )
        else:
            raise ValueError(case)
        yield Harness(
            case=case, sim=sim, gateway=gateway, client=client, time=fake, kind=KIND[case],
            currency=CURRENCY[case], amount_minor=AMOUNT[case],
        )
    finally:
        if sandbox_repo is not None:
            await sandbox_repo.close()
        elif "sim" in locals() and not isinstance(sim, SandboxSim):
            await sim.stop()
        await client.aclose()
        workdir.cleanup()


@pytest.fixture(params=CASES)
async def gw(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """One harness per adapter case."""
    async with harness(request.param) as h:
        yield h
