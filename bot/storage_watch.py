"""Noticing storage that vanished or stopped taking writes.

SQLite keeps writing to a database file that was deleted or replaced while the bot runs
(the open descriptor still points at the old inode): everything looks fine until the next
start opens an empty or different file, and payments to earlier invoices are never
reported. So a JobQueue job compares the file at the path with the one opened every few
seconds; when it is gone or another, the bot says so in the log and to every admin, once,
and /healthz answers 503 from then on. /healthz also writes one small row each time it is
asked, so storage that answers reads but takes no writes is unhealthy too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.i18n import t
from storage.base import Repository

log = logging.getLogger(__name__)

WATCH_INTERVAL_SECONDS = 5.0
WRITE_CHECK_TIMEOUT_SECONDS = 3.0

# (admin chat id, text) -> sent; the wiring passes the bot's send_message.
SendFn = Callable[[int, str], Awaitable[object]]
LanguageFn = Callable[[int], Awaitable[str]]


class StorageWatch:
    """Watches the database file; checks writes for /healthz."""

    def __init__(
        self,
        repo: Repository,
        *,
        admin_ids: frozenset[int],
        send: SendFn,
        language_of: LanguageFn,
        owner: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.repo = repo
        self.admin_ids = admin_ids
        self.send = send
        self.language_of = language_of
        self.owner = owner
        self.clock = clock
        self.problem: str | None = None  # "removed" or "replaced", once noticed
        self._write_check: asyncio.Future[None] | None = None

    async def tick(self, _context: object = None) -> str | None:
        """Compare the database file with the one opened; tell the admins once."""
        if self.problem is not None:
            return self.problem
        problem = self.repo.file_problem()
        if problem is None:
            return None
        self.problem = problem
        log.error(
            "the database file was %s while the bot was running: new data is written to a file"
            " that is no longer there and is lost at the next restart; restore it and restart",
            problem,
        )
        for admin in sorted(self.admin_ids):
            try:
                language = await self.language_of(admin)
            except Exception:  # storage itself may be failing: English it is
                language = "en"
            key = "storage_problem_removed" if problem == "removed" else "storage_problem_replaced"
            text = t(language, "admin_storage_lost", problem=t(language, key))
            try:
                await self.send(admin, text)
            except Exception:
                log.warning("could not tell admin %s that the database was %s", admin, problem)
        return problem

    async def takes_writes(self) -> bool:
        """True when one small row was written and committed within a few seconds. A write
        still waiting (a lock held elsewhere) is left to finish, never cancelled halfway,
        and shared by the health checks that come meanwhile."""
        if self._write_check is None or self._write_check.done():
            self._write_check = asyncio.ensure_future(
                self.repo.check_write(self.owner, self.clock())
            )
            self._write_check.add_done_callback(_retrieve)
        done, _pending = await asyncio.wait(
            {self._write_check}, timeout=WRITE_CHECK_TIMEOUT_SECONDS
        )
        if not done:
            log.warning("health check: storage took no write within %s s", WRITE_CHECK_TIMEOUT_SECONDS)
            return False
        error = self._write_check.exception()
        if error is not None:
            log.warning("health check: storage does not take writes: %s", error)
            return False
        return True


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # seen: a failed check nobody waited for is not "never retrieved"
