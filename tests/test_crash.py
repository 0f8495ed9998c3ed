"""The bot process killed at random moments (SIGKILL, and failpoints), payments landing
while it is down, restarted on the same database: nothing is lost.

`python -m bot` runs as a real process (testkit/botproc.py) against the Bot API emulator and
the Mion simulator, which live in this test process on 127.0.0.1. Each round the merchant
creates invoices, customers open some links, the simulator receives payments at random
moments, and the process is killed at a random moment (or dies at a failpoint of
bot/failpoints.py); more payments land while it is down; then it is started again.

At the end, for every payment made at the gateway (zero lost):
- the invoice is paid in the database, and was applied exactly once (one admin outbox row
  per admin: `duplicated` counts any second application - it must be 0);
- every message that shows it (merchant and customer views the bot remembered) says PAID;
- each admin was told; a second copy of a notice is only possible in the documented crash
  window (a new message accepted by Telegram but not yet marked sent: bot/telegram/notifier.py),
  which needs a kill at that moment - such copies are counted and reported.
Views sent by Telegram but not yet remembered when the process died (a kill between
sendMessage and the database write) are counted and reported too.

CI runs a few rounds (< 60 s); `pytest --soak` runs many.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testkit.botproc import BotProcess, mion_bot_env
from testkit.gateway_base import InvalidTransition
from testkit.mion import MionSimulator
from testkit.telegram import BotApiEmulator
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import ADMIN_ID, CUSTOMER_ID, MERCHANT_ID, TOKEN
from tests.reliability_stats import record, soak_enabled

pytest_plugins = ["tests.reliability_stats"]

MION_KEY = "mion-crashsoak-MARKER-4c1d9e"
ADMIN2_ID = 9010
CUSTOMER2_ID = 2003
NOTICE_RE = re.compile(r"[Ii]nvoice #(\d+) (?:paid|was )")  # to admins
RECEIPT_RE = re.compile(r"Receipt.*Invoice #(\d+)", re.DOTALL)  # to customers
VIEW_RE = re.compile(r"^🧾 Invoice #(\d+)\n")
# Failpoints of bot/failpoints.py, tried in turn in some rounds (the others: SIGKILL).
FAILPOINTS = ("after_send", "after_transition", "before_transition")


@dataclass
class World:
    emu: BotApiEmulator
    sim: MionSimulator
    db: Path
    bot: BotProcess
    rng: random.Random
    merchant: EmuUser
    customers: list[EmuUser]
    admins: list[EmuUser]
    paid_sessions: set[str] = field(default_factory=set)
    kills: int = 0
    failpoint_exits: int = 0
    window_kills: int = 0  # failpoint after_send: the documented window, by construction
    commands: int = 0
    invoice_commands: int = 0  # /invoice commands sent by the merchant

    # -- the database, read by the test (WAL: readers never block the bot) -------------------
    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if not self.db.exists():
            return []
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []
        finally:
            db.close()

    def attached(self) -> dict[str, tuple[int, str]]:
        """gateway session -> (invoice id, status), for invoices whose session is stored."""
        return {
            str(s): (int(i), str(st))  # type: ignore[call-overload]
            for s, i, st in self.rows(
                "SELECT gateway_session_id, id, status FROM invoices"
                " WHERE gateway_session_id IS NOT NULL"
            )
        }

    # -- the bot process -----------------------------------------------------------------------
    async def start(self, **env: str) -> None:
        before = self.emu.polls_started
        self.bot.start(**env)
        await self.emu.wait_for(
            lambda: self.emu.polls_started > before or not self.bot.running,
            timeout=30,
        )
        assert self.bot.running, self.bot.output()[-3000:]

    def pay_some(self, how_many: int) -> int:
        """The customer pays `how_many` open invoices at the gateway (ones whose session the
        bot stored: only those could ever have been shown to a customer)."""
        open_ = [s for s, (_, status) in self.attached().items()
                 if status == "pending" and s not in self.paid_sessions]
        self.rng.shuffle(open_)
        paid = 0
        for session in open_[:how_many]:
            try:
                self.sim.pay(session)
            except InvalidTransition:
                continue
            self.paid_sessions.add(session)
            paid += 1
        return paid

    async def activity(self) -> None:
        """A merchant creating invoices, customers opening links, payments arriving."""
        for _ in range(self.rng.randint(1, 3)):
            amount = f"{self.rng.randint(1, 500)}.{self.rng.randint(0, 99):02d}"
            # Each command its own text: the same text again while one is under way is a
            # resend, recognised and not doubled (issue 16), so it would make no invoice.
            await self.emu.send_message(self.merchant, f"/invoice {amount} Round {self.commands}")
            self.commands += 1
            self.invoice_commands += 1
            await asyncio.sleep(self.rng.uniform(0.0, 0.3))
            await self.open_links()
            if self.rng.random() < 0.7:
                self.pay_some(self.rng.randint(1, 2))

    async def open_links(self) -> None:
        seen = {m.content for c in self.customers for m in self.emu.messages(c)}
        for message in self.emu.bot_messages(self.merchant):
            found = re.search(r"\?start=([A-Za-z0-9_-]+)", message.content)
            if found and f"/start {found.group(1)}" not in seen and self.rng.random() < 0.8:
                customer = self.rng.choice(self.customers)
                await self.emu.send_message(customer, f"/start {found.group(1)}")
                seen.add(f"/start {found.group(1)}")
                self.commands += 1

    async def round(self, index: int, failpoint: str | None) -> None:
        if failpoint:
            await self.start(TILLBOT_CRASH_AT=failpoint,
                             TILLBOT_CRASH_AFTER=str(self.rng.randint(0, 1)))
        else:
            await self.start()
        work = asyncio.create_task(self.activity())
        with contextlib.suppress(TimeoutError):  # the kill comes at a random moment
            await self.bot.wait_exit(timeout=self.rng.uniform(0.3, 2.5))
        if failpoint and self.bot.running:  # give the failpoint a payment to fire on
            self.pay_some(2)
            with contextlib.suppress(TimeoutError):
                await self.bot.wait_exit(timeout=3)
        if self.bot.running:
            self.bot.kill()
            self.kills += 1
        else:
            code = await self.bot.wait_exit()
            assert code == 137, f"round {index}: exit {code}\n{self.bot.output()[-3000:]}"
            self.failpoint_exits += 1
            self.window_kills += failpoint == "after_send"
        await work
        # while it is down: more payments land, and a merchant writes
        self.pay_some(self.rng.randint(0, 2))
        if self.rng.random() < 0.5:
            await self.emu.send_message(self.merchant, f"/invoice 1.11 While down {self.commands}")
            self.commands += 1
            self.invoice_commands += 1
        await asyncio.sleep(self.rng.uniform(0.0, 0.3))


@pytest.fixture
async def world(
    emulator: BotApiEmulator, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[World]:
    sim = MionSimulator(api_key=MION_KEY)
    await sim.start()
    emu = emulator
    # CI: a fixed seed (the kill moments still vary with timing); --soak: a new one each run
    default = random.SystemRandom().randrange(10**6) if soak_enabled(request.config) else 20261121
    seed = int(os.environ.get("TILLBOT_CRASH_SEED") or default)
    db = tmp_path / "crash.db"
    env = mion_bot_env(
        token=TOKEN,
        telegram_url=emu.url,
        database_url=f"sqlite:///{db}",
        mion_url=sim.url,
        mion_key=MION_KEY,
        admins=(ADMIN_ID, ADMIN2_ID),
        merchants=(MERCHANT_ID,),
        POLL_INTERVAL_SECONDS="0.3",
        LOG_LEVEL="INFO",
    )
    w = World(
        emu=emu,
        sim=sim,
        db=db,
        bot=BotProcess(env, tmp_path / "bot.log"),
        rng=random.Random(seed),
        merchant=emu.add_user(MERCHANT_ID, "Maria", language_code="en"),
        customers=[emu.add_user(CUSTOMER_ID, "Chris", language_code="en"),
                   emu.add_user(CUSTOMER2_ID, "Cleo", language_code="en")],
        admins=[emu.add_user(ADMIN_ID, "Ada", language_code="en"),
                emu.add_user(ADMIN2_ID, "Alan", language_code="en")],
    )
    print(f"crash test seed: {seed} (TILLBOT_CRASH_SEED={seed} replays it)")
    try:
        yield w
    finally:
        w.bot.kill()
        await sim.stop()


def admin_notices(w: World) -> Counter[tuple[int, int]]:
    """(admin, invoice id) -> how many payment notices that admin got."""
    return _count(w.admins, w, NOTICE_RE)


def receipts(w: World) -> Counter[tuple[int, int]]:
    """(customer, invoice id) -> how many receipts that customer got."""
    return _count(w.customers, w, RECEIPT_RE)


def _count(users: list[EmuUser], w: World, pattern: re.Pattern[str]) -> Counter[tuple[int, int]]:
    counts: Counter[tuple[int, int]] = Counter()
    for user in users:
        for m in w.emu.bot_messages(user):
            found = pattern.search(m.content)
            if found:
                counts[(user.id, int(found.group(1)))] += 1
    return counts


def views(w: World) -> dict[tuple[int, int], MessageRecord]:
    """Every invoice view Telegram shows, by (chat, message id)."""
    out: dict[tuple[int, int], MessageRecord] = {}
    for user in (w.merchant, *w.customers):
        for m in w.emu.bot_messages(user):
            if VIEW_RE.match(m.content):
                out[(m.chat_id, m.message_id)] = m
    return out


async def settle(w: World, timeout: float) -> tuple[int, int, int, int]:
    """Wait until every paid session is paid, shown PAID and told; return
    (lost, duplicated, repeated notices, views not remembered)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        attached = w.attached()
        paid_ids = {attached[s][0] for s in w.paid_sessions}
        statuses = {attached[s][0]: attached[s][1] for s in w.paid_sessions}
        remembered = {
            (int(c), int(m)): int(i)  # type: ignore[call-overload]
            for c, m, i in w.rows("SELECT chat_id, message_id, invoice_id FROM invoice_messages"
                                  " WHERE chat_id IS NOT NULL")
        }
        shown = views(w)
        stale = [
            key for key, inv in remembered.items()
            if inv in paid_ids and key in shown and "PAID" not in shown[key].content
        ]
        notices = admin_notices(w)
        untold = [(a.id, i) for i in paid_ids for a in w.admins if notices[(a.id, i)] == 0]
        unpaid = [i for i, st in statuses.items() if st != "paid"]
        # Every update Telegram holds is fetched, and every stored one handled (the inbox).
        [(open_updates,)] = w.rows("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL")
        unhandled = bool(w.emu.pending_updates) or int(open_updates) > 0  # type: ignore[call-overload]
        if not (stale or untold or unpaid or unhandled):
            break
        if loop.time() > deadline:
            raise AssertionError(
                f"not settled: unpaid {unpaid}, stale views {stale}, untold {untold}\n"
                + w.bot.output()[-4000:]
            )
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # more watcher ticks and outbox passes: nothing may repeat
    notices = admin_notices(w) + receipts(w)
    repeated = sum(n - 1 for n in notices.values() if n > 1)
    rows = Counter(
        (int(i), int(c))  # type: ignore[call-overload]
        for i, c in w.rows("SELECT invoice_id, chat_id FROM outbox"
                           " WHERE kind = 'admin' AND event IN ('paid', 'late_paid')")
    )
    duplicated = sum(1 for n in rows.values() if n > 1)
    lost = sum(1 for i in paid_ids for a in w.admins if rows[(i, a.id)] == 0)
    unremembered = [
        key for key, m in views(w).items()
        if key not in remembered and int(VIEW_RE.match(m.content).group(1)) in paid_ids  # type: ignore[union-attr]
    ]
    return lost, duplicated, repeated, len(unremembered)


