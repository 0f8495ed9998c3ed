"""Liveness: who owns claimed work, and taking over the work of an instance that died.

Each bot process registers in the `instances` table under a fresh id (its name, the pid and
a random part: a restart is a new instance, with or without INSTANCE_ID), heartbeats every
`interval`, and every half interval frees the claims of instances whose heartbeat is older
than `stale_after` (HEARTBEAT_SECONDS x HEARTBEAT_STALE_BEATS), or that are not registered
at all (`Repository.take_over`). The freed invoices and outbox rows are due at once; the
live instances' watcher and notifier claim them. A kill -9 is so taken over within
`stale_after` plus half an interval (plus the work itself): about 4 to 7 s by default.

Taken over at once, at start: earlier instances under the same INSTANCE_ID (the operator
says names are unique: a restart under a name means its predecessor is gone), and earlier
instances on this machine whose process is no longer running (Linux: boot id, pid namespace,
pid and the process's start time, so a reused pid is not mistaken for the old process).

Claims of a live instance are never taken: a claim's lease end only makes the row due again
for its owner. An instance that could not heartbeat for most of `stale_after` (a paused
process, storage unreachable) stops claiming and sending (`trusted`), and one that finds
itself taken for dead (its row gone) registers again under a new id and drops the work it
held, so that what others took over is not done twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from bot.domain.models import Instance, utcnow
from storage.base import Repository, StorageError

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = timedelta(seconds=2)
DEFAULT_STALE_BEATS = 3


def _start_ticks(pid: int) -> str:
    """The start time of a process (clock ticks since boot): /proc/<pid>/stat field 22."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[19]


def _machine() -> tuple[str, str] | None:
    """(boot id, pid namespace): processes with the same pair can see each other's pids."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return boot, namespace


def process_identity(pid: int | None = None) -> str | None:
    """This process as other processes on this machine can check it; None off Linux."""
    machine = _machine()
    pid = os.getpid() if pid is None else pid
    if machine is None:
        return None
    try:
        start = _start_ticks(pid)
    except (OSError, IndexError):
        return None
    return "|".join((*machine, str(pid), start))


def process_gone(identity: str | None) -> bool:
    """True only when `identity` is a process of this machine (and pid namespace) that is no
    longer running; False when it runs or cannot be checked from here."""
    if not identity:
        return False
    parts = identity.split("|")
    machine = _machine()
    if len(parts) != 4 or machine is None or tuple(parts[:2]) != machine:
        return False
    try:
        pid = int(parts[2])
    except ValueError:
        return False
    try:
        return _start_ticks(pid) != parts[3]  # another process got the pid
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False


def new_instance_id(name: str) -> str:
    return f"{name[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


class Liveness:
    """Registers this process, heartbeats, and takes over the work of dead instances."""

    def __init__(
        self,
        repo: Repository,
        *,
        clock: Callable[[], datetime] = utcnow,
        work_clock: Callable[[], datetime] | None = None,
        name: str | None = None,
        named: bool = False,
        interval: timedelta = DEFAULT_HEARTBEAT,
        stale_beats: int = DEFAULT_STALE_BEATS,
        on_takeover: Callable[[int], object] = lambda _freed: None,
        on_new_id: Callable[[str], object] = lambda _id: None,
    ) -> None:
        self.repo = repo
        self.clock = clock  # heartbeats: the wall clock, which instances share
        self.work_clock = work_clock or clock  # the app's clock: when freed work is due
        self.name = name or socket.gethostname()
        self.named = named  # the name is an INSTANCE_ID: unique among running instances
        self.interval = interval
        self.stale_after = interval * stale_beats
        self.on_takeover = on_takeover
        self.on_new_id = on_new_id
        self.id = new_instance_id(self.name)
        self.process = process_identity()
        self.started_at = clock()
        self.last_beat: datetime | None = None  # the last last_seen stored for this instance
        self._beat_at: float | None = None  # time.monotonic() when it was taken
        self.taken_over = 0  # claims freed by this instance, in all
        self._task: asyncio.Task[None] | None = None

    def trusted(self) -> bool:
        """True while no other instance can take this one for dead: the last heartbeat
        stored is younger than `stale_after` less one interval (room for a send under way
        and for clocks that differ a little). Claims and sends wait while it is False."""
        if self._beat_at is None:
            return False
        limit = (self.stale_after - self.interval).total_seconds()
        return time.monotonic() - self._beat_at < limit

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def register(self) -> None:
        taken, now = time.monotonic(), self.clock()
        await self.repo.register_instance(
            Instance(
                id=self.id,
                name=self.name,
                process=self.process,
                started_at=self.started_at,
                last_seen=now,
            )
        )
        self.last_beat, self._beat_at = now, taken

    async def start(self) -> int:
        """Register, take over what predecessors left (at once where they are known to be
        dead), and start heartbeating. Returns how many claims were taken over."""
        await self.register()
        predecessors = [
            other.id
            for other in await self.repo.list_instances()
            if other.id != self.id
            and ((self.named and other.name == self.name) or process_gone(other.process))
        ]
        if predecessors:
            await self.repo.retire_instances(predecessors)
            log.info("instances %s are gone (restarted here): taking over", predecessors)
        freed = await self.take_over()
        self._task = asyncio.create_task(self._run(), name="tillbot-liveness")
        return freed

    async def stop(self) -> None:
        """A clean shutdown: stop heartbeating, hand back this instance's claims."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            freed = await self.repo.deregister_instance(self.id, now=self.work_clock())
        except StorageError as exc:
            log.warning("could not hand back this instance's claims: %s", exc)
            return
        if freed:
            log.info("handed back %s claims at shutdown", freed)

    async def beat(self) -> None:
        taken, now = time.monotonic(), self.clock()
        if await self.repo.heartbeat(self.id, now=now):
            self.last_beat, self._beat_at = now, taken
            return
        # Taken for dead (no heartbeat stored for stale_after): what this instance held is
        # someone else's now. Drop it, and go on as a new instance.
        old, self.id = self.id, new_instance_id(self.name)
        self.last_beat = self._beat_at = None
        log.warning(
            "this instance (%s) was taken for dead (no heartbeat for %s s); its claims were"
            " taken over; continuing as %s",
            old,
            self.stale_after.total_seconds(),
            self.id,
        )
        self.on_new_id(self.id)
        await self.register()

    async def take_over(self) -> int:
        stale_before = self.clock() - self.stale_after
        freed = await self.repo.take_over(
            now=self.work_clock(), stale_before=stale_before, alive=self.id
        )
        if freed:
            self.taken_over += freed
            log.info("took over %s claims of instances that stopped", freed)
            self.on_takeover(freed)
        return freed

    async def _run(self) -> None:
        """Heartbeats and take-overs in separate loops: a slow take-over never delays a
        heartbeat."""
        await asyncio.gather(
            self._every(self.interval.total_seconds(), self.beat),
            self._every(self.interval.total_seconds() / 2, self.take_over),
        )

    async def _every(self, seconds: float, step: Callable[[], Awaitable[object]]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at = max(next_at + seconds, loop.time())
            await asyncio.sleep(next_at - loop.time())
            try:
                await step()
            except StorageError as exc:  # storage hiccup: `trusted` turns False if it lasts
                log.warning("liveness: %s", exc)
            except Exception:
                log.exception("liveness check failed")


__all__ = ["Liveness", "new_instance_id", "process_gone", "process_identity"]
