"""Wakes the Mini App's live status streams when the bot writes a status change (the outbox
is written with every change): a stream re-reads its invoice at once instead of at its next
half-second look (which still catches changes made by another instance)."""

from __future__ import annotations

import asyncio


class LiveHub:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.closed = False

    def kick(self) -> None:
        """Something changed: wake every waiting stream."""
        self._event.set()
        self._event = asyncio.Event()

    def close(self) -> None:
        """The server stops: streams end."""
        self.closed = True
        self.kick()

    async def wait(self, timeout: float) -> None:
        """Until the next kick, at most `timeout` seconds."""
        event = self._event
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return
