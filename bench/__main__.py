"""`python -m bench [--quick]`: how fast a payment is seen, and what it costs.

Runs the real bot (`python -m bot`, a separate process) against the Telegram Bot API
emulator and the gateway simulators (this process), prints a markdown table and writes
`bench/results/latest.{json,md}` (`--quick`: `quick.{json,md}`). No pass/fail on timings:
the exit status is 0 unless the harness itself breaks.

Runs:
1. webhook mode (PUBLIC_URL set): idle cost, then paid-to-edit delays (callback, point of
   sale polling, point of sale with Mion's status webhook, online polling), with the
   pending backlog seeded into the database;
2. long-polling mode: `/invoice` throughput, then a burst of payments with the emulator
   enforcing Telegram's limits;
3. a bare PTB echo bot on a fresh emulator, for the throughput ratio;
4. QR rendering, in this process;
5. failover: three instances on PostgreSQL, instances with claimed work killed -9
   (bench/failover.py; skipped without a PostgreSQL server);
6. the ledger's CSV and XLSX and the shift close's chart, in this process;
7. idle with a large backlog on SQLite and on PostgreSQL (one instance each);
8. a burst across instances: three bot processes on one PostgreSQL, invoices of distinct
   chats paid at once, the emulator enforcing Telegram's limits (bench/cluster.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import failover, scenarios
from bench.books import books_render
from bench.machine import load_average, machine_info
from bench.proc import ChildProcess, child_env
from bench.report import render
from bench.scenarios import MerchantPool, Sizes
from bench.stack import TOKEN, Stack, Tracker, merchant_ids

CLUSTER_PACE = 28  # TELEGRAM_MESSAGES_PER_SECOND of the burst across instances
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = RESULTS_DIR.parent.parent

log = logging.getLogger("bench")


def _progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def run_latency(work: Path, sizes: Sizes, results: dict[str, Any]) -> None:
    merchants = sizes.callback_samples + 2 * sizes.pos_samples + sizes.polling_samples + 10
    stack = Stack(work / "run1", merchants=merchants)
    stack.work_dir.mkdir(parents=True, exist_ok=True)
    await stack.start()
    try:
        _progress(f"run 1 (webhook mode): seeding {sizes.pending:,} pending invoices, starting")
        await stack.start_bot(webhooks=True, pending=sizes.pending)
        results["startup_s"] = stack.startup_seconds
        _progress(f"idle cost over {sizes.idle_seconds:.0f} s")
        results["idle"] = await scenarios.idle_cost(stack, sizes.idle_seconds)
        pool = MerchantPool(merchants)
        latency: dict[str, Any] = {}
        results["latency"] = latency
        _progress(f"(a) callback delay, {sizes.callback_samples} payments")
        latency["callback"] = await scenarios.callback_latency(
            stack, pool, sizes.callback_samples
        )
        _progress(f"(b) point-of-sale polling delay, {sizes.pos_samples} payments")
        latency["pos"] = await scenarios.pos_latency(
            stack, pool, sizes.pos_samples, sizes.pos_wave
        )
        _progress(f"(b2) point-of-sale webhook delay, {sizes.pos_samples} payments")
        latency["pos_webhook"] = await scenarios.pos_latency(
            stack, pool, sizes.pos_samples, sizes.pos_wave, webhook=True
        )
        _progress(f"(c) online polling delay, {sizes.polling_samples} payments")
        latency["online_polling"] = await scenarios.online_polling_latency(
            stack, pool, sizes.polling_samples, sizes.polling_window
        )
        results["emulator_violations"] = results.get("emulator_violations", 0) + len(
            stack.emu.violations
        )
    finally:
        await stack.stop()


async def run_throughput(work: Path, sizes: Sizes, results: dict[str, Any]) -> None:
    n = sizes.throughput_commands
    stack = Stack(work / "run2", merchants=n)
    stack.work_dir.mkdir(parents=True, exist_ok=True)
    await stack.start()
    try:
        _progress(f"run 2 (long polling): seeding {sizes.pending:,} pending invoices, starting")
        await stack.start_bot(webhooks=False, pending=sizes.pending)
        results["idle_polling"] = await scenarios.idle_cost(
            stack, min(10.0, sizes.idle_seconds / 2), settle=2.0
        )
        _progress(f"throughput: {n} /invoice commands from {n} merchants at once")
        assert stack.bot is not None
        thr = results.setdefault("throughput", {})
        thr["tillbot"] = await scenarios.command_throughput(
            stack.emu,
            stack.tracker,
            stack.bot.pid,
            merchant_ids(n),
            lambda _u: "/invoice 12.50 EUR Coffee",
        )
        burst_merchants = merchant_ids(n)[: sizes.burst]
        # Let the first polls of the new invoices pass, like invoices that have been open
        # a little while.
        await asyncio.sleep(2.0)
        timeout = max(60.0, sizes.burst / scenarios.TELEGRAM_PACE * 4)
        _progress(f"burst: {len(burst_merchants)} invoices paid at once (up to {timeout:.0f} s)")
        results["burst"] = await scenarios.burst(stack, burst_merchants, timeout=timeout)
        results["emulator_violations"] = results.get("emulator_violations", 0) + len(
            stack.emu.violations
        )
    finally:
        await stack.stop()


async def run_idle_backends(work: Path, sizes: Sizes, results: dict[str, Any]) -> None:
    """Idle with `idle_pending` open invoices, on SQLite and on PostgreSQL: one instance's
    CPU and memory, and its gateway requests a minute."""
    from bench.cluster import create_database, drop_database
    from bench.seed import seed_pending_bulk

    found: dict[str, Any] = {}
    results["idle_backends"] = found
    for backend in ("sqlite", "postgres"):
        stack = Stack(work / f"idle-{backend}", merchants=50)
        stack.work_dir.mkdir(parents=True, exist_ok=True)
        if backend == "sqlite":
            url = f"sqlite:///{stack.work_dir / 'idle.db'}"
        else:
            try:
                url = await create_database()
            except Exception as exc:  # no server: say so, go on
                found[backend] = {"skipped": f"no PostgreSQL server: {type(exc).__name__}"}
                continue
        try:
            _progress(f"idle on {backend}: seeding {sizes.idle_pending:,} pending invoices")
            await seed_pending_bulk(url, sizes.idle_pending, merchant_ids(50))
            stack.database_url = url
            await stack.start()
            await stack.start_bot(webhooks=True, pending=0, timeout=120)
            _progress(f"idle on {backend} over {sizes.idle_seconds:.0f} s")
            found[backend] = await scenarios.idle_cost(stack, sizes.idle_seconds)
            found[backend]["pending"] = sizes.idle_pending
            found[backend]["startup_s"] = stack.startup_seconds
        finally:
            await stack.stop()
            if backend == "postgres":
                await drop_database(url)


async def run_cluster(work: Path, sizes: Sizes, results: dict[str, Any]) -> None:
    """A burst across instances: invoices of distinct chats paid at once, several bot
    processes on one PostgreSQL sharing Telegram's budget, the emulator enforcing it."""
    from bench.cluster import Cluster

    n = sizes.cluster_burst
    # Telegram allows about 30 a second per bot; one budget for all instances can go
    # close to it (each instance pacing on its own had to divide it between them).
    cluster = Cluster(
        work / "cluster",
        instances=sizes.cluster_instances,
        chats=n,
        env={"TELEGRAM_MESSAGES_PER_SECOND": str(CLUSTER_PACE)},
        # Polling (every second) finds the payments: 1,000 Mion callbacks at once (and
        # their funded follow-ups), and the status reads they cause, overload the
        # simulators in this one process on a small machine.
        callbacks=n <= 200,
    )
    try:
        await cluster.start()
    except Exception as exc:  # no PostgreSQL server: say so, go on
        results["cluster_burst"] = {"skipped": f"no PostgreSQL server: {type(exc).__name__}"}
        return
    try:
        _progress(f"burst across {sizes.cluster_instances} instances: seeding {n:,} invoices")
        await cluster.seed(n)
        await cluster.start_bots(timeout=180)
        await asyncio.sleep(3.0)  # the instances settle (first polls of the backlog)
        _progress(f"burst across instances: {n:,} invoices paid at once")
        timeout = max(60.0, n / scenarios.TELEGRAM_PACE * 4)
        results["cluster_burst"] = await cluster.burst(timeout=timeout)
        results["cluster_burst"]["pace"] = CLUSTER_PACE
        results["emulator_violations"] = results.get("emulator_violations", 0) + len(
            cluster.emu.violations
        )
    finally:
        await cluster.stop()


