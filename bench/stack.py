"""The world the bot under test talks to, in the benchmark's own process.

One event loop runs the Telegram Bot API emulator and the three gateway simulators, so
that a simulator's "paid" moment and the emulator's arrival time of an edit are both
`time.monotonic()` readings of this process. The bot runs as a separate process
(`python -m bot`), configured through its environment like in production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.proc import ChildProcess, child_env, free_port, sample
from bench.seed import seed_pending
from bot.config import Settings
from bot.domain.models import Invoice
from bot.i18n import LANGUAGES, t
from storage import open_repository
from storage.base import Repository
from testkit.mion import MionSimulator
from testkit.miraclepay import MiraclePaySimulator
from testkit.mixpay import DEFAULT_PAYEE_ID, USDT_ERC20, MixPaySimulator
from testkit.telegram import BotApiEmulator
from testkit.telegram.models import MessageRecord
from testkit.tls import TlsFront

TOKEN = "700001:BENCHtillbotTOKEN0123456789abcdefXYZ"
BOT_USERNAME = "tillbot_bench_bot"
MION_KEY = "bench-mion-key-5f2c"
MIRACLE_CLIENT = "bench-miracle-client"
MIRACLE_KEY = "bench-miracle-key-81d0"
ADMIN_ID = 9_000_001
MERCHANT_BASE = 100_000  # merchant k has the Telegram id MERCHANT_BASE + k
MIXPAY_BUDGET_PER_MINUTE = 50  # the bot's setting (MixPay itself allows 60)

EDIT_METHODS = frozenset({"editMessageText", "editMessageCaption", "editMessageMedia"})
REPLY_METHODS = frozenset({"sendMessage", "sendPhoto"})
PLACEHOLDERS = frozenset(t(lang, "creating_invoice") for lang in LANGUAGES)


def merchant_ids(count: int) -> list[int]:
    return [MERCHANT_BASE + k for k in range(1, count + 1)]


class Tracker:
    """Reads the emulator's request log incrementally: replies per chat and the first
    successful edit of each message, with the emulator's arrival times."""

    def __init__(self, emu: BotApiEmulator) -> None:
        self.emu = emu
        self._pos = 0
        self.replies: dict[int, list[float]] = {}
        self.edits: dict[tuple[int, int], float] = {}
        self.edit_count = 0
        self.placeholders: set[int] = set()  # chats whose placeholder is not yet answered

    def scan(self) -> None:
        requests = self.emu.requests
        end = len(requests)
        for rec in requests[self._pos : end]:
            if rec.status != 200:
                continue
            chat = rec.params.get("chat_id")
            if not isinstance(chat, int):
                continue
            if rec.method in REPLY_METHODS and rec.params.get("text") in PLACEHOLDERS:
                # "Creating invoice…": the reply is what it becomes (edited or followed).
                self.placeholders.add(chat)
            elif chat in self.placeholders and rec.method in REPLY_METHODS | EDIT_METHODS:
                self.placeholders.discard(chat)
                self.replies.setdefault(chat, []).append(rec.ts)
            elif rec.method in REPLY_METHODS:
                self.replies.setdefault(chat, []).append(rec.ts)
            elif rec.method in EDIT_METHODS:
                self.edit_count += 1
                message_id = rec.params.get("message_id")
                if isinstance(message_id, int):
                    self.edits.setdefault((chat, message_id), rec.ts)
        self._pos = end

    def reply_count(self, chat: int) -> int:
        return len(self.replies.get(chat, ()))

    async def wait(self, done: Any, timeout: float, poll: float = 0.01) -> bool:
        """Scan until `done()` is true; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.scan()
            if done():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll)


@dataclass
class Stack:
    """Emulator + simulators (this process) and the bot process under test."""

    work_dir: Path
    merchants: int
    enforce_limits: bool = False
    # Settings added to (or overriding) the bot's environment for this stack's runs.
    extra_env: dict[str, str] = field(default_factory=dict)
    emu: BotApiEmulator = field(init=False)
    mion: MionSimulator = field(init=False)
    mixpay: MixPaySimulator = field(init=False)
    miracle: MiraclePaySimulator = field(init=False)
    tracker: Tracker = field(init=False)
    bot: ChildProcess | None = None
    http_port: int = 0
    front: TlsFront | None = None  # webhook mode: the HTTPS PUBLIC_URL in front of the bot
    db_path: Path = field(init=False)
    repo: Repository | None = None
    startup_seconds: float = 0.0
    # Another database than the stack's own SQLite file (seeded by the caller), e.g. PostgreSQL
    database_url: str | None = None

    async def start(self) -> None:
        self.emu = BotApiEmulator(
            token=TOKEN, bot_username=BOT_USERNAME, enforce_limits=self.enforce_limits
        )
        await self.emu.start()
        self.tracker = Tracker(self.emu)
        # Fast callback retries; Mion's `funded` follow-up as in production (a second
        # callback 0.3 s after the first).
        self.mion = MionSimulator(api_key=MION_KEY)
        self.mixpay = MixPaySimulator()
        self.miracle = MiraclePaySimulator(client_id=MIRACLE_CLIENT, api_key=MIRACLE_KEY)
        for sim in (self.mion, self.mixpay, self.miracle):
            await sim.start()
        self.emu.add_user(ADMIN_ID, "Ada", language_code="en")
        for uid in merchant_ids(self.merchants):
            self.emu.add_user(uid, f"M{uid}", language_code="en")
        self.db_path = self.work_dir / "tillbot.db"

    async def stop(self) -> None:
        await self.stop_bot()
        for sim in (self.mion, self.mixpay, self.miracle):
            await sim.stop()
        await self.emu.stop()

    # -- the bot process ------------------------------------------------------------------
    def bot_env(self, *, webhooks: bool) -> dict[str, str]:
        self.http_port = free_port()
        ids = ",".join(str(i) for i in merchant_ids(self.merchants))
        env = {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": self.emu.url,
            "DATABASE_URL": self.database_url or f"sqlite:///{self.db_path}",
            "ADMIN_IDS": str(ADMIN_ID),
            "MERCHANT_IDS": ids,
            "DEFAULT_GATEWAY": "mion",
            "DEFAULT_CURRENCY": "EUR",
            "SANDBOX_ENABLED": "false",
            "MION_API_URL": self.mion.url,
            "MION_API_KEY": MION_KEY,
            "MIXPAY_API_URL": self.mixpay.url,
            "MIXPAY_PAYEE_ID": DEFAULT_PAYEE_ID,
            "MIXPAY_SETTLEMENT_ASSET_ID": USDT_ERC20,
            "MIXPAY_REQUESTS_PER_MINUTE": str(MIXPAY_BUDGET_PER_MINUTE),
            "MIRACLEPAY_API_URL": self.miracle.url,
            "MIRACLEPAY_CLIENT_ID": MIRACLE_CLIENT,
            "MIRACLEPAY_API_KEY": MIRACLE_KEY,
            "HTTP_PORT": str(self.http_port),
            "LOG_LEVEL": "WARNING",
            "INSTANCE_ID": "bench",
        }
        env.update(self.extra_env)
        return env

    async def start_bot(self, *, webhooks: bool, pending: int, timeout: float = 60.0) -> None:
        """Seed `pending` backlog invoices, start `python -m bot`, wait until it serves."""
        if self.database_url is None:
            _remove_database(self.db_path)
            await seed_pending(self.db_path, pending, merchant_ids(min(self.merchants, 500)))
        drop = {name.upper() for name in Settings.model_fields} | {"PORT", "HTTP_PORT"}
        bot_env = self.bot_env(webhooks=webhooks)
        if webhooks:  # PUBLIC_URL must be HTTPS: TLS ends at a local front, as at a proxy
            self.front = TlsFront(self.http_port)
            bot_env["PUBLIC_URL"] = await self.front.start()
        env = child_env(bot_env, drop)
        self.bot = ChildProcess("bot", env, self.work_dir, self.work_dir / "bot.log")
        await self.bot.start()
        await self._wait_ready(webhooks=webhooks, timeout=timeout)
        self.startup_seconds = time.monotonic() - self.bot.started_at
        self.repo = await open_repository(self.database_url or f"sqlite:///{self.db_path}")

    async def _wait_ready(self, *, webhooks: bool, timeout: float) -> None:
        assert self.bot is not None
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if not self.bot.running:
                    raise RuntimeError(f"the bot exited at start:\n{self.bot.log_tail()}")
                try:
                    healthy = (await client.get(url)).status_code == 200
                except httpx.HTTPError:
                    healthy = False
                mode_ok = bool(self.emu.webhook_url) if webhooks else self.emu.polls_started > 0
                if healthy and mode_ok:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the bot did not become ready:\n{self.bot.log_tail()}")
                await asyncio.sleep(0.05)

    async def stop_bot(self) -> None:
        if self.repo is not None:
            await self.repo.close()
            self.repo = None
        if self.bot is not None:
            await self.bot.stop()
            self.bot = None
        if self.front is not None:
            await self.front.stop()
            self.front = None

    def bot_sample(self) -> Any:
        assert self.bot is not None
        return sample(self.bot.pid)

    # -- driving ------------------------------------------------------------------------
    async def commands(
        self, texts: Sequence[tuple[int, str]], *, timeout: float = 60.0
    ) -> dict[int, tuple[float, float]]:
        return await drive_commands(self.emu, self.tracker, texts, timeout=timeout)

    def last_bot_message(self, chat: int) -> MessageRecord | None:
        msgs = self.emu.bot_messages(chat)
        return msgs[-1] if msgs else None

    async def latest_invoice(self, merchant: int) -> Invoice | None:
        assert self.repo is not None
        found = await self.repo.list_invoices(merchant, limit=1)
        return found[0] if found else None

    def gateway_requests(self) -> dict[str, int]:
        return {
            "mion": len(self.mion.requests),
            "mixpay": len(self.mixpay.requests),
            "miraclepay": len(self.miracle.requests),
        }


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def drive_commands(
    emu: BotApiEmulator,
    tracker: Tracker,
    texts: Sequence[tuple[int, str]],
    *,
    timeout: float = 60.0,
) -> dict[int, tuple[float, float]]:
    """Each (user, text) is sent at once; returns user -> (sent, reply arrival) for the
    replies that came (one command per user at a time)."""
    tracker.scan()
    before = {uid: tracker.reply_count(uid) for uid, _ in texts}
    sent: dict[int, float] = {}
    for uid, text in texts:
        sent[uid] = time.monotonic()
        await emu.send_message(uid, text)
    await tracker.wait(lambda: all(tracker.reply_count(u) > before[u] for u in before), timeout)
    out: dict[int, tuple[float, float]] = {}
    for uid in before:
        replies = tracker.replies.get(uid, [])
        if len(replies) > before[uid]:
            out[uid] = (sent[uid], replies[before[uid]])
    return out


def chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
