"""A request budget: at most `per_minute` requests in any 60 s window, spread evenly.

MixPay allows 60 requests per minute for all its APIs together and answers code 1429 past
that. Its adapter acquires the budget before EVERY request (create, status, refresh,
lookups and each retry), so however many invoices are pending, the adapter never sends
more than its budget; pending invoices simply wait their turn.

Two rules hold together:

* spacing: consecutive grants are at least `interval` (60 / per_minute) seconds apart, so
  requests are spread instead of sent in bursts;
* sliding window: the `per_minute`-th grant after any grant comes more than 60 s after it,
  so no 60 s window (open or closed) ever holds more than `per_minute` grants, whatever
  floating-point rounding does to the spacing.

Waiters are served first come, first served (an `asyncio.Lock`). Clock and sleep are
injectable so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

SleepFn = Callable[[float], Awaitable[None]]

WINDOW_SECONDS = 60.0
# A grant never lands exactly on the window boundary: a closed 60 s window holds no more
# than `per_minute` grants either.
_WINDOW_MARGIN = 0.001


class RequestBudget:
    """Token bucket of capacity one, refilled every `interval`, plus a sliding-window check."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: SleepFn = asyncio.sleep,
        window: float = WINDOW_SECONDS,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.per_minute = per_minute
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._grants: deque[float] = deque(maxlen=per_minute)
        self._last: float | None = None
        self.granted = 0  # how many requests were let through (for metrics and tests)

    @property
    def interval(self) -> float:
        """Seconds between two requests at the budget's steady rate (60 / per_minute)."""
        return self.window / self.per_minute

    def _wait_for(self, now: float) -> float:
        wait = 0.0
        if self._last is not None:
            wait = max(wait, self._last + self.interval - now)
        if len(self._grants) >= self.per_minute:
            wait = max(wait, self._grants[0] + self.window + _WINDOW_MARGIN - now)
        return wait

    def delay(self) -> float:
        """How long an acquire started now would wait, ignoring queued waiters."""
        return max(0.0, self._wait_for(self._clock()))

    async def acquire(self) -> None:
        """Wait until one more request fits the budget, then count it as sent."""
        async with self._lock:
            now = self._clock()
            wait = self._wait_for(now)
            if wait > 0:
                await self._sleep(wait)
                # One sleep is enough: never spin on a clock that did not move (a fake clock
                # not tied to the sleep), and never count a sleep that woke early as late.
                now = max(self._clock(), now + wait)
            self._last = now
            self._grants.append(now)
            self.granted += 1