async def run_unpaced_throughput(work: Path, sizes: Sizes) -> dict[str, Any]:
    """`/invoice` throughput with Telegram's pace lifted (the emulator enforces no limits and
    the bot may send up to 1,000 messages a second): what the bot itself can do, to compare
    with an echo bot that ignores Telegram's limits too."""
    n = sizes.throughput_commands
    stack = Stack(work / "run2u", merchants=n, extra_env={"TELEGRAM_MESSAGES_PER_SECOND": "1000"})
    stack.work_dir.mkdir(parents=True, exist_ok=True)
    await stack.start()
    try:
        await stack.start_bot(webhooks=False, pending=0)
        assert stack.bot is not None
        return await scenarios.command_throughput(
            stack.emu,
            stack.tracker,
            stack.bot.pid,
            merchant_ids(n),
            lambda _u: "/invoice 12.50 EUR Coffee",
        )
    finally:
        await stack.stop()


async def run_inbox(work: Path, n: int, rounds: int, results: dict[str, Any]) -> None:
    """The inbox's cost (issue 12): `/invoice` from `n` merchants at once, `rounds` times,
    with INBOX_ENABLED=true and false, on SQLite and (when reachable) PostgreSQL."""
    out: dict[str, Any] = results.setdefault("inbox", {})
    databases = ["sqlite"]
    postgres = await scenarios.postgres_database()
    if postgres is not None:
        databases.append("postgres")
    try:
        for database in databases:
            for enabled in (True, False):
                label = f"{database}, inbox {'on' if enabled else 'off'}"
                # Telegram's pace raised (the emulator does not enforce it here): what is
                # measured is the bot, not the 25 messages a second it allows itself.
                extra = {
                    "INBOX_ENABLED": str(enabled).lower(),
                    "TELEGRAM_MESSAGES_PER_SECOND": "1000",
                }
                if database == "postgres":
                    assert postgres is not None
                    extra["DATABASE_URL"] = await postgres.fresh()
                stack = Stack(work / f"inbox-{database}-{enabled}", merchants=n, extra_env=extra)
                stack.work_dir.mkdir(parents=True, exist_ok=True)
                await stack.start()
                try:
                    await stack.start_bot(webhooks=False, pending=0)
                    assert stack.bot is not None
                    _progress(f"inbox cost: {label}, {rounds} x {n} /invoice at once")
                    runs = [
                        await scenarios.command_throughput(
                            stack.emu,
                            stack.tracker,
                            stack.bot.pid,
                            merchant_ids(n),
                            lambda _u: "/invoice 12.50 EUR Coffee",
                        )
                        for _ in range(rounds)
                    ]
                    out[label] = scenarios.merge_throughput(runs)
                finally:
                    await stack.stop()
    finally:
        if postgres is not None:
            await postgres.drop()


