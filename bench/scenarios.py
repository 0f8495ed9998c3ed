"""The measurements. Each takes a started `Stack` (bot running) and returns plain data."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bench.proc import cpu_share
from bench.proc import sample as proc_sample
from bench.stack import (
    ADMIN_ID,
    MIXPAY_BUDGET_PER_MINUTE,
    Stack,
    Tracker,
    chunks,
    drive_commands,
)
from bench.stats import median, summarize
from bot.config import Settings
from bot.domain.models import Invoice
from testkit.gateway_base import GatewaySimulator
from testkit.telegram import BotApiEmulator

TELEGRAM_PACE = 25.0  # messages a second: the notifier's global pace (bot/telegram/notifier.py)

# What the gateways allow (requests per minute); None: no published limit.
GATEWAY_BUDGETS: dict[str, int | None] = {
    "mion": None,
    "mixpay": MIXPAY_BUDGET_PER_MINUTE,
    "miraclepay": None,
}


# The bot's default POS_POLL_INTERVAL_SECONDS (the bench leaves it unset).
POS_POLL_SECONDS = Settings.model_fields["pos_poll_interval_seconds"].default


@dataclass(frozen=True, slots=True)
class Sizes:
    pending: int  # backlog invoices seeded into the database
    callback_samples: int
    pos_samples: int
    pos_wave: int
    polling_samples: int
    polling_window: float  # (c): each invoice is paid 1 s to this many seconds after creation
    idle_seconds: float
    throughput_commands: int
    burst: int
    qr_rounds: int
    idle_pending: int = 100_000  # the idle backlog on SQLite and on PostgreSQL
    cluster_burst: int = 1_000  # invoices paid at once across `cluster_instances`
    cluster_instances: int = 3
    inbox_commands: int = 300  # the inbox's cost: /invoice commands at once, per round
    inbox_rounds: int = 3

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            pending=10_000,
            callback_samples=200,
            pos_samples=200,
            pos_wave=20,
            polling_samples=100,
            polling_window=20.0,
            idle_seconds=30.0,
            throughput_commands=1000,
            burst=1000,
            qr_rounds=50,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            pending=1_000,
            callback_samples=30,
            pos_samples=30,
            pos_wave=15,
            polling_samples=20,
            polling_window=10.0,
            idle_seconds=10.0,
            throughput_commands=200,
            burst=100,
            qr_rounds=20,
            idle_pending=5_000,
            cluster_burst=100,
            inbox_commands=100,
            inbox_rounds=2,
        )


class MerchantPool:
    """Hands out merchants that have not been used yet: one sample per merchant chat, so
    Telegram's per-chat limit (1 message a second) never delays what is measured."""

    def __init__(self, count: int) -> None:
        from bench.stack import merchant_ids

        self._ids = merchant_ids(count)
        self._next = 0

    def take(self, n: int) -> list[int]:
        if self._next + n > len(self._ids):
            raise RuntimeError("not enough merchants for this run")
        out = self._ids[self._next : self._next + n]
        self._next += n
        return out


@dataclass(slots=True)
class Sample:
    merchant: int
    message_id: int
    invoice: Invoice
    paid_at: float = 0.0  # time.monotonic() of the simulator's "paid"


async def _create(
    stack: Stack, merchants: Sequence[int], text: str, timeout: float = 60.0
) -> list[Sample]:
    """Send `text` from each merchant at once; the invoices and their messages."""
    replies = await stack.commands([(m, text) for m in merchants], timeout=timeout)
    samples: list[Sample] = []
    for merchant in merchants:
        if merchant not in replies:
            continue
        message = stack.last_bot_message(merchant)
        invoice = await stack.latest_invoice(merchant)
        if message is None or invoice is None or invoice.gateway_session_id is None:
            continue
        samples.append(Sample(merchant, message.message_id, invoice))
    return samples


async def _edited(stack: Stack, samples: Sequence[Sample], timeout: float) -> list[float]:
    """Wait for the edit of each sample's message; the paid-to-edit delays (seconds)."""
    keys = [(s.merchant, s.message_id) for s in samples]
    await stack.tracker.wait(lambda: all(k in stack.tracker.edits for k in keys), timeout)
    delays: list[float] = []
    for sample, key in zip(samples, keys, strict=True):
        at = stack.tracker.edits.get(key)
        if at is not None and at >= sample.paid_at:
            delays.append(at - sample.paid_at)
    return delays


