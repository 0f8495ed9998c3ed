"""Calling a gateway over HTTP: retries, backoff, and errors translated into GatewayError.

One `GatewayHttp` per adapter wraps the injected `httpx.AsyncClient` (never built here):

* Retries, with capped, jittered exponential backoff, on timeouts, connection errors, HTTP
  429 (and a body the adapter reads as rate limited, e.g. MixPay code 1429 under HTTP 200),
  HTTP 5xx and malformed answers. `Retry-After` (seconds or an HTTP date) is honoured, capped
  at `Backoff.max_retry_after`. Other 4xx are never retried.
* `retry=False` for non-idempotent calls: only failures that prove the gateway processed
  nothing are retried (connection refused / connect timeout / pool timeout, 429). A failure
  after the request may have been processed (read timeout, connection reset, 5xx, malformed
  answer) raises `GatewayAnswerLost`, and `create_with_lookup` then looks the session up by
  our reference before creating again, so a lost answer never makes a second session.
* Every failure becomes one of the GatewayError tree with a `user_message` for a merchant.
  Credentials only ever travel in headers or bodies; every message we build is passed
  through `redact`, so a gateway echoing a key back cannot leak it into a log or an error.
* An optional `RequestBudget` is acquired before every attempt (MixPay's 60/min limit).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random as _random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar, overload

import httpx

from bot.gateways.base import (
    GatewayAuthError,
    GatewayError,
    GatewayNotFound,
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnavailable,
)
from bot.gateways.budget import RequestBudget

logger = logging.getLogger("bot.gateways.http")

T = TypeVar("T")
SleepFn = Callable[[float], Awaitable[None]]
RandomFn = Callable[[], float]
NowFn = Callable[[], datetime]

_MAX_MESSAGE = 200


class GatewayAnswerLost(GatewayUnavailable):
    """The request may have reached the gateway, but its answer was lost (non-idempotent call)."""


class MalformedAnswer(ValueError):
    """Raised by a `parse` function: the answer is not what the gateway documents."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with equal jitter, capped; Retry-After honoured up to a cap."""

    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, rand: float) -> float:
        """Delay before retry number `attempt` (0-based): in [d/2, d], d = min(cap, base*f^n)."""
        raw = self.base
        for _ in range(max(0, attempt)):
            raw *= self.factor
            if raw >= self.max_delay:
                break
        raw = min(self.max_delay, raw)
        rand = min(1.0, max(0.0, rand))
        return raw * (0.5 + rand / 2)

    def honour(self, retry_after: float) -> float:
        return min(self.max_retry_after, max(0.0, retry_after))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Parse a Retry-After header: delta seconds or an HTTP date (relative to `now`)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = Decimal(value)
    except InvalidOperation:
        pass
    else:
        if not seconds.is_finite():
            return None
        return max(0.0, float(seconds))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """A non-2xx answer, handed to the adapter's error mapper."""

    gateway: str
    title: str
    method: str
    path: str
    status: int
    body: Any  # parsed JSON, or None
    message: str  # the gateway's own message (redacted, shortened), or ""
    retry_after: float | None


@dataclass(slots=True)
class _AttemptInfo:
    maybe_processed: bool = False  # the gateway may have acted on the request
    retry_after: float | None = None  # the answer's Retry-After, in seconds


ErrorMapper = Callable[[HttpFailure], GatewayError]
# Reads a 2xx body; returns an error when the body says the call failed (MixPay's `code`).
BodyChecker = Callable[[HttpFailure], "GatewayError | None"]


def default_error(failure: HttpFailure) -> GatewayError:
    """401/403 -> auth, 404 -> not found, 408/425 -> unavailable, other 4xx -> rejected."""
    status, name, title = failure.status, failure.gateway, failure.title
    what = failure.message or f"HTTP {status}"
    text = f"{name}: HTTP {status} on {failure.method} {failure.path}: {what}"
    if status in (401, 403):
        return GatewayAuthError(
            text, gateway=name, code=str(status), user_message=f"{title} rejected our credentials"
        )
    if status == 404:
        found = failure.message or "not found"
        return GatewayNotFound(text, gateway=name, code="404", user_message=f"{title}: {found}")
    if status in (408, 425):
        return GatewayUnavailable(
            text, gateway=name, code=str(status),
            user_message=f"{title} did not answer in time; try again in a minute",
        )
    return GatewayRejected(text, gateway=name, code=str(status), user_message=f"{title}: {what}")


