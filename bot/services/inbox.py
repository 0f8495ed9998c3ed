"""The inbox of Telegram updates (issue 12): what the web server and the poller store
before Telegram is told an update arrived, what the update processor marks done, and what
a command records of its progress so that it is resumed, not repeated, after a crash."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.domain.models import InboxEntry
from bot.failpoints import crash_point
from bot.services.core import Clock
from storage.base import Repository

log = logging.getLogger(__name__)

KEEP_DONE = timedelta(days=1)  # Telegram gives up redelivering an update within a day
MAX_ATTEMPTS = 3  # an update that killed the process this often is given up (logged)


class InboxService:
    """Updates in, claimed by this instance with a lease, marked done once handled."""

    def __init__(
        self, repo: Repository, *, owner: str, clock: Clock, lease: timedelta
    ) -> None:
        self.repo = repo
        self.owner = owner
        self.clock = clock
        self.lease = lease

    async def accept(self, update_id: int, body: str, command_key: str | None) -> bool:
        """Store an update (durably) and claim it. True when this instance is to handle it
        now; False for a redelivery of one done or being handled elsewhere."""
        now = self.clock()
        handle = await self.repo.inbox_accept(
            update_id,
            body,
            command_key=command_key,
            owner=self.owner,
            now=now,
            lease_until=now + self.lease,
        )
        crash_point("after_update_stored")  # stored; Telegram not yet told
        return handle

    async def claim(self, limit: int = 50) -> list[InboxEntry]:
        """Updates stored but not finished by an instance that died (its lease lapsed, or
        released at start), now this instance's. Those tried MAX_ATTEMPTS times already are
        given up."""
        now = self.clock()
        entries = await self.repo.inbox_claim(
            owner=self.owner, now=now, lease_until=now + self.lease, limit=limit
        )
        kept: list[InboxEntry] = []
        for entry in entries:
            if entry.attempts > MAX_ATTEMPTS:
                log.error("update %s was given up after %s attempts", entry.update_id,
                          entry.attempts - 1)
                await self.done(entry.update_id)
            else:
                kept.append(entry)
        return kept

    async def entry(self, update_id: int) -> InboxEntry | None:
        return await self.repo.inbox_get(update_id)

    async def earlier_underway(self, entry: InboxEntry) -> InboxEntry | None:
        """The same command sent earlier by the same user in the same chat and not yet
        answered: `entry` is a resend."""
        return await self.repo.inbox_earlier_underway(entry)

    async def set_reply(self, update_id: int, chat_id: int, message_id: int) -> None:
        await self.repo.inbox_set_reply(update_id, chat_id, message_id)

    async def done(self, update_id: int) -> None:
        await self.repo.inbox_done(update_id, self.clock())

    async def purge(self) -> int:
        return await self.repo.inbox_purge(done_before=self.clock() - KEEP_DONE)