def _pay(sim: GatewaySimulator[Any], sample: Sample) -> None:
    assert sample.invoice.gateway_session_id is not None
    sim.pay(sample.invoice.gateway_session_id)
    sample.paid_at = time.monotonic()


def _latency(delays: Sequence[float], expected: int, **extra: Any) -> dict[str, Any]:
    stats = summarize([d * 1000 for d in delays])
    return {"unit": "ms", "expected": expected, "missing": expected - len(delays), **stats, **extra}


def _breakdown(
    stack: Stack, sim: GatewaySimulator[Any], samples: Sequence[Sample]
) -> dict[str, Any]:
    """Where the delay goes, from the simulator's request log: the wait for the status
    request that saw the payment (the poll cadence, or the callback's round trip), the rest
    (storing, the outbox, the edit), and the spacing of the polls before the payment."""
    by_session: dict[str, list[float]] = {}
    ids = {s.invoice.gateway_session_id for s in samples}
    for rec in sim.requests:
        if rec.method != "GET":
            continue
        for part in rec.path.split("/"):
            if part in ids:
                by_session.setdefault(part, []).append(rec.time)
    waits: list[float] = []
    rests: list[float] = []
    gaps: list[float] = []
    for sample in samples:
        polls = sorted(by_session.get(sample.invoice.gateway_session_id or "", []))
        edited = stack.tracker.edits.get((sample.merchant, sample.message_id))
        seen = next((t for t in polls if t >= sample.paid_at), None)
        if seen is None or edited is None:
            continue
        waits.append((seen - sample.paid_at) * 1000)
        rests.append((edited - seen) * 1000)
        before = [t for t in polls if t < sample.paid_at]
        gaps += [(b - a) * 1000 for a, b in itertools.pairwise(before)]
    return {
        "until_status_request_ms": summarize(waits),
        "status_request_to_edit_ms": summarize(rests),
        "poll_spacing_ms": summarize(gaps),
    }


# -- 1. paid-to-edit delay ------------------------------------------------------------------


async def callback_latency(stack: Stack, pool: MerchantPool, n: int) -> dict[str, Any]:
    """(a) Mion online checkouts with a registered webhook: paid -> callback -> status ->
    edit. Payments are spaced 50-150 ms apart, each in its own merchant chat."""
    stack.mion.callbacks_enabled = True
    samples: list[Sample] = []
    for group in chunks(pool.take(n), 50):
        samples += await _create(stack, group, "/invoice 12.50 EUR Coffee")
    await asyncio.sleep(0.5)
    rng = random.Random(1)
    for sample in samples:
        _pay(stack.mion, sample)
        await asyncio.sleep(rng.uniform(0.05, 0.15))
    delays = await _edited(stack, samples, timeout=60.0)
    return _latency(
        delays, n, gateway="mion", path="callback", parts=_breakdown(stack, stack.mion, samples)
    )


async def pos_latency(
    stack: Stack, pool: MerchantPool, n: int, wave: int, *, webhook: bool = False
) -> dict[str, Any]:
    """(b) Mion point-of-sale Lightning sessions: found by polling (POS_POLL_INTERVAL_SECONDS,
    0.5 s by default) with callbacks switched off at the simulator, or (`webhook`) told by
    Mion's status webhook (polling goes on beside it). Payments land at random phases of
    the poll cycle, in waves of `wave` open sessions (a busy shop's counters), about 5 a
    second."""
    stack.mion.callbacks_enabled = webhook
    rng = random.Random(2 if not webhook else 4)
    delays: list[float] = []
    everyone: list[Sample] = []
    try:
        for group in chunks(pool.take(n), wave):
            samples = await _create(stack, group, "/pos 4.20 Espresso")
            everyone += samples
            # A customer scans and confirms in a wallet: at least a second after the QR is
            # shown. (Sooner, the edit would wait for Telegram's one message a second per
            # chat, which the bot keeps after the QR it just sent.)
            await asyncio.sleep(1.0)

            async def pay_later(sample: Sample, after: float) -> None:
                await asyncio.sleep(after)
                _pay(stack.mion, sample)

            # About 5 payments a second: the polling path, not Telegram's pace (25 messages
            # a second, edits and admin notices together), is what is measured.
            window = len(samples) / 5.0
            await asyncio.gather(*(pay_later(s, rng.uniform(0.0, window)) for s in samples))
            delays += await _edited(stack, samples, timeout=30.0)
    finally:
        stack.mion.callbacks_enabled = True
    return _latency(
        delays, n, gateway="mion", path="callback" if webhook else "poll",
        cadence_s=POS_POLL_SECONDS, parts=_breakdown(stack, stack.mion, everyone),
    )


