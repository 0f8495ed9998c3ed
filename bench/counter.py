"""`python -m bench.counter [--samples N]`: paid -> shown on the counter Mini App.

The bot (in this process, built as `python -m bot` builds it) serves the counter behind an
HTTPS front (PUBLIC_URL), with Mion as its gateway (the Mion simulator) and the Bot API
emulator. For each sample a merchant makes a Lightning sale through the Mini App's API
(`POST /app/api/sales`), holds its live status stream (`GET /app/api/invoices/<token>/events`,
Server-Sent Events), and the sale is paid at the simulator. Measured:

- paid -> shown: from the payment at the simulator to the `paid` event on the stream;
- seen -> shown: from the bot's status change (the invoice's `updated_at`) to that event.

Two runs: with Mion's status webhook (the simulator calls the bot back), and by polling
alone (the simulator's webhooks removed; the point-of-sale cadence, POS_POLL_INTERVAL_SECONDS,
applies). Writes `bench/results/counter.md`. Figures only, no pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.machine import load_average, machine_info
from bench.stats import summarize
from bot.app import Runner, build_application
from bot.config import load_settings
from bot.webapp.auth import sign
from testkit.mion import MionSimulator
from testkit.telegram import BotApiEmulator
from testkit.tls import TlsFront

TOKEN = "987654:BENCHcounterTOKENvalue0123456789abcdef"
MION_KEY = "bench-counter-mion-key"
MERCHANT = 1001
RESULTS = Path(__file__).resolve().parent / "results" / "counter.md"
REPO_ROOT = Path(__file__).resolve().parent.parent


def init_data(user_id: int) -> str:
    user = json.dumps({"id": user_id, "first_name": "Bench"}, separators=(",", ":"))
    return sign({"user": user, "auth_date": str(int(time.time()))}, TOKEN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def one_sample(
    client: httpx.AsyncClient, mion: MionSimulator, headers: dict[str, str], *, webhook: bool
) -> tuple[float, float]:
    r = await client.post(
        "/app/api/sales", json={"amount": "4.20", "tip": {"kind": "none"}}, headers=headers
    )
    r.raise_for_status()
    view = r.json()
    token = view["token"]
    stored = await STATE["repo"].get_invoice_by_token(token)
    session = mion.sessions[stored.gateway_session_id]
    if not webhook:
        session.callback_urls.clear()  # polling alone
    loop = asyncio.get_running_loop()
    paid_at = 0.0
    async with client.stream(
        "GET", f"/app/api/invoices/{token}/events", headers=headers
    ) as response:
        buffer = ""
        async for chunk in response.aiter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                data = "".join(
                    line[5:].strip() for line in block.splitlines() if line.startswith("data:")
                )
                if not data:
                    continue
                event = json.loads(data)
                if event["status"] == "pending" and not paid_at:
                    paid_at = loop.time()
                    mion.pay(session.id)
                elif event["status"] == "paid":
                    shown_wall = time.time()
                    shown = loop.time()
                    seen_wall = await _seen(client, token, headers)
                    return shown - paid_at, max(0.0, shown_wall - seen_wall)
    raise RuntimeError("the stream ended before paid")


async def _seen(client: httpx.AsyncClient, token: str, headers: dict[str, str]) -> float:
    """When the bot stored the payment (the invoice's update time; its `paid_at` is the
    gateway's), read from the bot's repository."""
    stored = await STATE["repo"].get_invoice_by_token(token)
    return float(stored.updated_at.timestamp())


STATE: dict[str, Any] = {}


async def run(samples: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tillbot-bench-counter-") as work:
        STATE["machine"] = machine_info(Path(work), REPO_ROOT)
        emu = BotApiEmulator(token=TOKEN, bot_username="tillbot_bench_bot")
        await emu.start()
        emu.add_user(MERCHANT, "Maria", username="maria", language_code="en")
        async with MionSimulator(api_key=MION_KEY) as mion:
            port = free_port()
            front = TlsFront(port)
            await front.start()
            settings = load_settings(
                telegram_bot_token=TOKEN,
                telegram_api_url=emu.url,
                database_url=f"sqlite:///{Path(work) / 'tillbot.db'}",
                merchant_ids=[MERCHANT],
                http_port=port,
                public_url=front.url,
                mion_api_url=mion.url,
                mion_api_key=MION_KEY,
                default_gateway="mion",
                sandbox_enabled=False,
                _env_file=None,
            )
            runner = Runner(build_application(settings))
            await runner.start()
            STATE["repo"] = runner.app.bot_data.repo
            policy = runner.app.bot_data.settings
            try:
                headers = {"Authorization": f"tma {init_data(MERCHANT)}"}
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=30
                ) as client:
                    for webhook in (True, False):
                        paid: list[float] = []
                        seen: list[float] = []
                        for _ in range(samples):
                            a, b = await one_sample(client, mion, headers, webhook=webhook)
                            paid.append(a)
                            seen.append(b)
                        name = "webhook" if webhook else "polling"
                        results[f"paid_to_shown_{name}"] = summarize(paid)
                        results[f"seen_to_shown_{name}"] = summarize(seen)
                results["pos_poll_interval_s"] = {"value": policy.pos_poll_interval_seconds}
            finally:
                await runner.stop()
                await front.stop()
        await emu.stop()
    return results


def render(results: dict[str, dict[str, float]], samples: int) -> str:
    info = STATE["machine"]
    keys = ("cpu", "cores", "memory_gib", "python", "os", "commit", "load_before")
    lines = [
        "# Counter Mini App: paid -> shown",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {samples} samples per run; machine: "
        + ", ".join(f"{k} {info[k]}" for k in keys if k in info)
        + f"; load after {load_average()}",
        "",
        "| figure | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("paid_to_shown_webhook", "paid at Mion -> shown, Mion webhook"),
        ("seen_to_shown_webhook", "bot saw it -> shown, Mion webhook"),
        ("paid_to_shown_polling", "paid at Mion -> shown, polling"),
        ("seen_to_shown_polling", "bot saw it -> shown, polling"),
    ):
        s = results[key]
        lines.append(
            f"| {label} | {s['p50'] * 1000:.0f} ms | {s['p95'] * 1000:.0f} ms"
            f" | {s['p99'] * 1000:.0f} ms | {s['max'] * 1000:.0f} ms |"
        )
    lines.append("")
    lines.append(
        f"POS_POLL_INTERVAL_SECONDS = {results['pos_poll_interval_s']['value']}"
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.counter")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    results = asyncio.run(run(args.samples))
    text = render(results, args.samples)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
