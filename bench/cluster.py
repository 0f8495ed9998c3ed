"""Several bot instances on one PostgreSQL database: one Telegram budget between them.

`Cluster` runs N `python -m bot` processes in webhook mode behind a round-robin HTTPS
front (as behind a load balancer), on a database of their own on the PostgreSQL server of
`TILLBOT_BENCH_DATABASE_URL`, else `TEST_DATABASE_URL` (default: the tests'
`postgresql://postgres@127.0.0.1:5432/test`),
against the Bot API emulator and the Mion simulator of this process. The benchmark's
"burst across instances" and the multi-process tests of the shared budget use it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.proc import ChildProcess, child_env, free_port
from bench.stack import ADMIN_ID, BOT_USERNAME, MION_KEY, TOKEN, Tracker, merchant_ids
from bot.config import Settings
from storage import open_repository
from storage.base import Repository
from testkit import seeding
from testkit.mion import MionSimulator
from testkit.telegram import BotApiEmulator
from testkit.tls import TlsFront

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
PACED = ("send", "edit", "copy", "forward")
# An admin's payment notices, one alone or the lines of a digest: each names an invoice by
# its merchant's own number and the merchant ("... · merchant Name (id)" or "... · merchant id").
ADMIN_NAMES = re.compile(
    r"(?:Invoice #(\d+) paid:|^#(\d+):)[^\n]*· merchant (?:[^\n(]*\()?(\d+)", re.MULTILINE
)


def admin_named(text: str) -> list[tuple[int, int]]:
    """(merchant, number) of each payment a notice or digest names."""
    return [
        (int(merchant), int(single or listed))
        for single, listed, merchant in ADMIN_NAMES.findall(text)
    ]


def server_url() -> str:
    return os.environ.get(
        "TILLBOT_BENCH_DATABASE_URL", os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    )


async def create_database() -> str:
    """A new, empty database on the server of `server_url()`; its URL."""
    return await seeding.create_database(server_url(), "tillbot_bench")


async def drop_database(database_url: str) -> None:
    await seeding.drop_database(server_url(), database_url)


@dataclass
class Sample:
    chat: int
    message_id: int
    session_id: str
    invoice_id: int


@dataclass
class Cluster:
    """The emulator, Mion and N bot processes sharing one PostgreSQL database."""

    work_dir: Path
    instances: int
    chats: int
    env: dict[str, str] = field(default_factory=dict)
    # Mion calls the instances back when a session is paid (through the front), as in
    # production; without, polling finds the payments (every second).
    callbacks: bool = True
    emu: BotApiEmulator = field(init=False)
    mion: MionSimulator = field(init=False)
    tracker: Tracker = field(init=False)
    bots: list[ChildProcess] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    front: TlsFront | None = None
    repo: Repository | None = None
    database_url: str = ""
    samples: list[Sample] = field(default_factory=list)
    burst_started: float = 0.0

    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = await create_database()
        self.emu = BotApiEmulator(token=TOKEN, bot_username=BOT_USERNAME)
        await self.emu.start()
        self.tracker = Tracker(self.emu)
        self.mion = MionSimulator(api_key=MION_KEY)
        await self.mion.start()
        self.emu.add_user(ADMIN_ID, "Ada", language_code="en")
        for uid in merchant_ids(self.chats):
            self.emu.add_user(uid, f"M{uid}", language_code="en")
        self.repo = await open_repository(self.database_url)
        await self.repo.migrate()

    async def stop(self) -> None:
        await asyncio.gather(*(bot.stop() for bot in self.bots))
        self.bots.clear()
        if self.front is not None:
            await self.front.stop()
        if self.repo is not None:
            await self.repo.close()
        await self.mion.stop()
        await self.emu.stop()
        if self.database_url:
            await drop_database(self.database_url)

    # -- seeding ------------------------------------------------------------------------
    async def seed(self, count: int) -> None:
        """One open invoice per chat (the first `count` merchants), its session at Mion and
        its message in the chat, as the bot would have left them."""
        assert self.repo is not None
        repo = self.repo
        now = datetime.now(UTC)
        limit = asyncio.Semaphore(16)
        async with seeding.mion_client(self.mion, MION_KEY) as http:

            async def one(n: int, chat: int) -> Sample:
                async with limit:
                    seeded = await seeding.seed_mion_invoice(
                        repo,
                        self.emu,
                        http,
                        merchant=chat,
                        amount_minor=100 + n,
                        description=f"Order {n}",
                        reference_prefix="cluster",
                        now=now,
                        next_poll_at=now + timedelta(seconds=n % 3),
                    )
                    message_id = seeded.message.message_id
                    assert message_id is not None
                    return Sample(chat, message_id, seeded.session_id, seeded.invoice.id)

            chats = merchant_ids(self.chats)[:count]
            self.samples = list(await asyncio.gather(*(one(n, c) for n, c in enumerate(chats))))

    # -- the bots -----------------------------------------------------------------------
    async def start_bots(self, timeout: float = 60.0) -> None:
        self.ports = [free_port() for _ in range(self.instances)]
        self.front = TlsFront(self.ports)
        public_url = await self.front.start()
        if self.callbacks:
            # Spread over the instances' plain HTTP ports as a load balancer would (TLS in
            # this process would starve the emulator, whose clock measures the bots).
            for n, sample in enumerate(self.samples):
                port = self.ports[n % len(self.ports)]
                self.mion.sessions[sample.session_id].callback_urls.append(
                    f"http://127.0.0.1:{port}/webhooks/mion"
                )
        drop = {name.upper() for name in Settings.model_fields} | {"PORT", "HTTP_PORT"}
        for n, port in enumerate(self.ports):
            env = {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_URL": self.emu.url,
                "DATABASE_URL": self.database_url,
                "ADMIN_IDS": str(ADMIN_ID),
                # Invoices are seeded, not created by command: a few merchants suffice (each
                # gets its own command menu at start).
                "MERCHANT_IDS": ",".join(map(str, merchant_ids(5))),
                "DEFAULT_GATEWAY": "mion",
                "SANDBOX_ENABLED": "false",
                "MION_API_URL": self.mion.url,
                "MION_API_KEY": MION_KEY,
                "HTTP_PORT": str(port),
                "PUBLIC_URL": public_url,
                "POLL_INTERVAL_SECONDS": "1",
                "POLL_MAX_INTERVAL_SECONDS": "3",
                **({} if self.callbacks else {"CALLBACK_POLL_INTERVAL_SECONDS": "1"}),
                "LOG_LEVEL": "WARNING",
                "INSTANCE_ID": f"cluster-{n}",
                **self.env,
            }
            bot = ChildProcess(
                "bot", child_env(env, drop), self.work_dir, self.work_dir / f"bot-{n}.log"
            )
            await bot.start()
            self.bots.append(bot)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            for bot, port in zip(self.bots, self.ports, strict=True):
                while True:
                    if not bot.running:
                        raise RuntimeError(f"a bot exited at start:\n{bot.log_tail()}")
                    try:
                        if (await client.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"a bot did not become ready:\n{bot.log_tail()}")
                    await asyncio.sleep(0.1)
        await self.emu.wait_for(lambda: self.emu.webhook_url, timeout=30)

    # -- measuring ----------------------------------------------------------------------
    def paced_times(self, since: float = 0.0) -> list[float]:
        """Arrival times of the requests Telegram limits (send*, edit*, ...) that it took."""
        return sorted(
            r.ts
            for r in self.emu.requests
            if r.ts >= since and r.ok and r.method.startswith(PACED)
            and r.method != "sendChatAction"
        )

    def admin_names(self) -> Counter[tuple[int, int]]:
        """How often each invoice (merchant, number) is named in the admin's payment notices
        and digests."""
        found: Counter[tuple[int, int]] = Counter()
        for message in self.emu.bot_messages(ADMIN_ID):
            found.update(admin_named(message.content))
        return found

    async def burst(self, timeout: float) -> dict[str, Any]:
        """Pay every seeded invoice at once, the emulator enforcing Telegram's limits: time
        until every message is edited, the edit rate, 429 answers, the admin's notices."""
        self.tracker.scan()
        self.emu.limiter.reset()
        self.emu.enforce_limits = True
        too_many_before = self.emu.stats.too_many_requests
        admin_before = len(self.emu.bot_messages(ADMIN_ID))
        start = self.burst_started = time.monotonic()
        for sample in self.samples:
            self.mion.pay(sample.session_id)
        keys = [(s.chat, s.message_id) for s in self.samples]
        finished = await self.tracker.wait(
            lambda: all(k in self.tracker.edits for k in keys), timeout, poll=0.1
        )
        expected = {(s.chat, 1) for s in self.samples}  # each chat's merchant's first invoice
        await self.tracker.wait(lambda: set(self.admin_names()) >= expected, 120.0, poll=0.5)
        end = time.monotonic()
        edited = sorted(self.tracker.edits[k] for k in keys if k in self.tracker.edits)
        delivery = edited[-1] - edited[0] if len(edited) > 1 else 0.0
        times = self.paced_times(start)
        busiest = window_counts(times, 1.0)
        names = self.admin_names()
        return {
            "instances": self.instances,
            "invoices": len(self.samples),
            "edited": len(edited),
            "finished": finished,
            "seconds_to_all_edited": (edited[-1] - start) if finished else None,
            "waited_seconds": round(end - start, 2),
            "first_edit_after_s": (edited[0] - start) if edited else None,
            "edits_per_second": (len(edited) - 1) / delivery if delivery > 0 else None,
            "busiest_second": busiest,
            "telegram_429": self.emu.stats.too_many_requests - too_many_before,
            "admin_messages": len(self.emu.bot_messages(ADMIN_ID)) - admin_before,
            "admin_payments_named": sum(names[i] for i in expected),
            "admin_payments_named_twice": sum(1 for i in expected if names[i] > 1),
        }


def window_counts(times: Sequence[float], seconds: float) -> int:
    """The most of `times` (sorted) within any window of `seconds`."""
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= seconds:
            first += 1
        best = max(best, last - first + 1)
    return best