async def online_polling_latency(
    stack: Stack, pool: MerchantPool, n: int, window: float = 20.0
) -> dict[str, Any]:
    """(c) MiraclePay online checkouts (no callbacks exist): found by polling at the online
    cadence (5 s for a fresh invoice, the first 25 s). Each is paid at a random moment
    1 s to `window` s after it was created."""
    samples: list[Sample] = []
    for group in chunks(pool.take(n), 50):
        samples += await _create(stack, group, "/invoice miraclepay 20.50 USD Lamp")
    rng = random.Random(3)

    async def pay_later(sample: Sample, after: float) -> None:
        await asyncio.sleep(after)
        _pay(stack.miracle, sample)

    await asyncio.gather(*(pay_later(s, rng.uniform(1.0, window)) for s in samples))
    delays = await _edited(stack, samples, timeout=60.0)
    return _latency(
        delays, n, gateway="miraclepay", path="poll", cadence_s=5.0,
        parts=_breakdown(stack, stack.miracle, samples),
    )


# -- 2. idle cost ----------------------------------------------------------------------------


async def idle_cost(stack: Stack, seconds: float, settle: float = 3.0) -> dict[str, Any]:
    """CPU share and memory of the bot doing nothing but being ready, and every request
    it makes meanwhile (gateways: against their budgets; Telegram)."""
    await asyncio.sleep(settle)
    gw_before = stack.gateway_requests()
    tg_before = stack.emu.stats.requests
    first = stack.bot_sample()
    await asyncio.sleep(seconds)
    last = stack.bot_sample()
    gw_after = stack.gateway_requests()
    minutes = (last.at - first.at) / 60.0
    gateways = {
        name: {
            "requests_per_minute": (gw_after[name] - gw_before[name]) / minutes,
            "budget_per_minute": GATEWAY_BUDGETS[name],
        }
        for name in gw_after
    }
    return {
        "seconds": round(last.at - first.at, 2),
        "cpu_share": cpu_share(first, last),
        "rss_mib": last.rss_kib / 1024,
        "peak_rss_mib": last.hwm_kib / 1024,
        "telegram_requests_per_minute": (stack.emu.stats.requests - tg_before) / minutes,
        "gateways": gateways,
    }


# -- 3. throughput ---------------------------------------------------------------------------


async def command_throughput(
    emu: BotApiEmulator,
    tracker: Tracker,
    pid: int,
    users: Sequence[int],
    text: Callable[[int], str],
    timeout: float = 180.0,
) -> dict[str, Any]:
    """Every user sends one command at the same moment; replies per second until the last
    one arrived (the emulator's arrival times), and the CPU the bot used meanwhile."""
    first, driver_first = proc_sample(pid), proc_sample(os.getpid())
    start = time.monotonic()
    replies = await drive_commands(emu, tracker, [(u, text(u)) for u in users], timeout=timeout)
    last, driver_last = proc_sample(pid), proc_sample(os.getpid())
    done = [reply for _sent, reply in replies.values()]
    end = max(done) if done else time.monotonic()
    wall = max(end - start, 1e-9)
    latencies = [(reply - sent) * 1000 for sent, reply in replies.values()]
    return {
        "commands": len(users),
        "replied": len(done),
        "seconds": round(wall, 3),
        "per_second": len(done) / wall,
        "reply_ms": summarize(latencies),
        "bot_cpu_share": cpu_share(first, last),
        # The emulator and simulators (this process): near 1.0 would mean they set the pace.
        "driver_cpu_share": cpu_share(driver_first, driver_last),
    }


# -- 4. burst --------------------------------------------------------------------------------


