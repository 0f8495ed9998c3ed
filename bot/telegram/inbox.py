"""Updates through the inbox (issue 12): stored before Telegram is told they arrived,
handled from there, marked done when their handler returned.

Where Telegram is told:

- webhook mode: by the HTTP 200 of `POST /telegram` (bot/web.py stores the update first,
  and answers 503 when it cannot, so Telegram delivers it again);
- long polling: by the next `getUpdates` whose `offset` is past the update. Telegram keeps
  every update until such a call confirms it, so `InboxPoller` (our own loop, in place of
  python-telegram-bot's `Updater`, which moves the offset on its next request without
  knowing whether the update was kept) stores a whole batch first and only then asks with
  the offset past it. A process dying in between gets the same batch again, and
  `update_id` recognises what was stored.

`InboxUpdateProcessor` is python-telegram-bot's seam around each update's handling
(`BaseUpdateProcessor`): the update is marked done after its handlers returned (an error a
handler raised was already answered by the error handler). Updates stored but not done when
a process died are claimed again (`resume_unfinished`, a repeating job) once their lease
lapsed, or at once at start where the database says this process owned them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.error import RetryAfter, TelegramError, TimedOut
from telegram.ext import BaseUpdateProcessor

from bot.services.inbox import InboxService
from bot.telegram.context import TillbotApp, TillbotContext
from storage import StorageError

log = logging.getLogger(__name__)

POLL_TIMEOUT = 10  # seconds a getUpdates long poll waits
RESUME_INTERVAL_SECONDS = 2.0


def command_key(update: Update) -> str | None:
    """Chat, user and text of a new command message: a resend of the same command by the
    same person while the first is under way shares it."""
    message = update.message
    if message is None or not message.text or not message.text.startswith("/"):
        return None
    user = message.from_user
    text = " ".join(message.text.split())
    return f"{message.chat.id}:{user.id if user else 0}:{text}"[:500]


def update_body(update: Update) -> str:
    return json.dumps(update.to_dict(), separators=(",", ":"), ensure_ascii=False)


class InboxUpdateProcessor(BaseUpdateProcessor):
    """Runs up to `max_concurrent_updates` handlers at once (like the simple processor) and
    marks each update done in the inbox when its handlers returned."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self.inbox: InboxService | None = None  # set in post_init when the inbox is on

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        await coroutine
        inbox = self.inbox
        if inbox is None or not isinstance(update, Update):
            return
        try:
            await inbox.done(update.update_id)
        except StorageError as exc:  # handled again once the lease lapses: resumable
            log.warning("could not mark update %s done: %s", update.update_id, exc)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


async def accept(app: TillbotApp, update: Update, body: str | None = None) -> bool:
    """Store `update` in the inbox; True when it is to be handled now (not a redelivery
    of one done or under way). Raises StorageError when it could not be stored."""
    inbox = app.bot_data.inbox
    assert inbox is not None
    return await inbox.accept(
        update.update_id, body if body is not None else update_body(update), command_key(update)
    )


class InboxPoller:
    """Long polling that confirms an update to Telegram only after it is in the inbox."""

    def __init__(self, app: TillbotApp) -> None:
        self.app = app
        self._task: asyncio.Task[None] | None = None
        self.offset: int | None = None

    async def start(self) -> None:
        await self.app.bot.delete_webhook(drop_pending_updates=False)
        self._task = asyncio.create_task(self._run(), name="inbox-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            try:
                updates = await self.app.bot.get_updates(
                    offset=self.offset, timeout=POLL_TIMEOUT, allowed_updates=Update.ALL_TYPES
                )
                await self._take(updates)
                backoff = 0.0
            except asyncio.CancelledError:
                raise
            except TimedOut:
                continue
            except RetryAfter as exc:
                retry = exc.retry_after
                await asyncio.sleep(
                    retry.total_seconds() if not isinstance(retry, int) else float(retry)
                )
            except TelegramError as exc:
                # Telegram unreachable: the offset did not move, the same updates come again.
                backoff = min(5.0, max(0.5, backoff * 2))
                log.warning("long polling: %s; trying again in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)

    async def _store(self, update: Update) -> bool:
        try:
            return await accept(self.app, update)
        except StorageError as exc:
            # Storage takes no writes: handled without the inbox (a command is then refused
            # with "I cannot save right now"; reads still work), rather than leaving
            # everyone without an answer until it does.
            log.warning("update %s handled without the inbox: %s", update.update_id, exc)
            return True

    async def _take(self, updates: tuple[Update, ...]) -> None:
        """Store a batch, then move the offset (the next getUpdates confirms it), then hand
        the new ones to the Application."""
        if not updates:
            return
        # Stored together: on SQLite the writes share one commit (group commit), on
        # PostgreSQL they go over the pool's connections at once.
        handle = await asyncio.gather(*(self._store(u) for u in updates))
        fresh = [u for u, h in zip(updates, handle, strict=True) if h]
        self.offset = max(u.update_id for u in updates) + 1
        for update in fresh:
            await self.app.update_queue.put(update)


async def resume_unfinished(context: TillbotContext) -> None:
    """A repeating job: handle the updates stored but not done by a process that died."""
    services = context.bot_data
    inbox = services.inbox
    if inbox is None:
        return
    try:
        entries = await inbox.claim()
    except StorageError as exc:
        log.warning("could not look for unfinished updates: %s", exc)
        return
    app = context.application
    for entry in entries:
        try:
            update = Update.de_json(json.loads(entry.body), context.bot)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            log.error("stored update %s cannot be read; given up", entry.update_id)
            await inbox.done(entry.update_id)
            continue
        log.info("handling update %s stored before a restart", entry.update_id)
        await app.update_queue.put(update)
