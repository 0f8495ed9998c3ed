"""Failover: three instances on PostgreSQL, payments flowing, one instance with claimed
work killed -9 again and again; how long until another instance has done all of its work.

60 invoices stay open at Mion (polled every 1 to 3 s), one is paid every half second and a
new one opened in its place. Each round picks the next instance that holds claimed work at
that moment (polls of invoices under way, notices being sent, preferring one that holds
both: the database says whose), kills it with SIGKILL, reads what
it left claimed (rows whose lease_owner is the dead instance, read after the kill), and
measures from the kill until every one of those is done by another instance: each invoice
polled again or moved on (and the notices of a payment found by that poll sent), each
outbox row sent. The killed instance is started again (without INSTANCE_ID) once its work
is done. The gateway answers in 0.2 s and Telegram in 0.05 s, so work is in flight at any
moment, as in production. No TELEGRAM limits are enforced here (one admin chat would
otherwise queue); duplicates of admin notices are counted (the documented window: a notice
Telegram accepted before the dead instance could mark it sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.cluster import admin_named
from bench.proc import ChildProcess, child_env, free_port
from bench.stats import summarize
from bot.config import Settings
from storage import open_repository
from storage.base import Repository
from testkit import seeding
from testkit.mion import MionSimulator
from testkit.telegram import BotApiEmulator

TOKEN = "700002:BENCHfailoverTOKEN0123456789abcdefXYZ"
MION_KEY = "bench-failover-mion-key"
ADMIN_ID = 9_100_001
MERCHANT_BASE = 200_000
INSTANCES = 3
TARGET_MAX_S = 10.0
GATEWAY_LATENCY_S = 0.2
TELEGRAM_LATENCY_S = 0.05
SEND_METHODS = ("sendMessage", "editMessageText")

# Rows claimed by each owner: invoices (polls), then unsent outbox rows (notices).
OWNERS_SQL = (
    "SELECT lease_owner, count(*), 0 FROM invoices WHERE lease_owner IS NOT NULL"
    " GROUP BY lease_owner UNION ALL SELECT lease_owner, 0, count(*) FROM outbox"
    " WHERE lease_owner IS NOT NULL AND sent_at IS NULL GROUP BY lease_owner"
)


def database_url() -> str:
    return os.environ.get(
        "TILLBOT_BENCH_DATABASE_URL",
        os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )


class Cluster:
    """The emulator, Mion and INSTANCES bot processes on one fresh PostgreSQL database."""

    def __init__(self, work: Path, merchants: int) -> None:
        self.work = work
        self.merchants = [MERCHANT_BASE + n for n in range(merchants)]
        self.emu = BotApiEmulator(token=TOKEN, bot_username="tillbot_failover_bot")
        self.mion = MionSimulator(api_key=MION_KEY)
        self.dsn = ""
        self._admin_dsn = database_url()
        self.repo: Repository | None = None
        self.con: Any = None
        self.bots: list[ChildProcess] = []
        self.seeded = asyncio.Event()
        self.starts = 0

    async def start(self) -> None:
        self.dsn = await seeding.create_database(self._admin_dsn, "tillbot_bench_failover")
        await self.emu.start()
        self.emu.add_user(ADMIN_ID, "Ada", language_code="en")
        for uid in self.merchants:
            self.emu.add_user(uid, f"M{uid}", language_code="en")
        for method in SEND_METHODS:
            self.emu.method_delays[method] = TELEGRAM_LATENCY_S
        await self.mion.start()
        self.mion.delay = GATEWAY_LATENCY_S
        self.repo = await open_repository(self.dsn, max_connections=2)
        self.con = await asyncpg.connect(self.dsn)

    async def stop(self) -> None:
        for bot in self.bots:
            await bot.stop()
        if self.con is not None:
            await self.con.close()
        if self.repo is not None:
            await self.repo.close()
        await self.mion.stop()
        await self.emu.stop()
        if self.dsn:
            await seeding.drop_database(self._admin_dsn, self.dsn)

    def _env(self) -> dict[str, str]:
        drop = {name.upper() for name in Settings.model_fields} | {"PORT", "HTTP_PORT"}
        return child_env(
            {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_URL": self.emu.url,
                "DATABASE_URL": self.dsn,
                "ADMIN_IDS": str(ADMIN_ID),
                "MERCHANT_IDS": ",".join(map(str, self.merchants)),
                "DEFAULT_GATEWAY": "mion",
                "SANDBOX_ENABLED": "false",
                "MION_API_URL": self.mion.url,
                "MION_API_KEY": MION_KEY,
                "HTTP_PORT": str(free_port()),
                # Webhook mode, so that the instances do not take getUpdates from each
                # other; no update is sent in this run.
                "PUBLIC_URL": f"https://127.0.0.1:{free_port()}",
                "POLL_INTERVAL_SECONDS": "1",
                "POLL_MAX_INTERVAL_SECONDS": "3",
                "CALLBACK_POLL_INTERVAL_SECONDS": "1",  # no callbacks here: polled every 1 s
                "TELEGRAM_MESSAGES_PER_SECOND": "300",
                "TELEGRAM_CHAT_INTERVAL_SECONDS": "0.005",
                "LOG_LEVEL": "WARNING",
            },
            drop,
        )

    async def start_bot(self, slot: int | None = None) -> ChildProcess:
        self.starts += 1
        bot = ChildProcess("bot", self._env(), self.work, self.work / f"bot-{self.starts}.log")
        bot.make_dirs()
        await bot.start()
        if slot is None:
            self.bots.append(bot)
        else:
            self.bots[slot] = bot
        await self.instance_of(bot)
        return bot

    async def instance_of(self, bot: ChildProcess, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for row in await self.con.fetch("SELECT id FROM instances"):
                if f":{bot.pid}:" in row["id"]:
                    return str(row["id"])
            if not bot.running or time.monotonic() > deadline:
                raise RuntimeError(f"the bot did not register:\n{bot.log_tail()}")
            await asyncio.sleep(0.05)

    async def seed_one(self, http: httpx.AsyncClient, n: int) -> str:
        """One pending invoice at Mion, shown in its merchant's chat, due within 2 s.
        Returns its session id."""
        assert self.repo is not None
        now = datetime.now(UTC)
        seeded = await seeding.seed_mion_invoice(
            self.repo,
            self.emu,
            http,
            merchant=self.merchants[n % len(self.merchants)],
            amount_minor=1000 + n,
            description=f"failover {n}",
            reference_prefix="failover",
            now=now,
            next_poll_at=now + timedelta(milliseconds=n * 7 % 2000),
        )
        return seeded.session_id

    def gateway(self) -> httpx.AsyncClient:
        return seeding.mion_client(self.mion, MION_KEY)

    async def holders(self) -> tuple[Counter[str], Counter[str]]:
        """Claimed invoices and claimed unsent outbox rows, by owner."""
        polls: Counter[str] = Counter()
        notices: Counter[str] = Counter()
        for row in await self.con.fetch(OWNERS_SQL):
            polls[str(row[0])] += int(row[1])
            notices[str(row[0])] += int(row[2])
        return polls, notices

    async def victim(self, ids: list[str], first: int, patience: float) -> int | None:
        """The first instance from `first` on (round robin) that holds claimed work now,
        preferring, for up to `patience` seconds, one that holds both polls and notices."""
        order = [(first + k) % len(ids) for k in range(len(ids))]
        deadline = time.monotonic() + patience
        while True:
            polls, notices = await self.holders()
            both = [i for i in order if notices[ids[i]] and polls[ids[i]]]
            if both:
                return both[0]
            if time.monotonic() > deadline:
                return next((i for i in order if polls[ids[i]] or notices[ids[i]]), None)
            await asyncio.sleep(0.01)

    async def left_by(self, owner: str) -> tuple[dict[int, int], list[int]]:
        """What `owner` holds: {invoice id: its poll count} and unsent outbox row ids."""
        invoices = await self.con.fetch(
            "SELECT id, poll_count FROM invoices WHERE lease_owner = $1", owner
        )
        outbox = await self.con.fetch(
            "SELECT id FROM outbox WHERE lease_owner = $1 AND sent_at IS NULL", owner
        )
        return {int(r["id"]): int(r["poll_count"]) for r in invoices}, [
            int(r["id"]) for r in outbox
        ]

    async def done(self, invoices: dict[int, int], outbox: list[int]) -> bool:
        """Each invoice polled again (or moved on), with the notices it produced sent; each
        outbox row sent."""
        if invoices:
            rows = await self.con.fetch(
                "SELECT id, poll_count, status FROM invoices WHERE id = ANY($1::bigint[])",
                list(invoices),
            )
            for row in rows:
                if row["status"] == "pending" and int(row["poll_count"]) <= invoices[row["id"]]:
                    return False
        unsent = await self.con.fetchval(
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
            " AND (id = ANY($1::bigint[]) OR invoice_id = ANY($2::bigint[]))",
            outbox,
            list(invoices),
        )
        return int(unsent) == 0

    def admin_notices(self) -> Counter[tuple[int, int]]:
        """Payments named to the admin, alone or in a digest, by (merchant, number)."""
        return Counter(
            named
            for message in self.emu.bot_messages(ADMIN_ID)
            for named in admin_named(message.content)
        )


async def _pay(cluster: Cluster, pending: int, rate: float, stop: asyncio.Event) -> int:
    """Keep `pending` invoices open and pay one of them `rate` times a second (opening a
    new one in its place) until `stop`; how many were paid."""
    rng = random.Random(12)
    paid = 0
    async with cluster.gateway() as http:
        open_sessions = [await cluster.seed_one(http, n) for n in range(pending)]
        cluster.seeded.set()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / rate)
            if stop.is_set():
                break
            cluster.mion.pay(open_sessions.pop(rng.randrange(len(open_sessions))))
            paid += 1
            open_sessions.append(await cluster.seed_one(http, pending + paid))
    return paid


async def run(work: Path, *, kills: int, pending: int, rate: float) -> dict[str, Any]:
    """The failover figures; {"skipped": reason} without a PostgreSQL server."""
    try:
        probe = await asyncpg.connect(database_url(), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return {"skipped": f"no PostgreSQL at TILLBOT_BENCH_DATABASE_URL/TEST_DATABASE_URL: {exc}"}
    await probe.close()
    cluster = Cluster(work, merchants=200)
    await cluster.start()
    rounds: list[dict[str, Any]] = []
    attempts = 0
    stop = asyncio.Event()
    payer: asyncio.Task[int] | None = None
    try:
        for _ in range(INSTANCES):
            await cluster.start_bot()
        payer = asyncio.create_task(_pay(cluster, pending, rate, stop))
        await cluster.seeded.wait()
        await asyncio.sleep(3.0)  # every instance polling
        rng = random.Random(7)
        slot = 0
        while len(rounds) < kills and attempts < kills * 20:
            attempts += 1
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            # The next instance (round robin) that holds claimed work right now.
            ids = [await cluster.instance_of(bot) for bot in cluster.bots]
            chosen = await cluster.victim(ids, slot, patience=2.0)
            if chosen is None:
                continue
            victim, owner = cluster.bots[chosen], ids[chosen]
            assert victim.proc is not None
            victim.proc.kill()
            killed_at = time.monotonic()
            await victim.proc.wait()
            invoices, outbox = await cluster.left_by(owner)
            if not invoices and not outbox:
                await victim.stop()
                await cluster.start_bot(chosen)
                continue  # it finished its work between the read and the kill
            taken: float | None = None
            while not await cluster.done(invoices, outbox):
                if time.monotonic() - killed_at > 120:
                    raise RuntimeError("the killed instance's work was not taken over")
                if taken is None and await cluster.left_by(owner) == ({}, []):
                    taken = time.monotonic() - killed_at
                await asyncio.sleep(0.02)
            took = time.monotonic() - killed_at
            rounds.append(
                {
                    "seconds": took,
                    "taken_over_s": took if taken is None else taken,
                    "polls": len(invoices),
                    "notices": len(outbox),
                }
            )
            await victim.stop()
            await cluster.start_bot(chosen)
            slot = chosen + 1
        stop.set()
        paid = await payer
        # Everything paid is shown paid, and told to the admin.
        deadline = time.monotonic() + 60
        while int(
            await cluster.con.fetchval("SELECT count(*) FROM invoices WHERE status = 'paid'")
        ) < paid or await cluster.con.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        notices = cluster.admin_notices()
        paid_in_db = int(
            await cluster.con.fetchval("SELECT count(*) FROM invoices WHERE status = 'paid'")
        )
    finally:
        stop.set()
        if payer is not None and not payer.done():
            await payer
        await cluster.stop()
    seconds = [r["seconds"] for r in rounds]
    return {
        "instances": INSTANCES,
        "kills": len(rounds),
        "kill_attempts": attempts,
        "seconds": summarize(seconds),
        "taken_over_s": summarize([r["taken_over_s"] for r in rounds]),
        "rounds": rounds,
        "polls_taken_over": sum(r["polls"] for r in rounds),
        "notices_taken_over": sum(r["notices"] for r in rounds),
        "payments": paid,
        "paid_in_database": paid_in_db,
        "admin_notices": sum(notices.values()),
        "admin_notices_repeated": sum(n - 1 for n in notices.values() if n > 1),
        "admin_notices_missing": paid_in_db - len(notices),
        "gateway_latency_s": GATEWAY_LATENCY_S,
        "telegram_latency_s": TELEGRAM_LATENCY_S,
        "heartbeat_s": Settings.model_fields["heartbeat_seconds"].default,
        "stale_beats": Settings.model_fields["heartbeat_stale_beats"].default,
        "target_max_s": TARGET_MAX_S,
    }


def render(data: dict[str, Any] | None) -> list[str]:
    """The report's failover section (markdown lines)."""
    lines = ["## 6. Failover: an instance with claimed work killed -9", ""]
    if not data:
        return [*lines, "Not run.", ""]
    if "skipped" in data:
        return [*lines, f"Skipped: {data['skipped']}.", ""]
    secs = data["seconds"]
    ok = data["kills"] > 0 and secs["max"] <= data["target_max_s"]
    lines += [
        f"{data['instances']} instances on PostgreSQL, payments flowing ({data['payments']} "
        f"paid during the run), gateway answering in {data['gateway_latency_s']} s and "
        f"Telegram in {data['telegram_latency_s']} s; heartbeat every "
        f"{data['heartbeat_s']} s, stale after {data['stale_beats']} beats. Each kill hits "
        "an instance holding claimed work; measured from the kill until another instance "
        "has done all of it.",
        "",
        "| Figure | Value | Target | |",
        "|---|---:|---|---|",
        f"| Kills with claimed work | {data['kills']} ({data['kill_attempts']} tries) | ≥ 10 | |",
        f"| Kill → all its claims freed for the others, p50 / max | "
        f"{data['taken_over_s']['p50']:.2f} / {data['taken_over_s']['max']:.2f} s | | |",
        f"| Kill → all its work done, p50 | {secs['p50']:.2f} s | | |",
        f"| Kill → all its work done, max | {secs['max']:.2f} s | ≤ {data['target_max_s']:.0f} s "
        f"| {'✅' if ok else '❌'} |",
        f"| Polls / notices taken over | {data['polls_taken_over']} / "
        f"{data['notices_taken_over']} | | |",
        f"| Admin notices repeated (the documented window) | "
        f"{data['admin_notices_repeated']} | | |",
        f"| Paid invoices whose admin notice is missing | {data['admin_notices_missing']} | 0 | |",
        "",
    ]
    return lines


__all__ = ["render", "run"]