async def run_rounds(w: World, rounds: int) -> None:
    for index in range(rounds):
        failpoint = FAILPOINTS[(index // 2) % len(FAILPOINTS)] if index % 2 == 1 else None
        await w.round(index, failpoint)
    await w.start()
    lost, duplicated, repeated, unremembered = await settle(w, timeout=40 + rounds)
    await w.bot.stop()
    crashes = w.kills + w.failpoint_exits
    assert lost == 0 and duplicated == 0
    # A repeated notice needs a kill inside the window: at most one per chat per crash.
    assert repeated <= crashes * (len(w.admins) + len(w.customers))
    assert unremembered <= crashes
    assert w.sim.create_count >= len(w.paid_sessions) > 0
    # A command handled just before a kill, whose update Telegram had not yet been told was
    # handled, is delivered again at the restart: a second (unpaid) invoice. Counted.
    [(invoices,)] = w.rows("SELECT COUNT(*) FROM invoices")
    handled_twice = max(0, int(invoices) - w.invoice_commands)  # type: ignore[call-overload]
    # ... and one fetched but not yet handled is gone: the merchant got no answer to it.
    unanswered = max(0, w.invoice_commands - int(invoices))  # type: ignore[call-overload]
    # The inbox (issue 12): every update is stored before Telegram is told, and a command's
    # invoice is linked to its update, so neither can happen any more.
    assert handled_twice == 0 and unanswered == 0, (handled_twice, unanswered)
    output = w.bot.output()
    assert TOKEN not in output and MION_KEY not in output
    record(
        "crash",
        tests=1,
        inputs=w.commands,
        faults=crashes,
        crashes=crashes,
        payments=len(w.paid_sessions),
        lost=lost,
        duplicated=duplicated,
        window_duplicates=repeated,
        note=(
            f"{rounds} rounds: {w.kills} SIGKILLs at random moments, {w.failpoint_exits} "
            f"failpoint exits ({w.window_kills} in the documented window), "
            f"{len(w.paid_sessions)} payments (some while down), 0 lost, 0 applied twice, "
            f"{repeated} notices repeated, {unremembered} views sent but not yet remembered, "
            f"{handled_twice} /invoice commands handled twice and {unanswered} never answered "
            "(in flight at a kill)"
        ),
    )


async def test_killed_at_random_moments_loses_no_payment(world: World) -> None:
    await run_rounds(world, 4)


@pytest.mark.slow
async def test_soak_killed_at_random_moments_loses_no_payment(world: World) -> None:
    await run_rounds(world, 30)