async def burst(stack: Stack, merchants: Sequence[int], timeout: float) -> dict[str, Any]:
    """Pay the open invoice of every merchant at the same moment, with the emulator
    enforcing Telegram's limits; time until every message is edited; 429s."""
    samples: list[Sample] = []
    for merchant in merchants:
        message = stack.last_bot_message(merchant)
        invoice = await stack.latest_invoice(merchant)
        if message is None or invoice is None or invoice.gateway_session_id is None:
            continue
        samples.append(Sample(merchant, message.message_id, invoice))
    stack.tracker.scan()
    stack.emu.limiter.reset()
    stack.emu.enforce_limits = True
    too_many_before = stack.emu.stats.too_many_requests
    admin_before = stack.tracker.reply_count(ADMIN_ID)
    edits_before = stack.tracker.edit_count
    start = time.monotonic()
    for sample in samples:
        _pay(stack.mion, sample)
    keys = [(s.merchant, s.message_id) for s in samples]
    finished = await stack.tracker.wait(
        lambda: all(k in stack.tracker.edits for k in keys), timeout, poll=0.05
    )
    end = time.monotonic()
    edited = [stack.tracker.edits[k] for k in keys if k in stack.tracker.edits]
    first_edit = min(edited) if edited else end
    last_edit = max(edited) if edited else end
    delivery = last_edit - first_edit
    return {
        "invoices": len(samples),
        # Every edit at the notifier's pace, after at most one poll interval (5 s) for the
        # watcher to notice the payments.
        "expected_seconds": len(samples) / TELEGRAM_PACE + 5.0,
        "edited": len(edited),
        "finished": finished,
        "seconds_to_all_edited": (last_edit - start) if finished else None,
        "waited_seconds": round(end - start, 2),
        "first_edit_after_s": first_edit - start,
        "edits_per_second": (len(edited) - 1) / delivery if delivery > 0 else None,
        "telegram_429": stack.emu.stats.too_many_requests - too_many_before,
        "admin_notices_sent": stack.tracker.reply_count(ADMIN_ID) - admin_before,
        "edit_requests": stack.tracker.edit_count - edits_before,
        "delay_ms": summarize([(stack.tracker.edits[k] - s.paid_at) * 1000
                               for s, k in zip(samples, keys, strict=True)
                               if k in stack.tracker.edits]),
    }


# -- 5. QR -----------------------------------------------------------------------------------


def qr_render(rounds: int) -> dict[str, Any]:
    """bot.telegram.views.qr_for on a Lightning invoice of a realistic length (~300 characters)."""
    from datetime import UTC, datetime

    from bot.domain.models import InvoiceKind, InvoiceStatus
    from bot.gateways.bolt11 import make_bolt11
    from bot.telegram.views import qr_for

    now = datetime.now(UTC)
    ln = make_bolt11(20_833_000, now, timedelta(minutes=2), "Tillbot order tb-1234 Espresso")
    invoice = Invoice(
        id=1,
        public_token="t",
        merchant_id=1,
        amount_minor=1250,
        currency="EUR",
        description="Espresso",
        gateway="mion",
        kind=InvoiceKind.LIGHTNING,
        status=InvoiceStatus.PENDING,
        created_at=now,
        updated_at=now,
        payment={"ln_invoice": ln},
    )
    qr_for(invoice)  # warm-up (imports, PIL plugins)
    times: list[float] = []
    size = 0
    for _ in range(rounds):
        start = time.perf_counter()
        png = qr_for(invoice)
        times.append((time.perf_counter() - start) * 1000)
        size = len(png)
    return {
        "rounds": rounds,
        "bolt11_chars": len(ln),
        "png_bytes": size,
        "median_ms": median(times),
        "p95_ms": summarize(times)["p95"],
    }


# -- 6. the inbox's cost ---------------------------------------------------------------------


def merge_throughput(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of `command_throughput`: the median rate and p99, and the worst p99."""
    rates = sorted(r["per_second"] for r in runs)
    p99s = sorted(r["reply_ms"]["p99"] for r in runs)
    p50s = sorted(r["reply_ms"]["p50"] for r in runs)
    return {
        "rounds": len(runs),
        "commands": sum(r["commands"] for r in runs),
        "replied": sum(r["replied"] for r in runs),
        "per_second": rates[len(rates) // 2],
        "p50_ms": p50s[len(p50s) // 2],
        "p99_ms": p99s[len(p99s) // 2],
        "p99_ms_worst": p99s[-1],
        "bot_cpu_share": max(r["bot_cpu_share"] for r in runs),
    }


class PostgresDatabases:
    """Fresh databases on the test server (TEST_DATABASE_URL), dropped at the end."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.urls: list[str] = []

    async def fresh(self) -> str:
        from testkit.seeding import create_database

        url = await create_database(self.base, "tillbot_bench")
        self.urls.append(url)
        return url

    async def drop(self) -> None:
        from testkit.seeding import drop_database

        for url in self.urls:
            await drop_database(self.base, url)


async def postgres_database() -> PostgresDatabases | None:
    """The test PostgreSQL server when it answers, else None (the SQLite figures only)."""
    import os

    import asyncpg

    base = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        con = await asyncpg.connect(base, timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return None
    await con.close()
    return PostgresDatabases(base)
