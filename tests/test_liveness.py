"""bot/liveness.py on a real SQLite database: registering, taking over predecessors known
to be dead at start, coming back under a new id after being taken for dead, and the fence
that stops claims and sends while the heartbeat is late."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.domain.models import Instance, InvoiceKind, NewInvoice
from bot.liveness import Liveness, process_gone, process_identity
from storage import open_repository
from storage.base import Repository

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


async def claimed_invoice(repo: Repository, owner: str) -> int:
    invoice = await repo.create_invoice(
        NewInvoice(
            public_token=f"tok-{owner}",
            merchant_id=1,
            amount_minor=100,
            currency="EUR",
            description="x",
            gateway="sandbox",
            kind=InvoiceKind.CHECKOUT,
            created_at=T0,
            next_poll_at=T0,
        )
    )
    [claimed] = await repo.claim_due_invoices(
        now=T0, owner=owner, lease=timedelta(minutes=1), limit=1
    )
    assert claimed.id == invoice.id
    return invoice.id


def test_a_process_that_exited_is_gone_and_a_running_one_is_not() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    identity = process_identity(child.pid)
    assert identity is not None and process_gone(identity) is False
    assert child.stdin is not None
    child.stdin.close()
    child.wait(10)
    assert process_gone(identity) is True
    assert process_gone(process_identity()) is False  # this very process
    boot, namespace, pid, start = identity.split("|")
    # Another start time on the same pid: another process (the pid was reused).
    assert process_gone("|".join((boot, namespace, str(os.getpid()), "1"))) is True
    # Another machine, or nothing to go by: never taken for gone.
    assert process_gone("|".join(("other-boot", namespace, pid, start))) is False
    assert process_gone(None) is False and process_gone("garbage") is False


async def test_start_takes_over_a_predecessor_under_the_same_name_at_once(
    tmp_path: Path,
) -> None:
    repo = await open_repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        now = datetime.now(UTC)
        await repo.register_instance(
            Instance(id="bot-1:1:old", name="bot-1", started_at=now, last_seen=now)
        )
        await repo.register_instance(
            Instance(id="bot-2:1:other", name="bot-2", started_at=now, last_seen=now)
        )
        mine = await claimed_invoice(repo, "bot-1:1:old")
        theirs = await claimed_invoice(repo, "bot-2:1:other")
        liveness = Liveness(repo, name="bot-1", named=True)
        try:
            assert await liveness.start() == 1  # its heartbeat is fresh, yet it is gone
            ids = {i.id for i in await repo.list_instances()}
            assert ids == {liveness.id, "bot-2:1:other"}
            freed = await repo.get_invoice(mine)
            kept = await repo.get_invoice(theirs)
            assert freed is not None and freed.lease_owner is None
            assert kept is not None and kept.lease_owner == "bot-2:1:other"
            assert liveness.trusted()
        finally:
            await liveness.stop()
        assert {i.id for i in await repo.list_instances()} == {"bot-2:1:other"}
    finally:
        await repo.close()


async def test_taken_for_dead_it_comes_back_under_a_new_id(tmp_path: Path) -> None:
    repo = await open_repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    renamed: list[str] = []
    liveness = Liveness(repo, name="solo", interval=timedelta(seconds=30), on_new_id=renamed.append)
    try:
        await liveness.start()
        old = liveness.id
        await claimed_invoice(repo, old)
        # Another instance found its heartbeat stale and took its work over.
        assert await repo.retire_instances([old]) == 1
        assert await repo.take_over(now=T0, stale_before=T0 - timedelta(seconds=6)) == 1
        await liveness.beat()
        assert liveness.id != old and renamed == [liveness.id]
        assert [i.id for i in await repo.list_instances()] == [liveness.id]
        assert liveness.trusted()
    finally:
        await liveness.stop()
        await repo.close()


async def test_not_trusted_once_heartbeats_are_late(tmp_path: Path) -> None:
    repo = await open_repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    liveness = Liveness(repo, name="late", interval=timedelta(seconds=0.05), stale_beats=3)
    try:
        assert not liveness.trusted()  # not registered yet
        await liveness.register()
        assert liveness.trusted()
        await asyncio.sleep(0.15)  # no heartbeat for stale_after less one beat and more
        assert not liveness.trusted()
        await liveness.beat()
        assert liveness.trusted()
    finally:
        await repo.close()
