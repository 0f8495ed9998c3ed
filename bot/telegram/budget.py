"""Where the bot's Telegram pace is kept: in this process, or in the database for all.

Telegram's limits hold per bot, however many processes send for it: about 30 messages a
second overall, one a second per private chat, 20 a minute per group, and after a 429 its
`retry_after` for everyone. The rate limiter (bot/telegram/ratelimit.py) books every send
with a budget:

- `LocalBudget`: the pace in this process's memory (one instance, e.g. on SQLite).
- `SharedBudget`: the pace in the database every instance uses (PostgreSQL), one atomic
  statement per booking on the database's clock (storage/budget_sql.py). Global slots are
  booked several at a time (`batch`, at most 0.2 s of them), so a burst costs one database
  write per message for its chat and one per batch for the global rate; a 429 seen by one
  instance is written there and holds back every instance's next booking.

A budget speaks in this process's monotonic seconds; the shared one converts from the
database clock through the offset measured at each call.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from storage.base import Repository, StorageError

log = logging.getLogger(__name__)

_US = 1_000_000
_PRUNE_EVERY = 600.0  # seconds between removals of idle chats' rows
_PRUNE_IDLE_US = 120 * _US
_SLIP = 0.2  # a send later than booked by this share of the spacing moves the chat on


class TelegramBudget(ABC):
    """Bookings of send slots; times are this process's monotonic seconds."""

    shared: bool = False
    batch: int = 1  # global slots booked at once

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._paused_until = 0.0

    def paused_until(self) -> float:
        """The end of the latest pause this process knows of."""
        return self._paused_until

    def pause_here(self, seconds: float) -> None:
        """Pause this process at once (the shared pause follows with `pause`)."""
        self._paused_until = max(self._paused_until, self.monotonic() + seconds)

    @abstractmethod
    async def take(self, count: int, interval: float) -> float:
        """Book `count` global slots `interval` apart; the first one's time."""

    @abstractmethod
    async def chat(self, chat: int | str, spacing: float, tolerance: float) -> float:
        """Book a message to `chat` (`tolerance`: how much sooner than its spacing a reply
        may go, a short burst Telegram allows); the time it may go."""

    @abstractmethod
    async def chat_sent(self, chat: int | str, at: float, booked: float, spacing: float) -> None:
        """The message booked for `booked` went at `at`: the chat's next keeps its spacing."""

    @abstractmethod
    async def pause(self, seconds: float) -> None:
        """Nothing goes out for `seconds` (a 429's retry_after)."""


class LocalBudget(TelegramBudget):
    """The pace in this process (a single instance)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(monotonic)
        self._next_global = 0.0
        self._next_chat: dict[int | str, float] = {}

    async def take(self, count: int, interval: float) -> float:
        return self.take_now(count, interval)

    def ready_at(self) -> float:
        """When the next global slot is free."""
        return max(self._next_global, self._paused_until)

    def take_now(self, count: int, interval: float) -> float:
        at = max(self.monotonic(), self._next_global, self._paused_until)
        self._next_global = at + count * interval
        return at

    async def chat(self, chat: int | str, spacing: float, tolerance: float) -> float:
        return self.chat_now(chat, spacing, tolerance)

    def chat_now(self, chat: int | str, spacing: float, tolerance: float) -> float:
        now = self.monotonic()
        due = self._next_chat.get(chat, 0.0)
        self._next_chat[chat] = max(due, now) + spacing
        if len(self._next_chat) > 50_000:
            self._next_chat = {c: v for c, v in self._next_chat.items() if v > now}
        return max(now, due - tolerance)

    async def chat_sent(self, chat: int | str, at: float, booked: float, spacing: float) -> None:
        self._next_chat[chat] = max(self._next_chat.get(chat, 0.0), at + spacing)

    async def pause(self, seconds: float) -> None:
        self.pause_here(seconds)


class SharedBudget(TelegramBudget):
    """The pace in the database all instances share (PostgreSQL).

    Should the database fail, a booking falls back to this process's own pace (logged):
    sends go on at this instance's share rather than stop."""

    shared = True

    def __init__(
        self,
        repo: Repository,
        *,
        global_rate: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(monotonic)
        self.repo = repo
        self.batch = max(1, int(global_rate * 0.2))
        self.fallback = LocalBudget(monotonic)
        self._offset_us = 0  # database clock minus this process's monotonic clock
        self._pruned = monotonic()
        self.bookings = 0  # database statements made (bench/ reports them)

    def _local(self, db_us: int) -> float:
        return (db_us - self._offset_us) / _US

    def _measure(self, db_now_us: int) -> None:
        self._offset_us = db_now_us - int(self.monotonic() * _US)
        self.bookings += 1

    def _note_pause(self, paused_until_us: int) -> None:
        self._paused_until = max(self._paused_until, self._local(paused_until_us))

    async def take(self, count: int, interval: float) -> float:
        try:
            first, now, paused = await self.repo.budget_take(count, round(interval * _US))
        except StorageError as exc:
            log.warning("shared Telegram budget unavailable, pacing locally: %s", exc)
            return max(await self.fallback.take(count, interval), self._paused_until)
        self._measure(now)
        self._note_pause(paused)
        if self.monotonic() - self._pruned > _PRUNE_EVERY:
            self._pruned = self.monotonic()
            try:
                await self.repo.budget_prune(_PRUNE_IDLE_US)
            except StorageError:
                log.debug("could not prune idle chats of the Telegram budget")
        return self._local(first)

    async def chat(self, chat: int | str, spacing: float, tolerance: float) -> float:
        spacing_us = round(spacing * _US)
        try:
            next_at, now = await self.repo.budget_chat(str(chat), spacing_us)
        except StorageError as exc:
            log.warning("shared Telegram budget unavailable, pacing locally: %s", exc)
            return await self.fallback.chat(chat, spacing, tolerance)
        self._measure(now)
        return self._local(max(now, next_at - spacing_us - round(tolerance * _US)))

    async def chat_sent(self, chat: int | str, at: float, booked: float, spacing: float) -> None:
        if at - booked <= _SLIP * spacing:
            return  # on time: the booking stands, no database write
        try:
            await self.repo.budget_chat_sent(
                str(chat), round(at * _US) + self._offset_us + round(spacing * _US)
            )
        except StorageError as exc:
            log.warning("shared Telegram budget unavailable: %s", exc)
        self.bookings += 1

    async def pause(self, seconds: float) -> None:
        self.pause_here(seconds)
        try:
            paused, now = await self.repo.budget_pause(round(seconds * _US))
        except StorageError as exc:
            log.warning("could not share a Telegram pause with other instances: %s", exc)
            return
        self._measure(now)
        self._note_pause(paused)
