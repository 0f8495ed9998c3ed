"""The benchmark harness works: statistics, /proc sampling, the report, the simulator CLI,
and a tiny real run (the bot process, one scenario) in a few seconds."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from bench import scenarios
from bench.machine import machine_info
from bench.proc import cpu_share, sample
from bench.report import render
from bench.scenarios import MerchantPool
from bench.stack import Stack
from bench.stats import percentile, summarize

REPO = Path(__file__).resolve().parent.parent


def test_percentile_interpolates_like_numpy() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 0) == 15.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 50) == 35.0
    assert percentile(values, 40) == pytest.approx(29.0)  # numpy.percentile(values, 40)
    assert percentile(values, 99) == pytest.approx(49.6)
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summarize() -> None:
    stats = summarize([1.0, 2.0, 3.0, 4.0])
    assert stats["n"] == 4 and stats["mean"] == 2.5 and stats["max"] == 4.0
    assert stats["p50"] == 2.5
    assert summarize([])["n"] == 0 and math.isnan(summarize([])["p99"])


def test_proc_sampling_reads_cpu_and_memory() -> None:
    first = sample(os.getpid())
    sum(i * i for i in range(300_000))  # burn a little CPU
    last = sample(os.getpid())
    assert last.rss_kib > 1000 and last.hwm_kib >= last.rss_kib
    assert last.cpu_seconds >= first.cpu_seconds
    assert 0.0 <= cpu_share(first, last) < 2.5


def test_report_renders_partial_results(tmp_path: Path) -> None:
    results = {
        "quick": True,
        "sizes": {"pending": 10},
        "machine": machine_info(tmp_path, REPO),
        "duration_s": 1.0,
        "latency": {"callback": {**summarize([10.0, 20.0]), "missing": 0}},
        "qr": scenarios.qr_render(2),
    }
    text = render(results)
    assert "(a) callback" in text and "✅ met" in text
    assert "QR" in text and "BOLT11" in text
    assert 250 <= results["qr"]["bolt11_chars"] <= 350


async def test_simulator_cli_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "testkit", "mion", "--port", "0", "--api-key", "k",
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        assert line.startswith("mion simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(f"{url}/payment-sessions/nope/status",
                                      headers={"x-api-key": "k"})
            assert answer.status_code == 404
            assert (await client.get(f"{url}/_sim/sessions")).json()["gateway"] == "mion"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0


async def test_a_tiny_run_of_the_callback_scenario(tmp_path: Path) -> None:
    stack = Stack(tmp_path, merchants=5)
    await stack.start()
    try:
        await stack.start_bot(webhooks=True, pending=30)
        assert stack.bot is not None and stack.bot.running
        idle = await scenarios.idle_cost(stack, 0.5, settle=0.1)
        assert idle["rss_mib"] > 10 and idle["cpu_share"] >= 0
        result = await scenarios.callback_latency(stack, MerchantPool(5), 3)
        assert result["n"] == 3 and result["missing"] == 0
        assert 0 < result["p50"] < 5000  # ms; generous: CI machines are slow
        assert not stack.emu.violations
    finally:
        await stack.stop()
