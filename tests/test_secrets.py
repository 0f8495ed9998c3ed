"""Secrets: every flow, with failing HTTP calls and crashes, and marker values as the bot
token and the keys - none of them is found anywhere the bot writes or shows.

Searched: stdout and stderr (the process's file descriptors), every log record (message and
traceback text), the log file of a real `python -m bot` process (DEBUG level), everything
the bot sent to Telegram (texts, captions, buttons, alerts: what users see, including the
texts of exceptions shown to them), the HTTP answers of /healthz, /metrics and the webhooks,
and the bytes of the SQLite database files. Each marker is searched whole and by a distinctive
middle part, so a truncated or partly masked secret is found too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.web import SECRET_HEADER
from testkit.botproc import BotProcess
from testkit.mion import MionSimulator
from testkit.miraclepay import MiraclePaySimulator
from testkit.telegram import BotApiEmulator
from testkit.tls import TlsFront
from tests.conftest import ADMIN_ID, CUSTOMER_ID, MERCHANT_ID, TOKEN, Harness
from tests.reliability_stats import record

pytest_plugins = ["tests.reliability_stats"]

MION_KEY = "mion-MARKERkey-SECRET-8f41c2d7"
MIRACLE_CLIENT = "mp-client-7a1"
MIRACLE_KEY = "mp-MARKERkey-SECRET-19be6a0c"
MIRACLE_BASIC = base64.b64encode(f"{MIRACLE_CLIENT}:{MIRACLE_KEY}".encode()).decode()
WEBHOOK_SECRET = "hook-MARKERsecret-SECRET-5d2e91"
DB_PASSWORD = "pg-MARKERpass-SECRET-77c3"
WRONG_TOKEN = "123456:MARKERwrongTOKEN-SECRET-abcdefghijklmnop"
MARKERS = (TOKEN, MION_KEY, MIRACLE_KEY, MIRACLE_BASIC, WEBHOOK_SECRET, DB_PASSWORD, WRONG_TOKEN)


def fragments(marker: str) -> list[str]:
    """The marker, its secret part (after a bot token's colon) and a middle slice of it."""
    secret = marker.split(":", 1)[1] if ":" in marker and marker.split(":")[0].isdigit() else marker
    middle = secret[len(secret) // 4 : len(secret) // 4 + 12]
    return [marker, secret, middle]


def leaks(where: str, text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    found = []
    for marker in MARKERS:
        for piece in fragments(marker):
            if piece.encode() in data:
                found.append(f"{where}: {piece!r} (of {marker[:8]}...)")
                break
    return found


def db_bytes(directory: Path) -> Iterable[tuple[str, bytes]]:
    for path in sorted(directory.glob("*.db*")):
        yield path.name, path.read_bytes()


def telegram_traffic(emu: BotApiEmulator) -> str:
    """Everything the bot sent to Telegram (the token travels in the URL path, not here)."""
    return "\n".join(json.dumps(r.to_dict(), ensure_ascii=False, default=str) for r in emu.requests)


# -- in process ------------------------------------------------------------------------------
@dataclass
class Sims:
    mion: MionSimulator
    miracle: MiraclePaySimulator


@pytest.fixture
async def sims() -> AsyncIterator[Sims]:
    mion = MionSimulator(api_key=MION_KEY)
    miracle = MiraclePaySimulator(client_id=MIRACLE_CLIENT, api_key=MIRACLE_KEY)
    await mion.start()
    await miracle.start()
    try:
        yield Sims(mion, miracle)
    finally:
        await mion.stop()
        await miracle.stop()


async def every_flow(h: Harness, sims: Sims) -> int:
    """Create, show, pay, cancel, list, report, on three gateways, with failures; returns
    how many faults were injected."""
    emu, mion, miracle = h.emu, sims.mion, sims.miracle
    faults = 0
    # sandbox: invoice, customer view, simulated payment, cancel, /pos, lists, reports
    reply, sandbox_invoice = await h.invoice(h.merchant, "/invoice 12.50 Coffee")
    token = sandbox_invoice.public_token
    shown = await h.command(h.customer, f"/start {token}")
    await emu.press_button(h.customer, shown, "🧪 Simulate payment")
    await emu.wait_for(lambda: "PAID" in reply.content, timeout=10)
    # The payment pings the merchant with a new message: let it arrive before the next
    # command, whose reply is the next new message in that chat.
    await emu.wait_for_message(h.merchant, lambda m: "received in the sandbox" in m.content)
    cancel_reply, _ = await h.invoice(h.merchant, "/invoice 3 Tea")
    query = await emu.press_button(h.merchant, cancel_reply, "🚫 Cancel invoice")
    await emu.wait_for_callback_answer(query.id)
    await emu.wait_for(lambda: cancel_reply.find_button("Yes, cancel") is not None)
    query = await emu.press_button(h.merchant, cancel_reply, "Yes, cancel")
    await emu.wait_for_callback_answer(query.id)
    await h.command(h.merchant, "/pos 2 Cake")
    await h.command(h.merchant, "/invoices")
    await h.command(h.merchant, "/report all")
    # The report is several messages, its summary last: the next command's answer follows.
    await emu.wait_for_message(h.merchant, lambda m: m.content.startswith("📊"))
    await h.command(h.admin, "/merchants")
    await h.command(h.stranger, "/invoice 5 nope")
    inline = await emu.inline_query(h.merchant, "4.20 Inline")
    await emu.wait_for_inline_answer(inline)

    # Mion: created through a 500 and a lost answer, paid, found through 401s and an echo
    mion.fail_next(1, 500)
    mion.lose_next_create(1)
    mion_reply, mion_invoice = await h.invoice(h.merchant, "/invoice mion 7 Bread")
    faults += 2
    assert mion_invoice.gateway_session_id is not None
    echo = {"message": f"Invalid API key {MION_KEY}", "key": MION_KEY}
    mion.fail_next(2, 401, body=echo, path_contains="/status")
    mion.fail_next(1, 400, body=echo, path_contains="/status")
    faults += 3
    mion.pay(mion_invoice.gateway_session_id)
    await emu.wait_for(lambda: "PAID" in mion_reply.content, timeout=20)
    await emu.wait_for_message(h.merchant, lambda m: "received: Bread" in m.content)  # the ping
    # a create refused with the key echoed back: the merchant sees the gateway's reason
    mion.fail_next(1, 400, body=echo)
    faults += 1
    refused = await h.command(h.merchant, "/invoice mion 8 Echo", timeout=15)
    assert "Mion" in refused.content
    mion.fail_next(1, 401, body=echo)
    faults += 1
    await h.command(h.merchant, "/invoice mion 9 Unauthorised", timeout=15)

    # MiraclePay: created, refused with its key echoed, status failures
    miracle_reply, miracle_invoice = await h.invoice(h.merchant, "/invoice miraclepay 5 USD Tea")
    assert miracle_invoice.gateway_session_id is not None
    miracle.fail_next(2, 500, body={"message": f"bad {MIRACLE_BASIC}"}, path_contains="prompt/")
    miracle.fail_next(1, 401, body={"message": f"Invalid API key {MIRACLE_KEY}"})
    faults += 3
    miracle.pay(miracle_invoice.gateway_session_id)
    await emu.wait_for(lambda: "PAID" in miracle_reply.content, timeout=20)
    await emu.wait_for_message(h.merchant, lambda m: "received: Tea" in m.content)  # the ping
    miracle.fail_next(1, 401, body={"message": f"Invalid API key {MIRACLE_KEY}"})
    faults += 1
    await h.command(h.merchant, "/invoice miraclepay 6 USD Refused", timeout=15)

    # Telegram failing: 500 and 401 (what a revoked token looks like) on the bot's calls
    emu.fail_next(1, 500, method="sendMessage")
    await h.command(h.merchant, "/invoice 1 Telegram500", timeout=10)
    emu.fail_next(1, 401, method="sendMessage", description="Unauthorized")
    await emu.send_message(h.merchant, "/help")
    await asyncio.sleep(0.5)
    faults += 2
    return faults


async def test_no_secret_in_any_output_in_process(
    harness: Harness,
    sims: Sims,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    h = harness
    await h.start(
        http_port=0,
        telegram_webhook_secret=WEBHOOK_SECRET,
        sandbox_enabled=True,  # beside real gateways, only when set explicitly
        mion_api_url=sims.mion.url,
        mion_api_key=MION_KEY,
        miraclepay_api_url=sims.miracle.url,
        miraclepay_client_id=MIRACLE_CLIENT,
        miraclepay_api_key=MIRACLE_KEY,
        gateway_max_retries=1,
        gateway_timeout_seconds=2.0,
        log_level="DEBUG",
    )
    faults = await every_flow(h, sims)
    web = h.services.web
    assert web is not None and web.bound_port is not None
    answers: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.bound_port}") as http:
        for path in ("/healthz", "/metrics"):
            answers.append((await http.get(path)).text)
        for secret in ("", "wrong", WEBHOOK_SECRET):
            response = await http.post(
                "/telegram", content=b"{bad json", headers={SECRET_HEADER: secret}
            )
            answers.append(response.text)
        body = json.dumps({"paymentSessionId": "nope", "apiKey": MION_KEY}).encode()
        answers.append((await http.post("/webhooks/mion", content=body)).text)
    await h.stop()

    out, err = capfd.readouterr()
    found: list[str] = []
    found += leaks("stdout", out)
    found += leaks("stderr", err)
    found += leaks("log records", caplog.text)
    for rec in caplog.records:
        found += leaks(f"log record {rec.name}", f"{rec.getMessage()} {rec.exc_text or ''}")
    found += leaks("sent to Telegram", telegram_traffic(h.emu))
    for user in (h.merchant, h.customer, h.admin, h.stranger):
        for m in h.emu.bot_messages(user):
            found += leaks(f"chat {user.id}", f"{m.content} {m.buttons}")
    found += leaks("HTTP answers", "\n".join(answers))
    for name, data in db_bytes(h.tmp_path):
        found += leaks(f"database file {name}", data)
    # Failed calls really happened, and their errors were shown and logged (redacted)
    assert any("rejected" in m.content or "⚠️" in m.content
               for m in h.emu.bot_messages(h.merchant))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING]
    record("secrets", tests=1, inputs=h.emu.stats.updates + len(answers), faults=faults,
           leaks=len(found))
    assert not found, "\n".join(found)


# -- a real process: crashes, bad settings, DEBUG logs ----------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_no_secret_in_a_real_process_output_through_crashes(
    emulator: BotApiEmulator, tmp_path: Path
) -> None:
    emu = emulator
    merchant = emu.add_user(MERCHANT_ID, "Maria", language_code="en")
    customer = emu.add_user(CUSTOMER_ID, "Chris", language_code="en")
    admin = emu.add_user(ADMIN_ID, "Ada", language_code="en")
    mion = MionSimulator(api_key=MION_KEY)
    await mion.start()
    port = free_port()
    db = tmp_path / "secrets.db"
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": emu.url,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DATABASE_URL": f"sqlite:///{db}",
        "ADMIN_IDS": str(ADMIN_ID),
        "MERCHANT_IDS": str(MERCHANT_ID),
        "MION_API_URL": mion.url,
        "MION_API_KEY": MION_KEY,
        "MIRACLEPAY_CLIENT_ID": MIRACLE_CLIENT,
        "MIRACLEPAY_API_KEY": MIRACLE_KEY,
        "MIRACLEPAY_API_URL": "http://127.0.0.1:9",  # nothing listens: connection refused
        "DEFAULT_GATEWAY": "mion",
        "HTTP_PORT": str(port),
        "POLL_INTERVAL_SECONDS": "0.3",
        "GATEWAY_MAX_RETRIES": "1",
        "LOG_LEVEL": "DEBUG",
    }
    log = tmp_path / "bot.log"
    bot = BotProcess(env, log)
    crashes = faults = 0
    try:
        # a run with a payment, gateway failures (key echoed back), and a crash at a failpoint
        bot.start(TILLBOT_CRASH_AT="after_transition")
        await emu.wait_for(lambda: emu.polls_started > 0, timeout=30)
        await emu.send_message(merchant, "/invoice 12.50 Coffee")
        reply = await emu.wait_for_message(merchant, lambda m: "Invoice #" in m.content, timeout=20)
        link = next(w for w in reply.content.split() if "?start=" in w).split("?start=")[1]
        await emu.send_message(customer, f"/start {link}")
        await emu.wait_for_message(customer, lambda m: "Invoice #" in m.content, timeout=10)
        echo = {"message": f"Invalid API key {MION_KEY}"}
        mion.fail_next(2, 401, body=echo, path_contains="/status")
        mion.fail_next(1, 500, body=echo, path_contains="/status")
        await emu.send_message(merchant, "/invoice miraclepay 5 USD Tea")
        await emu.wait_for_message(merchant, lambda m: "MiraclePay" in m.content, timeout=20)
        emu.fail_next(1, 500, method="sendMessage")
        faults += 5
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await http.post("/telegram", content=b"{}", headers={SECRET_HEADER: "wrong"})
            await http.post("/telegram", content=b"[]", headers={SECRET_HEADER: WEBHOOK_SECRET})
            await http.get("/metrics")
        [session] = [s for s in mion.sessions.values()]
        mion.pay(session.id)
        assert await bot.wait_exit(timeout=30) == 137  # died right after storing the payment
        crashes += 1
        # restarted: delivers the notices; then SIGKILLed at once
        bot.start()
        await emu.wait_for_message(admin, lambda m: "paid" in m.content, timeout=30)
        bot.kill()
        crashes += 1
        # restarted again and stopped cleanly
        bot.start()
        await emu.wait_for(lambda: "PAID" in reply.content, timeout=20)
        await bot.stop()
        # a token Telegram rejects, a bad setting, an unreachable PostgreSQL with a password
        for extra in (
            {"TELEGRAM_BOT_TOKEN": WRONG_TOKEN},
            {"TELEGRAM_BOT_TOKEN": f"{WRONG_TOKEN} x"},  # invalid: whitespace
            {"DATABASE_URL": f"postgresql://tillbot:{DB_PASSWORD}@127.0.0.1:9/tillbot"},
            {"MION_API_URL": f"ftp://{MION_KEY}@example"},  # invalid: not http(s)
        ):
            bot.start(**extra)
            code = await bot.wait_exit(timeout=30)
            assert code in (1, 2), (extra, code, bot.output()[-2000:])
            faults += 1
        # the wrong token was meant: the emulator answered it 401 like Telegram
        expected = [v for v in emu.violations if "wrong bot token" in v]
        assert expected
        emu.violations[:] = [v for v in emu.violations if v not in expected]
    finally:
        bot.kill()
        await mion.stop()
    output = bot.output()
    assert "tillbot: TELEGRAM_BOT_TOKEN" in output and "tillbot: DATABASE_URL" in output
    assert "MION_API_URL" in output
    found = leaks("process output (stdout+stderr, DEBUG)", output)
    found += leaks("sent to Telegram", telegram_traffic(emu))
    for name, data in db_bytes(tmp_path):
        found += leaks(f"database file {name}", data)
    record("secrets", tests=1, inputs=emu.stats.updates + 3 + bot.starts, faults=faults,
           crashes=crashes, leaks=len(found))
    assert not found, "\n".join(found)


