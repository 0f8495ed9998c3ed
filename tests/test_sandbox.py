"""The sandbox gateway as a state machine in the bot's own database (issue 13).

It opens no port (a real bot process without HTTP_PORT listens on no TCP socket at all), and
several instances on one database share its sessions: created through one, paid and read
through another, on SQLite (two repositories on one file) and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.models import InvoiceKind, SandboxSession
from bot.gateways.base import (
    GatewayNotFound,
    GatewayRejected,
    PaymentState,
    SessionRequest,
)
from bot.gateways.sandbox import SandboxGateway, open_sandbox
from storage.base import Repository
from testkit.botproc import BotProcess
from testkit.telegram import BotApiEmulator
from tests.conftest import MERCHANT_ID, TOKEN, free_port
from tests.storage_fixtures import Backend, backend

__all__ = ["backend"]  # the fixture, imported for pytest


# -- no port ------------------------------------------------------------------------------------
def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on: LISTEN rows of /proc/<pid>/net/tcp{,6} whose
    socket inode is one of the process's open file descriptors."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
async def test_bot_without_http_port_listens_on_no_tcp_port(
    emulator: BotApiEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m bot` with the sandbox on and no HTTP_PORT: an invoice is created and paid
    through the sandbox, and the process never listens on any TCP port. With HTTP_PORT the
    same check finds exactly that port (the check can see a listening socket)."""
    emu = emulator
    merchant = emu.add_user(MERCHANT_ID, "Maria", language_code="en")
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": emu.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tillbot.db'}",
        "MERCHANT_IDS": str(MERCHANT_ID),
        "SANDBOX_ENABLED": "true",
        "POLL_INTERVAL_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
    }
    for unset in ("HTTP_PORT", "PORT", "PUBLIC_URL"):
        monkeypatch.delenv(unset, raising=False)  # BotProcess passes our environment on
    bot = BotProcess(env, tmp_path / "bot.log")
    bot.start()
    try:
        await emu.send_message(merchant, "/pos 5 Espresso")  # a session and a Lightning attempt
        photo = await emu.wait_for_message(merchant, lambda m: m.photo is not None, timeout=30)
        await emu.send_message(merchant, "/invoice 12.50 Coffee")
        card = await emu.wait_for_message(merchant, lambda m: "Coffee" in m.content, timeout=15)
        await emu.press_button(merchant, card, "🧪 Simulate payment")
        await emu.wait_for(lambda: "PAID" in card.content, timeout=15)
        assert "Lightning" in photo.content
        assert listening_tcp_ports(bot.pid) == set(), bot.output()
    finally:
        await bot.stop()

    port = free_port()
    served = BotProcess({**env, "HTTP_PORT": str(port)}, tmp_path / "bot-http.log")
    served.start()
    try:
        for _ in range(300):
            if listening_tcp_ports(served.pid):
                break
            await asyncio.sleep(0.05)
        assert listening_tcp_ports(served.pid) == {port}, served.output()
    finally:
        await served.stop()


# -- several instances on one database -----------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def request(reference: str, kind: InvoiceKind = InvoiceKind.CHECKOUT) -> SessionRequest:
    return SessionRequest(
        reference=reference, amount_minor=1250, currency="GBP", description="Tea",
        kind=kind, expires_in=timedelta(hours=1),
    )


async def instances(backend: Backend, clock: Callable[[], datetime], count: int = 2,
                    auto_pay_seconds: float | None = None) -> list[SandboxGateway]:
    """`count` sandbox gateways, each on its own repository of the one database."""
    repos: list[Repository] = [await backend.open() for _ in range(count)]
    return [open_sandbox(r, clock=clock, auto_pay_seconds=auto_pay_seconds) for r in repos]