async def run_echo(work: Path, n: int, concurrency: int) -> dict[str, Any]:
    from testkit.telegram import BotApiEmulator

    emu = BotApiEmulator(token=TOKEN, bot_username="echo_bench_bot")
    await emu.start()
    users = merchant_ids(n)
    for uid in users:
        emu.add_user(uid, f"U{uid}")
    env = child_env(
        {
            "ECHO_TOKEN": TOKEN,
            "ECHO_API_URL": emu.url,
            "ECHO_CONCURRENCY": str(concurrency),
        },
        set(),
    )
    proc = ChildProcess("bench.echo", env, work, work / f"echo-{concurrency}.log")
    proc.make_dirs()
    await proc.start()
    tracker = Tracker(emu)
    try:
        deadline = time.monotonic() + 30
        while not emu.polls_started:
            if not proc.running or time.monotonic() > deadline:
                raise RuntimeError(f"the echo bot did not start:\n{proc.log_tail()}")
            await asyncio.sleep(0.05)
        return await scenarios.command_throughput(
            emu, tracker, proc.pid, users, lambda u: f"hello from {u}"
        )
    finally:
        await proc.stop()
        await emu.stop()


async def run(sizes: Sizes, quick: bool, work: Path, only: set[str]) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "quick": quick,
        "sizes": {k: getattr(sizes, k) for k in sizes.__dataclass_fields__},
        "machine": machine_info(work, REPO_ROOT),
    }
    if "latency" in only:
        await run_latency(work, sizes, results)
    if "throughput" in only:
        await run_throughput(work, sizes, results)
        n = sizes.throughput_commands
        _progress(f"echo bot baseline: {n} messages from {n} users at once")
        thr = results["throughput"]
        _progress(f"throughput, Telegram's pace lifted: {n} /invoice commands at once")
        thr["tillbot_unpaced"] = await run_unpaced_throughput(work, sizes)
        thr["echo"] = await run_echo(work / "echo", n, 0)
        thr["echo_tillbot_settings"] = await run_echo(work / "echo", n, 64)
        # The bot's own speed against the echo bot's: both free of Telegram's pace.
        unpaced = thr["tillbot_unpaced"]["per_second"]
        thr["ratio"] = unpaced / thr["echo"]["per_second"]
        thr["ratio_same_settings"] = unpaced / thr["echo_tillbot_settings"]["per_second"]
    if "idle" in only:
        await run_idle_backends(work, sizes, results)
    if "cluster" in only:
        await run_cluster(work, sizes, results)
    if "inbox" in only:
        await run_inbox(work, sizes.inbox_commands, sizes.inbox_rounds, results)
    if "qr" in only:
        _progress("QR rendering")
        results["qr"] = scenarios.qr_render(sizes.qr_rounds)
    if "failover" in only:
        kills = 2 if quick else 12
        _progress(f"failover: 3 instances on PostgreSQL, {kills} kills -9 with claimed work")
        results["failover"] = await failover.run(
            work / "failover",
            kills=kills,
            pending=60,
            rate=2.0,
        )
    if "books" in only:
        _progress("ledger exports and the shift close's chart")
        results["books"] = books_render(10_000 if not quick else 2_000, 3)
    results["duration_s"] = time.monotonic() - started
    results["machine"]["load_after"] = load_average()
    return results


def _clean(value: Any) -> Any:
    """JSON without NaN (as null)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI): ~1-2 minutes")
    parser.add_argument(
        "--only",
        default="latency,throughput,inbox,qr,failover,books,idle,cluster",
        help=(
            "comma-separated parts: latency (incl. idle), throughput (incl. burst), inbox (its"
            " cost), qr, failover, books, idle (SQLite and PostgreSQL backlogs), cluster"
            " (burst across instances)"
        ),
    )
    parser.add_argument("--out", type=Path, default=None, help="results file stem")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep databases and logs here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sizes = Sizes.quick() if args.quick else Sizes.full()
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tillbot-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(run(sizes, args.quick, work, only))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    markdown = render(results)
    print(markdown)
    stem = args.out or RESULTS_DIR / ("quick" if args.quick else "latest")
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(_clean(results), indent=2) + "\n")
    Path(f"{stem}.md").write_text(markdown)
    _progress(f"wrote {stem}.json and {stem}.md in {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