def message_of(body: Any) -> str:
    """The `message` of an error body (a string, or a list of strings as NestJS sends)."""
    if not isinstance(body, Mapping):
        return ""
    message = body.get("message")
    if isinstance(message, str):
        return message
    if isinstance(message, list):
        return "; ".join(str(m) for m in message if isinstance(m, str | int))
    error = body.get("error")
    return error if isinstance(error, str) else ""


class GatewayHttp:
    """Sends requests for one adapter, with its base URL, headers, retries and errors."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        gateway: str,
        title: str,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        map_error: ErrorMapper = default_error,
        check_body: BodyChecker | None = None,
        max_retries: int = 3,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        budget: RequestBudget | None = None,
        sleep: SleepFn = asyncio.sleep,
        random: RandomFn = _random.random,
        now: NowFn | None = None,
        parse_float: Callable[[str], Any] | None = None,
    ) -> None:
        self.client = client
        self.gateway = gateway
        # Decimal for gateways that send money as JSON numbers (MiraclePay): never a float.
        self._parse_float = parse_float
        self.title = title
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self.map_error = map_error
        self.check_body = check_body
        self.max_retries = max(0, max_retries)
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self.budget = budget
        self._sleep = sleep
        self._random = random
        self._now: NowFn = now or (lambda: datetime.now(UTC))
        self._uncertain: set[str] = set()  # references whose create answer was lost

    # -- helpers ------------------------------------------------------------------------------
    def mark_uncertain(self, reference: str) -> None:
        """Something may exist at the gateway for `reference`: look it up before creating."""
        self._uncertain.add(reference)

    def settle(self, reference: str) -> None:
        self._uncertain.discard(reference)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _short(self, text: str) -> str:
        text = self.redact(" ".join(text.split()))
        return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def malformed(self, method: str, path: str, why: str) -> GatewayUnavailable:
        return GatewayUnavailable(
            self._short(f"{self.gateway}: malformed answer to {method} {path}: {why}"),
            gateway=self.gateway,
            code="malformed",
            user_message=f"{self.title} sent an answer we could not read; try again in a minute",
        )

    def _sanitize(self, error: GatewayError) -> GatewayError:
        """Make sure no message of an error carries a credential."""
        error.args = tuple(self.redact(a) if isinstance(a, str) else a for a in error.args)
        error.user_message = self.redact(error.user_message)
        return error

    # -- one attempt ------------------------------------------------------------------------
    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        json_body: Any,
        content: bytes | None,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        parse: Callable[[Any], Any] | None,
        info: _AttemptInfo,
    ) -> Any:
        """One request. Raises GatewayError; `info` says if it may have been processed."""
        if self.budget is not None:
            await self.budget.acquire()
        all_headers = {**self.headers, **(headers or {})}
        timeout: float | httpx.Timeout | Any = (
            self.timeout if self.timeout is not None else httpx.USE_CLIENT_DEFAULT
        )
        name, title = self.gateway, self.title
        info.maybe_processed = False
        info.retry_after = None
        try:
            response = await self.client.request(
                method,
                self.url(path),
                params=params,
                json=json_body,
                content=content,
                data=data,
                headers=all_headers,
                timeout=timeout,
            )
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise GatewayUnavailable(
                f"{name}: timed out connecting for {method} {path}",
                gateway=name, code="timeout",
                user_message=f"{title} did not answer in time; try again in a minute",
            ) from exc
        except httpx.TimeoutException as exc:
            info.maybe_processed = True
            raise GatewayUnavailable(
                f"{name}: timed out waiting for {method} {path}",
                gateway=name, code="timeout",
                user_message=f"{title} did not answer in time; try again in a minute",
            ) from exc
        except httpx.ConnectError as exc:
            raise GatewayUnavailable(
                f"{name}: cannot connect for {method} {path}",
                gateway=name, code="connect",
                user_message=f"{title} cannot be reached right now; try again in a minute",
            ) from exc
        except httpx.TransportError as exc:  # reset, protocol error, read/write error
            info.maybe_processed = True
            raise GatewayUnavailable(
                f"{name}: connection lost during {method} {path} ({type(exc).__name__})",
                gateway=name, code="connection",
                user_message=f"{title} cannot be reached right now; try again in a minute",
            ) from exc

        status = response.status_code
        retry_after = retry_after_seconds(response.headers.get("retry-after"), self._now())
        info.retry_after = retry_after
        raw = response.content
        body: Any = None
        body_ok = True
        if raw.strip():
            try:
                body = json.loads(raw, parse_float=self._parse_float)
            except ValueError:
                body_ok = False
        failure = HttpFailure(
            gateway=name, title=title, method=method, path=path, status=status, body=body,
            message=self._short(message_of(body)), retry_after=retry_after,
        )
        if status == 429:
            raise GatewayRateLimited(
                f"{name}: rate limited (HTTP 429) on {method} {path}",
                gateway=name, code="429", retry_after=retry_after,
                user_message=f"{title} is rate limiting us; try again in a minute",
            )
        if status >= 500:
            info.maybe_processed = True
            raise GatewayUnavailable(
                f"{name}: HTTP {status} on {method} {path}",
                gateway=name, code=str(status),
                user_message=f"{title} is having trouble (HTTP {status}); try again in a minute",
            )
        if not 200 <= status < 300:
            raise self._sanitize(self.map_error(failure))
        if not body_ok:
            info.maybe_processed = True
            raise self.malformed(method, path, "not JSON")
        if self.check_body is not None:
            problem = self.check_body(failure)
            if problem is not None:
                if isinstance(problem, GatewayUnavailable) and not isinstance(
                    problem, GatewayRateLimited
                ):
                    info.maybe_processed = True
                raise self._sanitize(problem)
        if parse is None:
            return body
        try:
            return parse(body)
        except (MalformedAnswer, ValueError, KeyError, TypeError, InvalidOperation) as exc:
            info.maybe_processed = True
            raise self.malformed(method, path, str(exc) or type(exc).__name__) from None

    # -- the retry loop ---------------------------------------------------------------------
    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = ...,
        json_body: Any = ...,
        content: bytes | None = ...,
        data: Mapping[str, str] | None = ...,
        headers: Mapping[str, str] | None = ...,
        retry: bool = ...,
        parse: Callable[[Any], T],
    ) -> T: ...

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = ...,
        json_body: Any = ...,
        content: bytes | None = ...,
        data: Mapping[str, str] | None = ...,
        headers: Mapping[str, str] | None = ...,
        retry: bool = ...,
        parse: None = ...,
    ) -> Any: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Send a request, retrying what may be retried; returns the parsed JSON (or `parse`'s).

        `path` is relative to the base URL (or absolute). With `retry=False` only failures that
        prove nothing was processed are retried; others raise `GatewayAnswerLost`.
        """
        attempt = 0
        info = _AttemptInfo()
        while True:
            try:
                return await self._attempt(
                    method, path, params=params, json_body=json_body, content=content,
                    data=data, headers=headers, parse=parse, info=info,
                )
            except GatewayError as error:
                if not isinstance(error, GatewayUnavailable) or not error.retryable:
                    raise
                if not retry and info.maybe_processed:
                    raise GatewayAnswerLost(
                        str(error), gateway=self.gateway, code=error.code,
                        user_message=error.user_message,
                    ) from error
                if attempt >= self.max_retries:
                    raise
                wait = self.backoff.delay(attempt, self._random())
                retry_after = info.retry_after
                if isinstance(error, GatewayRateLimited) and error.retry_after is not None:
                    retry_after = error.retry_after
                if retry_after is not None:
                    wait = self.backoff.honour(retry_after)
                attempt += 1
                logger.warning(
                    "%s; retry %d/%d in %.2fs",
                    self.redact(str(error)), attempt, self.max_retries, wait,
                )
                await self._sleep(wait)

    async def create_with_lookup(
        self,
        reference: str,
        create: Callable[[], Awaitable[T]],
        lookup: Callable[[], Awaitable[T | None]],
    ) -> T:
        """Create once: when an answer is lost, look the session up by reference first.

        `create` must send with `retry=False`. A reference whose create answer was lost is
        remembered, so a later call for it (the payment service trying again) looks it up
        before creating anything.
        """
        if reference in self._uncertain:
            found = await lookup()
            if found is not None:
                self._uncertain.discard(reference)
                return found
        attempt = 0
        while True:
            try:
                result = await create()
            except GatewayAnswerLost:
                self._uncertain.add(reference)
                logger.warning(
                    "%s: the answer to creating %s was lost; looking it up by reference",
                    self.gateway, reference,
                )
                found = await lookup()
                if found is not None:
                    self._uncertain.discard(reference)
                    return found
                if attempt >= self.max_retries:
                    raise
                wait = self.backoff.delay(attempt, self._random())
                attempt += 1
                await self._sleep(wait)
                # A slow create may have landed in the meantime: look once more.
                found = await lookup()
                if found is not None:
                    self._uncertain.discard(reference)
                    return found
                continue
            except GatewayRejected:
                # A gateway that enforces unique references may refuse the second create of
                # a session whose first answer was lost: it exists, find it.
                if reference in self._uncertain:
                    found = await lookup()
                    if found is not None:
                        self._uncertain.discard(reference)
                        return found
                raise
            self._uncertain.discard(reference)
            return result