async def test_a_session_created_by_one_instance_is_paid_and_read_by_another(
    backend: Backend,
) -> None:
    clock = Clock()
    one, two = await instances(backend, clock)
    try:
        online = await one.create_session(request("tb-1-a"))
        assert (await two.get_status(online.session_id, "tb-1-a")).state == PaymentState.PENDING
        await two.simulate_payment(online.session_id)
        paid = await one.get_status(online.session_id, "tb-1-a")
        assert paid.state == PaymentState.PAID and paid.paid_at is not None
        with pytest.raises(GatewayRejected):
            await one.simulate_payment(online.session_id)  # paid once, whoever asks

        # Point of sale: the attempt renewed through the other instance is the one paid.
        pos = await one.create_session(request("tb-2-b", InvoiceKind.LIGHTNING))
        renewed = await two.renew_attempt(pos.session_id)
        assert renewed.payment["ln_invoice"] != pos.payment["ln_invoice"]
        stored = await two.bank.repo.sandbox_get(pos.session_id)
        assert stored is not None and stored.attempts == 2 and stored.retail_pos
        await one.simulate_payment(pos.session_id)
        assert (await two.get_status(pos.session_id, "tb-2-b")).state == PaymentState.PAID

        # A create whose answer was lost is found by reference through the other instance.
        lost = await one.create_session(request("tb-3-c"))
        found = await two._lookup(request("tb-3-c"))
        assert found is not None and found["paymentSessionId"] == lost.session_id
        with pytest.raises(GatewayRejected):  # the reference is taken for every instance
            await two.create_session(request("tb-3-c"))
        with pytest.raises(GatewayNotFound):
            await two.get_status("no-such-session", "tb-9-z")
    finally:
        for gateway in (one, two):
            await gateway.aclose()


async def test_instances_paying_at_once_pay_exactly_once(backend: Backend) -> None:
    clock = Clock()
    gateways = await instances(backend, clock, count=4)
    try:
        sessions = [await gateways[0].create_session(request(f"tb-{n}-x")) for n in range(5)]
        for session in sessions:
            results = await asyncio.gather(
                *(g.simulate_payment(session.session_id) for g in gateways),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, GatewayRejected)]
            assert results.count(None) == 1 and len(refused) == len(gateways) - 1, results
            stored = await gateways[-1].bank.repo.sandbox_get(session.session_id)
            assert stored is not None and stored.status == "funded" and stored.version == 1
    finally:
        for gateway in gateways:
            await gateway.aclose()


async def test_expiry_and_auto_pay_are_the_same_for_every_instance(backend: Backend) -> None:
    clock = Clock()
    one, two = await instances(backend, clock, auto_pay_seconds=60)
    try:
        early = await one.create_session(request("tb-1-e"))
        clock.now += timedelta(seconds=59)
        assert (await two.get_status(early.session_id, "tb-1-e")).state == PaymentState.PENDING
        clock.now += timedelta(seconds=1)
        paid = await two.get_status(early.session_id, "tb-1-e")
        assert paid.state == PaymentState.PAID
        assert paid.paid_at == clock.now  # paid when it was due, by whoever looks first
        assert (await one.get_status(early.session_id, "tb-1-e")).paid_at == paid.paid_at
    finally:
        for gateway in (one, two):
            await gateway.aclose()
    three, four = await instances(backend, clock)
    try:
        late = await three.create_session(request("tb-2-e"))
        clock.now += timedelta(hours=1)
        status = await four.get_status(late.session_id, "tb-2-e")
        assert status.state == PaymentState.EXPIRED and status.raw_status == "expired"
        with pytest.raises(GatewayRejected) as info:
            await three.simulate_payment(late.session_id)
        assert "expired" in info.value.user_message
    finally:
        for gateway in (three, four):
            await gateway.aclose()


async def test_repository_sandbox_rows_are_compare_and_set(backend: Backend) -> None:
    one, two = await backend.open(), await backend.open()
    now = datetime.now(UTC).replace(microsecond=0)
    session = SandboxSession(
        session_id="s-1", reference="tb-1-r", amount_minor=5, currency="EUR", retail_pos=False,
        status="created", created_at=now, expires_at=now + timedelta(hours=1),
    )
    assert await one.sandbox_insert(session)
    assert not await two.sandbox_insert(session)  # the id is taken
    assert not await two.sandbox_insert(replace(session, session_id="s-2"))  # reference taken
    assert await two.sandbox_insert(replace(session, session_id="s-3", reference=None))
    assert await two.sandbox_insert(replace(session, session_id="s-4", reference=None))
    assert await two.sandbox_by_reference("tb-1-r") == session
    paid = replace(session, status="funded", paid_at=now, attempts=3,
                   attempt_expires_at=now + timedelta(minutes=2), payment_method="lightning")
    assert await two.sandbox_update(session, paid)
    assert not await one.sandbox_update(session, paid)  # stale version: nothing written
    assert await one.sandbox_get("s-1") == replace(paid, version=1)
    assert await one.sandbox_get("s-2") is None
