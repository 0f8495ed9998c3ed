"""The one pace of everything the bot sends to Telegram: handler replies and the outbox.

Installed as python-telegram-bot's rate limiter (`ApplicationBuilder().rate_limiter(...)`),
so every request of `app.bot` passes here. Telegram's limits, kept together:
- at most `global_rate` messages a second overall (Telegram allows about 30 for a bot);
- 20 a minute per group or channel (`group_interval` 3.1 s), for everything;
- one message a second per private chat, for the outbox and replies alike; a reply may
  come one second sooner (a burst of two, which Telegram allows), so a user's next command
  is answered at once, while a flood of commands is answered at the chat's pace;
- after a 429 nothing is sent before its `retry_after` has passed; the request is then
  tried once more (`max_retries`), later ones wait their turn behind it.

Only requests that put a message into a chat are paced (send*, edit*, copy*, forward*,
stopPoll). Answers to callback and inline queries, getUpdates and set-up calls are not: they
are few, each answers one user action, and Telegram limits messages, not those.

Where the pace is kept is the budget's part (bot/telegram/budget.py): this process's memory
for a single instance, the database for several (PostgreSQL), so that all instances
together keep Telegram's limits and a 429 seen by one pauses all.

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

from bot.telegram.budget import LocalBudget, TelegramBudget

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
    """Paces sends: a global rate (replies first), per-chat spacing, a pause after a 429.

    The pace is kept by a budget (bot/telegram/budget.py): in this process by default,
    in the database shared by every instance after `share(budget)`."""

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
        self.global_rate = global_rate
        self.global_interval = 1.0 / global_rate
        self.private_interval = private_interval
        self.group_interval = group_interval
        # A reply in a private chat may come this much sooner than the chat's spacing: a
        # burst of two, which Telegram allows; the pace after it stays one a second.
        self.reply_tolerance = private_interval
        self.max_retries = max_retries
        self.on_retry_after = on_retry_after
        self.monotonic = monotonic
        self.sleep = sleep
        self.budget: TelegramBudget = LocalBudget(monotonic)
        # Waiters for a global slot, replies and outbox apart; one task hands out the slots.
        self._replies: deque[asyncio.Future[None]] = deque()
        self._outbox: deque[asyncio.Future[None]] = deque()
        self._granting: asyncio.Task[None] | None = None
        self._pausing: set[asyncio.Task[None]] = set()

    def share(self, budget: TelegramBudget) -> None:
        """Keep the pace in `budget` from now on (the database's, shared by all instances)."""
        self.budget = budget

    # -- BaseRateLimiter -------------------------------------------------------------------
    async def initialize(self) -> None:
        """Nothing to open: the budget's storage is opened by the application."""

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
        await asyncio.gather(*self._pausing, return_exceptions=True)

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
                await self.budget.pause(seconds)
                self.on_retry_after(seconds)
                log.info("Telegram asked to wait %.1f s (%s)", seconds, endpoint)
                if attempt == self.max_retries:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- the limits ------------------------------------------------------------------------
    def pause(self, seconds: float) -> None:
        """Nothing paced goes out for `seconds` (Telegram's retry_after), here at once and,
        with a shared budget, on every instance."""
        self.budget.pause_here(seconds)
        if self.budget.shared:
            task = asyncio.get_running_loop().create_task(self.budget.pause(seconds))
            self._pausing.add(task)
            task.add_done_callback(self._pausing.discard)

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
        a global slot is taken, replies before the outbox. Replies keep the chat's pace
        too, with a burst of two in a private chat."""
        booked = 0.0
        if chat_id is not None:
            spacing = self.spacing(chat_id)
            tolerance = self.reply_tolerance if urgent and not self.is_group(chat_id) else 0.0
            booked = await self.budget.chat(chat_id, spacing, tolerance)
            delay = booked - self.monotonic()
            if delay > 0:
                await self.sleep(delay)
        at = await self._global_slot(urgent)
        if chat_id is not None:
            # The chat's next message keeps its spacing from when this one really goes.
            await self.budget.chat_sent(chat_id, at, booked, self.spacing(chat_id))

    async def _global_slot(self, urgent: bool) -> float:
        """The moment this request may go at the global rate (returns at that moment)."""
        budget = self.budget
        if (
            isinstance(budget, LocalBudget)
            and not self._replies
            and not self._outbox
            and self.monotonic() >= budget.ready_at()
        ):
            return budget.take_now(1, self.global_interval)
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._replies if urgent else self._outbox).append(granted)
        if self._granting is None or self._granting.done():
            self._granting = asyncio.create_task(self._grant(), name="tillbot-telegram-pace")
        await granted
        return self.monotonic()

    def _waiting(self) -> int:
        for queue in (self._replies, self._outbox):
            while queue and queue[0].done():  # cancelled while it waited
                queue.popleft()
        return sum(not f.done() for f in self._replies) + sum(not f.done() for f in self._outbox)

    async def _grant(self) -> None:
        """Book global slots for the waiters (several at once with a shared budget) and
        hand them out at their times, replies first; a pause drops the rest of a batch."""
        given = float("-inf")
        while waiting := self._waiting():
            count = min(waiting, self.budget.batch)
            first = await self.budget.take(count, self.global_interval)
            for n in range(count):
                # A batch handed out late (a busy event loop) keeps its spacing rather
                # than going out in one burst: late, never sooner than booked.
                at = max(first + n * self.global_interval, given + self.global_interval)
                now = self.monotonic()
                if at > now:
                    await self.sleep(at - now)
                if self.monotonic() < self.budget.paused_until():
                    break  # a 429 arrived meanwhile: book again, after the pause
                if not self._waiting():
                    break  # the slot goes unused
                (self._replies or self._outbox).popleft().set_result(None)
                given = self.monotonic()


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