def test_building_the_application_logs_no_token(tmp_path: Path) -> None:
    """`build_application` used as a library (no `python -m bot`, so nobody installed the
    redaction before): python-telegram-bot logs its API URL - token included - at DEBUG
    while the Application is built. A fresh interpreter, root logging at DEBUG to stderr."""
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
        "from bot.app import build_application\n"
        "from bot.config import Settings\n"
        f"build_application(Settings(telegram_bot_token={TOKEN!r}, _env_file=None,\n"
        f"    database_url='sqlite:///{tmp_path / 'x.db'}', mion_api_url='http://127.0.0.1:9',\n"
        f"    mion_api_key={MION_KEY!r}))\n"
        "logging.getLogger('x').debug('built')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parent.parent, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Set Bot API URL" in done.stderr  # the line that used to carry the token
    found = leaks("stderr", done.stderr) + leaks("stdout", done.stdout)
    record("secrets", tests=1, inputs=1, leaks=len(found))
    assert not found, "\n".join(found)


# -- a real process in webhook mode at DEBUG: the webhook secret set, or derived ---------------
def derived_webhook_secret(token: str) -> str:
    """What the bot derives when TELEGRAM_WEBHOOK_SECRET is unset (README: every instance
    derives the same one), computed here from the documented rule, not by the bot's code."""
    return hashlib.sha256(b"tillbot-webhook:" + token.encode()).hexdigest()[:64]


