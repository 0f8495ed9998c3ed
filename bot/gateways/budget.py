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

Callbacks are anyone's to send (a MixPay checkout link shows the code a callback names), so
the re-reads they trigger must never crowd out creating invoices or polling. A request made
inside `callback_requests()` is granted only from spare budget: when nobody is queued, when
the window holds fewer than `(1 - reserve)` of `per_minute` grants (the reserve is what
creating invoices needs: the watcher polls with the rest), when callbacks hold fewer than
`callback_share` of `per_minute` grants in the window, and when the wait is at most one
interval. Otherwise it raises `BudgetDeferred` at once (the payment service then leaves the
read to the watcher, which paces it like any poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar

from bot.gateways.base import GatewayRateLimited

SleepFn = Callable[[float], Awaitable[None]]

WINDOW_SECONDS = 60.0
# A grant never lands exactly on the window boundary: a closed 60 s window holds no more
# than `per_minute` grants either.
_WINDOW_MARGIN = 0.001
# Creating invoices keeps this share of the budget (the watcher polls with the other 0.8).
CREATE_RESERVE = 0.2
# Callback re-reads take at most this share of the budget in any window.
CALLBACK_SHARE = 0.2

_for_callback: ContextVar[bool] = ContextVar("tillbot_budget_for_callback", default=False)


@contextlib.contextmanager
def callback_requests() -> Iterator[None]:
    """Requests made inside (in this task) are callback re-reads: spare budget only."""
    token = _for_callback.set(True)
    try:
        yield
    finally:
        _for_callback.reset(token)


class BudgetDeferred(GatewayRateLimited):
    """A callback's re-read found no spare budget; it was not sent (never retried here)."""

    retryable = False


class RequestBudget:
    """Token bucket of capacity one, refilled every `interval`, plus a sliding-window check."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: SleepFn = asyncio.sleep,
        window: float = WINDOW_SECONDS,
        reserve: float = CREATE_RESERVE,
        callback_share: float = CALLBACK_SHARE,
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
        # Callbacks: at most this many grants in a window, and only below `spare_limit`.
        self.callback_limit = max(1, int(per_minute * callback_share))
        self.spare_limit = max(1, int(per_minute * (1 - reserve)))
        self._callback_grants: deque[float] = deque()
        self.callback_granted = 0
        self.callback_deferred = 0

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
        if _for_callback.get():
            await self._acquire_spare()
            return
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

    def _in_window(self, grants: deque[float], now: float) -> int:
        return sum(1 for at in grants if at > now - self.window)

    def _defer(self, why: str) -> BudgetDeferred:
        self.callback_deferred += 1
        return BudgetDeferred(
            f"callback re-read deferred: {why}",
            code="budget",
            user_message="the gateway's request budget is in use; the status is read later",
        )

    async def _acquire_spare(self) -> None:
        """A callback re-read: granted from spare budget only, else BudgetDeferred at once."""
        now = self._clock()
        while self._callback_grants and self._callback_grants[0] <= now - self.window:
            self._callback_grants.popleft()
        if self._lock.locked():
            raise self._defer("other requests are queued")
        if len(self._callback_grants) >= self.callback_limit:
            raise self._defer("the callbacks' share is used up")
        if self._in_window(self._grants, now) >= self.spare_limit:
            raise self._defer("the rest of the window is kept for creating invoices")
        async with self._lock:
            now = self._clock()
            wait = self._wait_for(now)
            if wait > self.interval:
                raise self._defer("no slot within one interval")
            if wait > 0:
                await self._sleep(wait)
                now = max(self._clock(), now + wait)
            self._last = now
            self._grants.append(now)
            self._callback_grants.append(now)
            self.granted += 1
            self.callback_granted += 1
