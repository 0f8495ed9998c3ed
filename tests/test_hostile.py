"""Hostile input and bad luck against a real `python -m bot` process (issue 17, points 3, 4,
5, 8 and 10): forged and replayed gateway callbacks, half-open and slow HTTP clients,
deeply nested JSON, a /metrics token, and a database file removed while the bot runs.

The bot runs in webhook mode (`HTTP_PORT` on 127.0.0.1, and an HTTPS `PUBLIC_URL` served by
a local TLS front, as a load balancer would) against the Bot API emulator and the Mion and MixPay simulators, which live in this test process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.web import SECRET_HEADER
from testkit.botproc import BotProcess
from testkit.mion import MionSimulator
from testkit.mixpay import DEFAULT_PAYEE_ID, USDT_ERC20, MixPaySimulator
from testkit.telegram import BotApiEmulator
from testkit.telegram.models import EmuUser, MessageRecord
from testkit.tls import TlsFront
from tests.conftest import ADMIN_ID, MERCHANT_ID, PLACEHOLDERS, TOKEN, free_port
from tests.reliability_stats import record

pytest_plugins = ["tests.reliability_stats"]

MION_KEY = "mion-hostile-MARKER-key-3e7a"
WEBHOOK_SECRET = "hook-hostile-MARKER-secret-51f0"
METRICS_TOKEN = "metrics-MARKER-token-SECRET-8d2b6e"


@dataclass
class Bot:
    emu: BotApiEmulator
    mion: MionSimulator
    mixpay: MixPaySimulator
    proc: BotProcess
    port: int
    db: Path
    merchant: EmuUser
    admin: EmuUser

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, **env: str) -> None:
        self.emu.webhook_url = None
        self.proc.start(**env)
        await self.emu.wait_for(
            lambda: self.emu.webhook_url is not None or not self.proc.running, timeout=40
        )
        assert self.proc.running, self.proc.output()[-3000:]

    async def command(self, text: str, *, timeout: float = 20.0) -> MessageRecord:
        before = len(self.emu.bot_messages(self.merchant))
        await self.emu.send_message(self.merchant, text)

        def reply() -> MessageRecord | None:
            # "Creating invoice…" is a placeholder: the reply is what it becomes.
            for message in self.emu.bot_messages(self.merchant)[before:]:
                if not message.deleted and message.content not in PLACEHOLDERS:
                    return message
            return None

        return await self.emu.wait_for(reply, timeout=timeout)


@pytest.fixture
async def bot(emulator: BotApiEmulator, tmp_path: Path) -> AsyncIterator[Bot]:
    """A real bot process in webhook mode with Mion and MixPay (started by each test)."""
    mion = MionSimulator(api_key=MION_KEY)
    mixpay = MixPaySimulator(payee_id=DEFAULT_PAYEE_ID)
    await mion.start()
    await mixpay.start()
    port = free_port()
    front = TlsFront(port)  # PUBLIC_URL must be HTTPS; the attacks go to the plain port
    await front.start()
    db = tmp_path / "hostile.db"
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": emulator.url,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DATABASE_URL": f"sqlite:///{db}",
        "ADMIN_IDS": str(ADMIN_ID),
        "MERCHANT_IDS": str(MERCHANT_ID),
        "MION_API_URL": mion.url,
        "MION_API_KEY": MION_KEY,
        "MIXPAY_API_URL": mixpay.url,
        "MIXPAY_PAYEE_ID": DEFAULT_PAYEE_ID,
        "MIXPAY_SETTLEMENT_ASSET_ID": USDT_ERC20,
        "DEFAULT_GATEWAY": "mion",
        "HTTP_PORT": str(port),
        "PUBLIC_URL": front.url,
        "POLL_INTERVAL_SECONDS": "30",
        "CALLBACK_POLL_INTERVAL_SECONDS": "60",
        "SANDBOX_ENABLED": "false",
        "LOG_LEVEL": "INFO",
    }
    proc = BotProcess(env, tmp_path / "bot.log")
    merchant = emulator.add_user(MERCHANT_ID, "Maria", language_code="en")
    admin = emulator.add_user(ADMIN_ID, "Ada", language_code="en")
    try:
        yield Bot(emulator, mion, mixpay, proc, port, db, merchant, admin)
    finally:
        await proc.stop()
        proc.kill()
        await front.stop()
        await mion.stop()
        await mixpay.stop()


def link_of(reply: MessageRecord, text: str) -> str:
    """The URL of the button labelled `text` (what a customer sees)."""
    markup = reply.reply_markup or {}
    for row in markup.get("inline_keyboard", []):
        for button in row:
            if text in button.get("text", "") and button.get("url"):
                return str(button["url"])
    raise AssertionError(f"no {text!r} button in {markup}")


# -- 3. callbacks cannot starve a gateway's request budget ------------------------------------
async def test_forged_mixpay_callbacks_do_not_stall_invoices_or_polls(bot: Bot) -> None:
    """60 forged callbacks naming a code seen in a checkout link: /invoice still answers at
    once, and the callbacks cost a handful of MixPay requests, not 60."""
    await bot.start()
    reply = await bot.command("/invoice mixpay 10 Lamp")
    code = link_of(reply, "Pay").rstrip("/").rsplit("/", 1)[1]
    reads_before = len([r for r in bot.mixpay.requests if "payments_result" in r.path])
    forged = {"traceId": code, "orderId": "tb-1-00000000", "payeeId": DEFAULT_PAYEE_ID}
    url = f"{bot.base}/webhooks/mixpay"
    async with httpx.AsyncClient(timeout=120) as client:
        flood = [asyncio.ensure_future(client.post(url, json=forged)) for _ in range(60)]
        await asyncio.sleep(0.5)  # the callbacks are in: now the merchant needs an invoice
        started = time.monotonic()
        second = await bot.command("/invoice mixpay 11 Chair", timeout=60)
        took = time.monotonic() - started
        answers = await asyncio.gather(*flood)
    assert "Invoice #2" in second.content, second.content
    assert took < 5.0, f"/invoice took {took:.1f} s behind 60 forged callbacks"
    assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
    reads = len([r for r in bot.mixpay.requests if "payments_result" in r.path]) - reads_before
    assert reads <= 3, f"{reads} MixPay status requests for 60 callbacks"
    assert bot.mixpay.rate_limited_count == 0
    record("hostile input", tests=1, inputs=60,
           note=f"60 forged MixPay callbacks: {reads} status reads, /invoice in {took:.1f} s")


async def test_replayed_mion_callbacks_are_merged(bot: Bot) -> None:
    """300 replays of one genuine Mion callback: a few status reads, and the payment that
    follows is still seen at once."""
    await bot.start()
    reply = await bot.command("/invoice 7 Bread")
    [session] = list(bot.mion.sessions.values())
    body = bot.mion.status_object(session)
    url = f"{bot.base}/webhooks/mion"

    def reads() -> int:
        return len([r for r in bot.mion.requests if r.method == "GET" and session.id in r.path])

    before = reads()
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(10):
            batch = [client.post(url, json=body) for _ in range(30)]
            answers = await asyncio.gather(*batch)
            assert all(a.status_code == 200 for a in answers)
        flood_reads = reads() - before
        assert flood_reads <= 3, f"{flood_reads} Mion status reads for 300 replays"
        # The merged replays brought one poll forward (the next was 30 s away): the status
        # is read exactly once more, at the end of the merge window.
        await asyncio.sleep(6)
        assert reads() - before == flood_reads + 1
        # A real payment right after the flood still edits the invoice promptly.
        bot.mion.pay(session.id)
        await bot.emu.wait_for(lambda: "PAID" in reply.content, timeout=10)
    record("hostile input", tests=1, inputs=300,
           note=f"300 replayed Mion callbacks: {flood_reads} status reads (then "
           f"{reads() - before - flood_reads} more: the merged poll and the payment's callback)")


# -- 5. deeply nested JSON is a malformed body ------------------------------------------------
async def test_deeply_nested_json_is_400_not_a_traceback(bot: Bot) -> None:
    await bot.start()
    nested = [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000]
    tried = 0
    async with httpx.AsyncClient(base_url=bot.base, timeout=20) as client:
        for body in nested:
            for path, headers in (
                ("/webhooks/mion", {}),
                ("/webhooks/mixpay", {}),
                ("/telegram", {SECRET_HEADER: WEBHOOK_SECRET}),
            ):
                answer = await client.post(
                    path, content=body, headers={"content-type": "application/json", **headers}
                )
                tried += 1
                assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
        assert (await client.get("/healthz")).status_code == 200
    output = bot.proc.output()
    assert "RecursionError" not in output and "Traceback" not in output, output[-2000:]
    record("hostile input", tests=1, inputs=tried, note=f"{tried} deeply nested JSON bodies: all 400")


# -- 10. /metrics behind a bearer token --------------------------------------------------------
async def test_metrics_token(bot: Bot) -> None:
    await bot.start(METRICS_TOKEN=METRICS_TOKEN, LOG_LEVEL="DEBUG")
    tried = 0
    async with httpx.AsyncClient(base_url=bot.base, timeout=10) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": f"Basic {METRICS_TOKEN}"},
            {"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"},
            {"Authorization": "Bearer"},
        ):
            refused = await client.get("/metrics", headers=headers)
            tried += 1
            assert refused.status_code == 401, (headers, refused.status_code)
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "tillbot_" not in refused.text
        allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert allowed.status_code == 200 and "tillbot_invoices" in allowed.text
        assert (await client.get("/healthz")).status_code == 200  # health stays open
    await bot.proc.stop()
    middle = METRICS_TOKEN[8:20]
    assert middle not in bot.proc.output()
    record("hostile input", tests=1, inputs=tried + 1, note=f"/metrics: {tried} wrong tokens, all 401")


def test_metrics_token_is_a_redacted_secret() -> None:
    from bot.config import Settings
    from bot.logsafe import install_redaction, redact

    settings = Settings(telegram_bot_token=TOKEN, metrics_token=METRICS_TOKEN, _env_file=None)
    assert METRICS_TOKEN in settings.secrets()
    install_redaction(settings.secrets())
    assert METRICS_TOKEN not in redact(f"GET /metrics Authorization: Bearer {METRICS_TOKEN}")


# -- 4. slow and half-open clients ------------------------------------------------------------
def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed (or reset) this connection."""
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True
    return data == b"" or b"HTTP/1.1 408" in data or b"HTTP/1.1 400" in data


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts /proc/<pid>/fd")
async def test_half_open_and_slow_clients_do_not_exhaust_the_server(bot: Bot) -> None:
    """300 connections that never finish their headers (the cap is 64), and slow bodies:
    /healthz answers at once, the process holds a bounded number of descriptors, every
    half-open connection is closed after the header timeout, and the log stays small."""
    await bot.start(
        HTTP_MAX_CONNECTIONS="64", HTTP_HEADER_TIMEOUT_SECONDS="2", HTTP_BODY_TIMEOUT_SECONDS="2"
    )
    pid = bot.proc.pid
    async with httpx.AsyncClient(base_url=bot.base, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
    fds_before = open_fds(pid)
    log_before = len(bot.proc.output())
    half_open: list[socket.socket] = []
    slow_bodies: list[socket.socket] = []
    try:
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", bot.port), timeout=5)
            sock.sendall(b"POST /telegram HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + str(i).encode())
            sock.setblocking(False)
            half_open.append(sock)
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", bot.port), timeout=5)
            sock.sendall(
                b"POST /webhooks/mion HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\": 1"
            )
            sock.setblocking(False)
            slow_bodies.append(sock)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=bot.base, timeout=10) as client:
            health = await client.get("/healthz")
        health_seconds = time.monotonic() - started
        assert health.status_code == 200, health.text
        assert health_seconds < 1.5, f"/healthz took {health_seconds:.2f} s"
        fds_during = open_fds(pid)
        assert fds_during <= fds_before + 64 + 8, (fds_before, fds_during)
        # Every half-open connection is closed by the server after the header timeout,
        # and every slow body gets 408.
        deadline = time.monotonic() + 8
        pending = half_open + slow_bodies
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if not closed_by_server(s)]
            await asyncio.sleep(0.2)
        assert not pending, f"{len(pending)} of 305 slow connections still open"
        assert open_fds(pid) <= fds_before + 8  # (keep-alive connections come and go)
    finally:
        for sock in half_open + slow_bodies:
            sock.close()
    async with httpx.AsyncClient(base_url=bot.base, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'tillbot_http_connections_dropped_total{reason="evicted"}' in metrics
    grown = len(bot.proc.output()) - log_before
    assert grown < 2000, bot.proc.output()[log_before:][:2000]
    record(
        "hostile input", tests=1, inputs=305,
        note=f"300 half-open + 5 slow-body connections (cap 64): /healthz in "
        f"{health_seconds:.2f} s, {fds_during - fds_before} more descriptors, all closed, "
        f"log +{grown} bytes",
    )


# -- 8. a database that vanishes or stops taking writes ---------------------------------------
NEW_DATABASE_LINE = "started on a NEW, EMPTY database"


async def test_database_removed_while_running_is_noticed(bot: Bot) -> None:
    """The SQLite file deleted under the running bot: /healthz says so (503) and each admin
    is told once; the restart that creates a new database says so in one line."""
    await bot.start()
    assert bot.proc.output().count(NEW_DATABASE_LINE) == 1  # the first start made it
    reply = await bot.command("/invoice 5 Tea")
    assert "Invoice #1" in reply.content
    async with httpx.AsyncClient(base_url=bot.base, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            Path(f"{bot.db}{suffix}").unlink(missing_ok=True)
        health = await client.get("/healthz")
        assert health.status_code == 503, health.text
        assert health.json()["database"] == "file removed while running"
        notices = await bot.emu.wait_for(
            lambda: [m for m in bot.emu.bot_messages(bot.admin) if "database" in m.content],
            timeout=15,
        )
        await asyncio.sleep(6)  # the watch job ticks again: still one notice
        assert (await client.get("/healthz")).status_code == 503
    notices = [m for m in bot.emu.bot_messages(bot.admin) if "database" in m.content]
    assert len(notices) == 1, [m.content for m in notices]
    assert "removed" in notices[0].content
    await bot.proc.stop()
    await bot.start()
    output = bot.proc.output()
    assert output.count(NEW_DATABASE_LINE) == 2
    line = next(x for x in output.splitlines()[::-1] if NEW_DATABASE_LINE in x)
    assert str(bot.db) in line and "WARNING" in line
    record("hostile input", tests=1, inputs=1, faults=1,
           note="database file deleted while running: /healthz 503, one admin notice")


async def test_healthz_fails_when_storage_takes_no_writes(bot: Bot) -> None:
    """Another process holds SQLite's write lock: reads still work, writes do not, and
    /healthz says so."""
    await bot.start()
    async with httpx.AsyncClient(base_url=bot.base, timeout=20) as client:
        assert (await client.get("/healthz")).status_code == 200
        locker = sqlite3.connect(bot.db, timeout=1, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            health = await client.get("/healthz")
            took = time.monotonic() - started
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert health.status_code == 503 and health.json()["storage"] is False, health.text
        assert took < 6.0
        await asyncio.sleep(3)  # the write that timed out gives up; the lock is free again
        assert (await client.get("/healthz")).status_code == 200
    record("hostile input", tests=1, inputs=1, faults=1,
           note=f"write lock held elsewhere: /healthz 503 in {took:.1f} s")


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts /proc/<pid>/fd")
async def test_half_open_clients_never_run_the_process_out_of_descriptors(bot: Bot) -> None:
    """The finding itself: a process allowed 256 descriptors, 300 half-open connections.
    Before, accept() failed with "too many open files" (one log line each) and so did new
    gateway connections; now the cap (half the limit) holds and /invoice still works."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the bot process
    bot.emu.webhook_url = None
    try:
        bot.proc.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await bot.emu.wait_for(lambda: bot.emu.webhook_url is not None, timeout=40)
    log_before = len(bot.proc.output())
    half_open: list[socket.socket] = []
    try:
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", bot.port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            half_open.append(sock)
        await asyncio.sleep(0.5)
        assert open_fds(bot.proc.pid) < 256 - 20
        reply = await bot.command("/invoice 9 Soup", timeout=20)  # Telegram in, Mion out
        assert "Invoice #1" in reply.content, reply.content
        async with httpx.AsyncClient(base_url=bot.base, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        for sock in half_open:
            sock.close()
    grown = bot.proc.output()[log_before:]
    assert "Too many open files" not in grown and "accept" not in grown, grown[:2000]
    record("hostile input", tests=1, inputs=300,
           note="300 half-open connections, 256 descriptors allowed: /invoice still works")


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class _Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.made = self.lost = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost += 1


def test_connection_guard_evicts_half_open_first_and_spares_busy_ones() -> None:
    from bot.web import ConnectionGuard

    dropped: list[str] = []
    guard = ConnectionGuard(_Inner, 3, on_drop=dropped.append)
    conns = [guard() for _ in range(3)]
    transports = [_Transport() for _ in range(3)]
    for conn, transport in zip(conns, transports, strict=True):
        conn.connection_made(transport)
    guard.mark(transports[0], busy=True)  # a request in progress
    guard.mark(transports[1], busy=True)
    guard.mark(transports[1], busy=False)  # answered: an idle keep-alive connection
    fourth, t4 = guard(), _Transport()
    fourth.connection_made(t4)  # the half-open one (never answered) goes first
    assert transports[2].aborted and not transports[1].aborted and not transports[0].aborted
    guard.mark(t4, busy=True)
    fifth, t5 = guard(), _Transport()
    fifth.connection_made(t5)  # then idle ones that were served
    assert transports[1].aborted and not transports[0].aborted and not t4.aborted
    guard.mark(t5, busy=True)
    sixth, t6 = guard(), _Transport()
    sixth.connection_made(t6)  # everyone busy: the newcomer is refused
    assert t6.aborted and not sixth.admitted
    assert dropped == ["evicted", "evicted", "refused"]
    sixth.connection_lost(None)  # a refused connection never reaches aiohttp's protocol
    assert isinstance(sixth.inner, _Inner) and sixth.inner.made == sixth.inner.lost == 0
    conns[2].connection_lost(None)  # the evicted one's loss is passed on once
    assert isinstance(conns[2].inner, _Inner) and conns[2].inner.lost == 1
    assert len(guard.open) == 3