def bearer_tokens(emu: BotApiEmulator) -> set[str]:
    """The public tokens of every invoice link the bot sent (`?start=<token>`)."""
    sent = telegram_traffic(emu)
    return set(re.findall(r"\?start=([A-Za-z0-9_-]{16,64})", sent))


@pytest.mark.parametrize("secret_set", [True, False], ids=["secret-set", "secret-derived"])
async def test_no_secret_or_bearer_link_in_a_real_process_in_webhook_mode(
    emulator: BotApiEmulator, tmp_path: Path, secret_set: bool
) -> None:
    """Webhook mode at DEBUG logs `setWebhook`'s parameters and every update: neither the
    webhook secret (given or derived from the token) nor an invoice's public token (a
    bearer link: whoever has it sees the invoice and, in the sandbox, pays it) is in it."""
    emu = emulator
    merchant = emu.add_user(MERCHANT_ID, "Maria", language_code="en")
    customer = emu.add_user(CUSTOMER_ID, "Chris", language_code="en")
    emu.add_user(ADMIN_ID, "Ada", language_code="en")
    port = free_port()
    front = TlsFront(port)  # webhook mode needs an HTTPS PUBLIC_URL: TLS ends here
    await front.start()
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": emu.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'webhook.db'}",
        "ADMIN_IDS": str(ADMIN_ID),
        "MERCHANT_IDS": str(MERCHANT_ID),
        "HTTP_PORT": str(port),
        "PUBLIC_URL": front.url,
        "LOG_LEVEL": "DEBUG",
    }
    if secret_set:
        env["TELEGRAM_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    secret = WEBHOOK_SECRET if secret_set else derived_webhook_secret(TOKEN)
    bot = BotProcess(env, tmp_path / "bot.log")
    try:
        bot.start()
        await emu.wait_for(lambda: emu.webhook_url, timeout=30)
        assert emu.webhook_secret == secret  # the marker searched for is the one in use
        await emu.send_message(merchant, "/invoice 12.50 Coffee")
        reply = await emu.wait_for_message(merchant, lambda m: "Invoice #" in m.content, timeout=20)
        [token] = [tok for tok in bearer_tokens(emu) if not tok.startswith("sbx-")]
        await emu.send_message(customer, f"/start {token}")
        shown = await emu.wait_for_message(
            customer, lambda m: "Invoice #" in m.content, timeout=10
        )
        query = await emu.press_button(customer, shown, "🧪 Simulate payment")
        await emu.wait_for_callback_answer(query.id, timeout=10)
        await emu.wait_for(lambda: "PAID" in reply.content, timeout=20)
        await emu.send_message(merchant, "/invoice 3 Tea")
        await emu.wait_for(lambda: len(bearer_tokens(emu)) == 4, timeout=20)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.post("/telegram", content=b"{}")).status_code == 403
    finally:
        await bot.stop()
        bot.kill()
        await front.stop()
    output = bot.output()
    assert "setWebhook" in output and "Processing update" in output  # DEBUG really logged
    assert "?start=[REDACTED]" in output and "sim:[REDACTED]" in output  # links were logged
    tokens = bearer_tokens(emu)
    found = leaks("process output (webhook mode, DEBUG)", output)
    found += [f"process output: the webhook secret {piece!r}"
              for piece in fragments(secret) if piece in output]
    found += [f"process output: a public token {tok[:4]}..." for tok in tokens if tok in output]
    record("secrets", tests=1, inputs=emu.stats.updates + 1 + bot.starts, leaks=len(found))
    assert not found, "\n".join(found)
