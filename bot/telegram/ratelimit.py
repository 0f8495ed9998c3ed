"""The one pace of everything the bot sends to Telegram: handler replies and the outbox.

Installed as python-telegram-bot's rate limiter (`ApplicationBuilder().rate_limiter(...)`),
so every request of `app.bot` passes here. Telegram's limits, kept together:
- at most `global_rate` messages a second overall (Telegram allows about 30 for a bot);
- 20 a minute per group or channel (`group_interval` 3.1 s), for everything;
- one message a second per private chat for the outbox. A reply in a private chat answers
  that user's own message, one for one: the user sets its pace, Telegram allows such short
  bursts, and a flood of refused commands is answered at the global rate rather than
  queued for a minute (python-telegram-bot's AIORateLimiter draws the same line). It
  still counts: the outbox's next message to that chat keeps its spacing after it;
- after a 429 nothing is sent before its `retry_after` has passed; the request is then
  tried once more (`max_retries`), later ones wait their turn behind it.

Only requests that put a message into a chat are paced (send*, edit*, copy*, forward*,
stopPoll). Answers to callback and inline queries, getUpdates and set-up calls are not: they
are few, each answers one user action, and Telegram limits messages, not those.

Replies to a user's action come before the outbox: the outbox sends with
`rate_limit_args=OUTBOX`, and a slot of the global rate goes to a waiting reply first, so a
backlog of a thousand edits never delays the answer to a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, Final

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger(__name__)

# What the outbox passes as `rate_limit_args`: its sends yield to replies.
OUTBOX: Final = "outbox"
RateLimitArgs = str

_PACED_PREFIXES = ("send", "edit", "copy", "forward", "stopPoll")
Result = bool | dict[str, Any] | list[dict[str, Any]]


def retry_after_seconds(error: RetryAfter) -> float:
    """RetryAfter.retry_after is seconds or a timedelta, by PTB version and settings."""
    value = error.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class TelegramRateLimiter(BaseRateLimiter[RateLimitArgs]):
    """Paces sends: a global rate (replies first), per-chat spacing, a pause after a 429."""

    def __init__(
        self,
        *,
        global_rate: float = 25.0,
        private_interval: float = 1.0,
        group_interval: float = 3.1,
        max_retries: int = 1,
        on_retry_after: Callable[[float], None] = lambda _seconds: None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.global_interval = 1.0 / global_rate
        self.private_interval = private_interval
        self.group_interval = group_interval
        self.max_retries = max_retries
        self.on_retry_after = on_retry_after
        self.monotonic = monotonic
        self.sleep = sleep
        self._next_global = 0.0
        self._next_chat: dict[int | str, float] = {}
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        # Waiters for a global slot, replies and outbox apart; one task hands out the slots.
        self._replies: deque[asyncio.Future[None]] = deque()
        self._outbox: deque[asyncio.Future[None]] = deque()
        self._granting: asyncio.Task[None] | None = None

    # -- BaseRateLimiter -------------------------------------------------------------------
    async def initialize(self) -> None:
        """Nothing to open: the state lives in this object."""

    async def shutdown(self) -> None:
        """Stop handing out slots; waiters are cancelled with their requests."""
        if self._granting is not None:
            self._granting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._granting
            self._granting = None
        for queue in (self._replies, self._outbox):
            while queue:
                queue.popleft().cancel()  # nobody waits for a slot that never comes

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: RateLimitArgs | None,
    ) -> Result:
        """Send when the limits allow; after a 429, pause everyone and try again."""
        paced = endpoint.startswith(_PACED_PREFIXES)
        chat = _chat_of(data)
        urgent = rate_limit_args != OUTBOX
        for attempt in range(self.max_retries + 1):
            if paced:
                await self.acquire(chat, urgent=urgent)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                self.pause(seconds)
                self.on_retry_after(seconds)
                log.info("Telegram asked to wait %.1f s (%s)", seconds, endpoint)
                if attempt == self.max_retries:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- the limits ------------------------------------------------------------------------
    def pause(self, seconds: float) -> None:
        """Nothing paced goes out for `seconds` (Telegram's retry_after)."""
        self._paused_until = max(self._paused_until, self.monotonic() + seconds)

    def spacing(self, chat_id: int | str) -> float:
        """Least time between two messages to one chat (groups and channels: 20 a minute)."""
        if self.is_group(chat_id):
            return self.group_interval
        return self.private_interval

    def is_group(self, chat_id: int | str) -> bool:
        return isinstance(chat_id, str) or chat_id < 0

    async def acquire(self, chat_id: int | str | None, *, urgent: bool = False) -> None:
        """Wait until a message to `chat_id` may go, and book its slot (`urgent`: a reply).

        The chat's own spacing is waited out first, holding no global slot: a chat that
        must wait (one message a second) never delays the messages to other chats. Then
        a global slot is taken, replies before the outbox."""
        if chat_id is not None and (not urgent or self.is_group(chat_id)):
            async with self._lock:
                now = self.monotonic()
                ready = max(now, self._next_chat.get(chat_id, 0.0))
                self._next_chat[chat_id] = ready + self.spacing(chat_id)
                if len(self._next_chat) > 50_000:
                    self._next_chat = {c: v for c, v in self._next_chat.items() if v > now}
            delay = ready - self.monotonic()
            if delay > 0:
                await self.sleep(delay)
        at = await self._global_slot(urgent)
        if chat_id is not None:
            # The chat's next message keeps its spacing from when this one really goes.
            self._next_chat[chat_id] = max(
                self._next_chat.get(chat_id, 0.0), at + self.spacing(chat_id)
            )

    async def _global_slot(self, urgent: bool) -> float:
        """The moment this request may go at the global rate (returns at that moment)."""
        now = self.monotonic()
        if not self._replies and not self._outbox and now >= max(
            self._next_global, self._paused_until
        ):
            self._next_global = now + self.global_interval
            return now
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._replies if urgent else self._outbox).append(granted)
        if self._granting is None or self._granting.done():
            self._granting = asyncio.create_task(self._grant(), name="tillbot-telegram-pace")
        await granted
        return self.monotonic()

    async def _grant(self) -> None:
        """Hand out global slots one interval apart, replies first, none during a pause."""
        while self._replies or self._outbox:
            now = self.monotonic()
            at = max(now, self._next_global, self._paused_until)
            if at > now:
                await self.sleep(at - now)
                now = self.monotonic()
                if now < self._paused_until:
                    continue  # a 429 arrived while we slept
            queue = self._replies or self._outbox
            waiter = queue.popleft()
            if waiter.done():  # its request was cancelled while it waited
                continue
            waiter.set_result(None)
            # The next slot follows the one due, not the moment this loop woke: a busy
            # event loop does not slow the pace down. A slot missed by more than one
            # interval is gone, though (no burst to catch up).
            self._next_global = max(at, now - self.global_interval) + self.global_interval


def _chat_of(data: dict[str, Any]) -> int | str | None:
    """The chat a request writes to (None for inline messages: global rate only)."""
    chat = data.get("chat_id")
    if isinstance(chat, int):
        return chat
    if isinstance(chat, str):
        with contextlib.suppress(ValueError):
            return int(chat)
        return chat  # @channelusername
    return None
