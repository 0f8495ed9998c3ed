"""Shared machinery of the local HTTP simulators of the payment gateways' wire formats.

Each simulator (`MionSimulator`, `MixPaySimulator`, `MiraclePaySimulator`) is an aiohttp
server on 127.0.0.1 (port 0: an ephemeral port) that speaks one gateway's API, so that the
adapters under test are the ones used in production::

    sim = MionSimulator(api_key="k")
    await sim.start()            # or: async with MionSimulator() as sim: ...
    ...                          # point the adapter at sim.url
    await sim.stop()

What every simulator has (this module):

* ``sim.root_url`` (server root) and ``sim.url`` (the base URL an adapter is configured with:
  the root for Mion and MiraclePay, ``{root}/v1`` for MixPay).
* ``sim.requests``: every request to the gateway API as a `RecordedRequest` (monotonic time,
  simulated time, method, path, query, headers with lower-cased names, raw body, parsed body
  (JSON with floats as `Decimal`, or the form fields), the answer's status).
  ``sim.clear_requests()``. Requests to ``/_sim/...`` and ``/checkout/...`` are not recorded.
* Fault injection, consumed first-in first-out, one fault per request (a fault with
  ``path_contains`` only matches request paths containing that text):

  - ``fail_next(n, status=500, body=None, retry_after=None, path_contains=None)``: answer
    ``status`` with ``body`` (default: the gateway's own error format) without performing the
    request; ``Retry-After`` is sent whenever ``retry_after`` is given (429, 503, ...).
  - ``hang_next(n, seconds)``: sleep ``seconds`` and then process the request normally (a
    slow gateway: the work is done even when the client has given up).
  - ``malformed_next(n)``: answer 200 with a truncated, invalid JSON body, without performing
    the request.
  - ``lose_next_create(n, mode="502")``: perform the next successful session creation, store
    the session, then lose the answer: ``mode="502"`` answers 502 with an HTML proxy page,
    ``mode="abort"`` closes the connection without an answer. Only consumed by a create
    request that succeeded (a refused create is answered normally).
  - ``sim.delay = seconds``: latency added to every API request.
  - ``clear_faults()``.
* Clock: ``sim.now()`` calls the ``clock`` given to the constructor (default
  ``datetime.now(UTC)``), so tests can move time. Time-driven transitions (expiry, Mion's
  ``funded``) are applied by ``sim.tick()``, which runs before every API request and every
  ``tick_interval`` seconds in the background.
* Sessions: ``sim.sessions`` (id -> the gateway's state dataclass, a `SimSession`), controls
  ``pay``, ``underpay``, ``expire``, ``fail``, ``cancel``, ``set_status``; they raise
  `SessionNotFound`, `InvalidTransition` or `UnsupportedControl`. ``sim.create_count``
  counts sessions really created (an idempotent repeat does not count; it increments the
  session's ``create_requests`` instead).
* Callbacks: on a status change the simulator POSTs the gateway's callback (if one is
  registered) with httpx, ``callback_timeout`` seconds per try, retrying after each delay of
  ``callback_retry_delays`` (delay before try *i*; the gateways' schedules compressed to
  tenths of a second). ``sim.callbacks_sent`` holds the acknowledged deliveries,
  ``sim.callback_attempts`` every try, ``sim.callbacks_dropped`` the callbacks not sent
  (``sim.callbacks_enabled = False`` drops them: callbacks get lost).
  ``await sim.wait_callbacks()`` waits for deliveries under way.
* The same controls over HTTP, for other processes (``{root}`` is ``sim.root_url``; bodies
  JSON or form, all fields optional)::

    POST {root}/_sim/sessions/{id}/pay        {"at": ISO-8601, "force": bool, ...}
    POST {root}/_sim/sessions/{id}/underpay   {"paid_fraction": "0.5"}
    POST {root}/_sim/sessions/{id}/expire
    POST {root}/_sim/sessions/{id}/fail       {"reason": "...", "code": "..."}
    POST {root}/_sim/sessions/{id}/cancel
    POST {root}/_sim/sessions/{id}/status     {"status": "..."}
    GET  {root}/_sim/sessions                 {"sessions": {id: state}, "create_count": n}
    GET  {root}/_sim/sessions/{id}
    GET  {root}/_sim/requests                 {"requests": [...]}
    GET  {root}/_sim/callbacks                {"sent": [...], "attempts": [...], ...}
    POST {root}/_sim/faults  {"kind": "fail|hang|malformed|lose_create", "n": 1,
                              "status": 500, "seconds": 1.0, "body": ..., "retry_after": 2,
                              "path_contains": "...", "mode": "502|abort"}
    POST {root}/_sim/faults/clear
    POST {root}/_sim/callbacks  {"enabled": bool}
    POST {root}/_sim/reset     sessions, requests, faults, callbacks, counters and delay
                               cleared, callbacks enabled again

  Answers are JSON: ``{"ok": true, "session": {...}}``; 404 for an unknown session, 409 for
  a refused transition, 400 for an unsupported control. A control POSTed as an HTML form
  with a ``return_to`` field is answered with a 303 redirect to it.
* ``GET {root}/checkout/{id}``: a tiny HTML checkout page whose button POSTs
  ``/_sim/sessions/{id}/pay`` (for running a simulator locally by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import json
import logging
import math
import re
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

import httpx
from aiohttp import web

from testkit.tls import client_context

log = logging.getLogger(__name__)

FaultKind = Literal["fail", "hang", "malformed", "lose_create"]
LoseMode = Literal["502", "abort"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], datetime]

_FAULT_KINDS: tuple[FaultKind, ...] = ("fail", "hang", "malformed", "lose_create")
_REQUEST_KEY = web.RequestKey("sim_record", object)


# -- errors -----------------------------------------------------------------------------------


class SimulatorError(Exception):
    """A simulator control was refused; `http_status` is its answer on ``/_sim``."""

    http_status: ClassVar[int] = 409


class SessionNotFound(SimulatorError, KeyError):
    http_status = 404

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "session not found"


class InvalidTransition(SimulatorError, ValueError):
    """The session is in a state the control cannot apply to (pass ``force=True`` to pay)."""

    http_status = 409


class UnsupportedControl(SimulatorError, NotImplementedError):
    """The gateway has no notion of this control (e.g. underpayment at Mion)."""

    http_status = 400


# -- helpers ----------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_z(moment: datetime, *, millis: bool = False) -> str:
    """``2019-08-24T14:15:22Z`` (or ``...22.000Z`` with ``millis``), always in UTC."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def parse_iso(text: str) -> datetime:
    """An ISO-8601 timestamp; a naive one is taken as UTC. Raises ValueError."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain digits, never in exponent notation (``Decimal("1E+1")`` -> ``"10"``)."""
    return format(value, "f")


def parse_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a JSON number or a plain decimal string; None when not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)\s*", value):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _jsonable(value: Any) -> Any:
    """Dataclasses, datetimes, tuples and sets made JSON-friendly (Decimal kept as is)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return iso_z(value, millis=True)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


_DEC_MARK = "\x00dec\x00"
_DEC_RE = re.compile(r'"\\u0000dec\\u0000([-0-9.]+)\\u0000dec\\u0000"')


def dumps(value: Any) -> str:
    """JSON text where a `Decimal` is written as an exact JSON number (never via float)."""

    def mark(item: Any) -> Any:
        if isinstance(item, Decimal):
            return f"{_DEC_MARK}{decimal_text(item)}{_DEC_MARK}" if item.is_finite() else None
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    return _DEC_RE.sub(lambda m: m.group(1), json.dumps(mark(_jsonable(value))))


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, text=dumps(data), content_type="application/json", headers=headers
    )


def parse_body(content_type: str, raw: bytes) -> tuple[Any, str | None]:
    """(parsed body, error): JSON (floats as Decimal) or form fields; (None, None) if empty."""
    if not raw.strip():
        return None, None
    if "application/x-www-form-urlencoded" in content_type:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "form body is not UTF-8"
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True)), None
    try:
        return json.loads(raw, parse_float=Decimal), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"invalid JSON: {exc}"


def is_http_url(value: object, *, https_only: bool = False) -> bool:
    if not isinstance(value, str) or not value or len(value) > 2048:
        return False
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return False
    schemes = ("https",) if https_only else ("http", "https")
    return parts.scheme in schemes and bool(parts.hostname) and " " not in value


# -- records and state ------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request the gateway API received (before faults and rate limits are applied)."""

    time: float  # time.monotonic() at arrival
    at: datetime  # sim.now() at arrival
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    parsed: Any  # JSON (floats as Decimal) or form dict; None when empty or unparseable
    parse_error: str | None = None
    response_status: int | None = None  # None while in progress or when the answer was lost

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class CallbackRecord:
    """One try to deliver a callback (or a callback dropped without a try)."""

    url: str
    payload: Any
    attempt: int
    at: datetime
    status: int | None = None
    response_body: str = ""
    delivered: bool = False
    error: str | None = None
    session_id: str | None = None


@dataclass
class Fault:
    kind: FaultKind
    remaining: int
    status: int = 500
    body: Any = None
    retry_after: float | None = None
    path_contains: str | None = None
    seconds: float = 0.0
    mode: LoseMode = "502"

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (not self.path_contains or self.path_contains in path)


@dataclass
class SimSession:
    """The state every simulated session has; each gateway adds its own fields.

    ``amount`` is the amount as the wire carries it (Mion: cents; MixPay: quoteAmount;
    MiraclePay: the requested USD amount), ``reference`` is Mion's reference, MixPay's
    orderId or MiraclePay's note.
    """

    id: str
    amount: Decimal
    currency: str
    reference: str | None
    status: str
    created_at: datetime
    expires_at: datetime | None = None
    paid_at: datetime | None = None
    create_requests: int = 1
    history: list[tuple[datetime, str]] = field(default_factory=list)
    callback_urls: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _jsonable(self)
        data["history"] = [{"at": at, "status": status} for at, status in data["history"]]
        return data


S = TypeVar("S", bound=SimSession)


class FaultControls:
    """The recorded requests and the faults to inject into the next ones: the simulators'
    test surface, also used around the sandbox's in-process transport (tests/sandbox_kit.py)."""

    requests: list[RecordedRequest]
    faults: list[Fault]

    def clear_requests(self) -> None:
        self.requests.clear()

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: Any = None,
        retry_after: float | None = None,
        path_contains: str | None = None,
    ) -> None:
        self.faults.append(
            Fault("fail", n, status=status, body=body, retry_after=retry_after,
                  path_contains=path_contains)
        )

    def hang_next(self, n: int = 1, seconds: float = 5.0, path_contains: str | None = None) -> None:
        self.faults.append(Fault("hang", n, seconds=seconds, path_contains=path_contains))

    def malformed_next(self, n: int = 1, path_contains: str | None = None) -> None:
        self.faults.append(Fault("malformed", n, path_contains=path_contains))

    def lose_next_create(self, n: int = 1, mode: LoseMode = "502") -> None:
        if mode not in ("502", "abort"):
            raise ValueError("mode must be '502' or 'abort'")
        self.faults.append(Fault("lose_create", n, mode=mode))

    def clear_faults(self) -> None:
        self.faults.clear()

    def next_fault(self, path: str, is_create: bool) -> Fault | None:
        """The fault for a request to `path` (`lose_create` only for a create), if any."""
        return next(
            (f for f in self.faults
             if f.matches(path) and (f.kind != "lose_create" or is_create)),
            None,
        )

    def spend(self, fault: Fault) -> None:
        """Count one use of `fault`; a spent fault is dropped."""
        fault.remaining -= 1
        self.faults[:] = [f for f in self.faults if f.remaining > 0]


# -- the base simulator -----------------------------------------------------------------------


class GatewaySimulator(FaultControls, ABC, Generic[S]):
    """An aiohttp server speaking one gateway's wire format; see the module docstring."""

    name: ClassVar[str] = "gateway"
    api_prefix: ClassVar[str] = ""
    default_callback_retry_delays: ClassVar[tuple[float, ...]] = (0.0, 0.1, 0.2, 0.4)

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        callback_retry_delays: Iterable[float] | None = None,
        callback_timeout: float = 2.0,
        tick_interval: float = 0.05,
    ) -> None:
        self.clock: Clock = clock or utc_now
        self.callback_retry_delays: tuple[float, ...] = tuple(
            self.default_callback_retry_delays
            if callback_retry_delays is None
            else callback_retry_delays
        )
        self.callback_timeout = callback_timeout
        self.tick_interval = tick_interval
        self.delay: float = 0.0
        self.callbacks_enabled: bool = True
        self.sessions: dict[str, S] = {}
        self.requests: list[RecordedRequest] = []
        self.callbacks_sent: list[CallbackRecord] = []
        self.callback_attempts: list[CallbackRecord] = []
        self.callbacks_dropped: list[CallbackRecord] = []
        self.create_count: int = 0
        self.faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self._root_url: str | None = None
        self._http: httpx.AsyncClient | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._callback_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns `url`. Port 0 picks a free ephemeral port."""
        if self._runner is not None:
            raise RuntimeError(f"{self.name} simulator already started")
        app = web.Application(middlewares=[self._make_middleware()], client_max_size=2**20)
        self._add_control_routes(app)
        self._add_routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        addresses = runner.addresses
        bound_port = int(addresses[0][1]) if addresses else port
        url_host = f"[{host}]" if ":" in host else host
        self._root_url = f"http://{url_host}:{bound_port}"
        # Callbacks go to HTTPS URLs; the local test certificate is trusted too (tls.py).
        self._http = httpx.AsyncClient(
            timeout=self.callback_timeout, trust_env=False, verify=client_context()
        )
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"{self.name}-sim-ticker")
        return self.url

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for task in list(self._callback_tasks):
            task.cancel()
        if self._callback_tasks:
            await asyncio.gather(*self._callback_tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def root_url(self) -> str:
        if self._root_url is None:
            raise RuntimeError(f"{self.name} simulator not started")
        return self._root_url

    @property
    def url(self) -> str:
        """The base URL an adapter is configured with."""
        return self.root_url + self.api_prefix

    @property
    def port(self) -> int:
        return int(self.root_url.rsplit(":", 1)[1])

    def now(self) -> datetime:
        moment = self.clock()
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    # -- sessions and controls ------------------------------------------------------------------

    def session(self, session_id: str) -> S:
        """The session with this id (subclasses also accept their secondary keys)."""
        found = self.sessions.get(session_id) or self._find_session(session_id)
        if found is None:
            raise SessionNotFound(f"no {self.name} session {session_id!r}")
        return found

    def _find_session(self, key: str) -> S | None:
        """Secondary lookup (reference, orderId, ...)."""
        return None

    @abstractmethod
    def pay(self, session_id: str, at: datetime | None = None, *, force: bool = False) -> S:
        """The customer pays in full (``at``: the payment time, default now)."""

    def underpay(self, session_id: str, paid_fraction: Decimal = Decimal("0.5")) -> S:
        raise UnsupportedControl(f"{self.name} has no notion of an underpayment")

    @abstractmethod
    def expire(self, session_id: str) -> S: ...

    @abstractmethod
    def fail(self, session_id: str, reason: str | int | None = None) -> S: ...

    @abstractmethod
    def cancel(self, session_id: str) -> S: ...

    @abstractmethod
    def set_status(self, session_id: str, status: str) -> S:
        """Force a raw gateway status (e.g. MixPay ``auditing``, Mion ``exchanged``)."""

    def tick(self) -> None:
        """Apply time-driven transitions (expiry, ...) as of ``sim.now()``."""
        now = self.now()
        for session in list(self.sessions.values()):
            self._advance(session, now)

    def _advance(self, session: S, now: datetime) -> None:
        """Move one session along as time passes."""

    def _set_status(self, session: S, status: str, at: datetime | None = None) -> None:
        old = session.status
        session.status = status
        session.history.append((at or self.now(), status))
        if old != status:
            self._on_status_change(session, old)

    def _on_status_change(self, session: S, old: str) -> None:
        """Send the gateway's callbacks for the change."""

    def reset(self) -> None:
        self.sessions.clear()
        self.requests.clear()
        self.faults.clear()
        self.callbacks_sent.clear()
        self.callback_attempts.clear()
        self.callbacks_dropped.clear()
        for task in list(self._callback_tasks):
            task.cancel()
        self.create_count = 0
        self.callbacks_enabled = True
        self.delay = 0.0
        self._reset_extra()

    def _reset_extra(self) -> None:
        """Clear the subclass's indexes."""

    # -- callbacks ------------------------------------------------------------------------------

    def _send_callback(
        self,
        url: str,
        payload: Any,
        acknowledged: Callable[[int, bytes], bool],
        session_id: str | None = None,
    ) -> None:
        if not self.callbacks_enabled:
            self.callbacks_dropped.append(
                CallbackRecord(url, payload, 0, self.now(), error="callbacks disabled",
                               session_id=session_id)
            )
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.callbacks_dropped.append(
                CallbackRecord(url, payload, 0, self.now(), error="no running event loop",
                               session_id=session_id)
            )
            return
        task = loop.create_task(self._deliver(url, payload, acknowledged, session_id))
        self._callback_tasks.add(task)
        task.add_done_callback(self._callback_tasks.discard)

    async def _deliver(
        self,
        url: str,
        payload: Any,
        acknowledged: Callable[[int, bytes], bool],
        session_id: str | None,
    ) -> None:
        body = dumps(payload).encode()
        headers = {"content-type": "application/json", "user-agent": f"{self.name}-simulator"}
        for attempt, pause in enumerate(self.callback_retry_delays, start=1):
            if pause > 0:
                await asyncio.sleep(pause)
            record = CallbackRecord(url, payload, attempt, self.now(), session_id=session_id)
            if not self.callbacks_enabled:
                record.error = "callbacks disabled"
                self.callbacks_dropped.append(record)
                return
            client = self._http
            if client is None:
                record.error = "simulator stopped"
                self.callbacks_dropped.append(record)
                return
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                record.error = f"{type(exc).__name__}: {exc}"
            else:
                record.status = response.status_code
                record.response_body = response.text[:2000]
                record.delivered = acknowledged(response.status_code, response.content)
            self.callback_attempts.append(record)
            if record.delivered:
                self.callbacks_sent.append(record)
                return
        log.info("%s simulator gave up a callback to %s", self.name, url)

    async def wait_callbacks(self, timeout: float = 5.0) -> None:
        """Wait until every callback delivery under way has finished (or `timeout`)."""
        deadline = time.monotonic() + timeout
        while self._callback_tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self._callback_tasks)} callback(s) still under way")
            await asyncio.wait(set(self._callback_tasks), timeout=left)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.tick()
            except Exception:  # a bug must not kill the server's clock
                log.exception("%s simulator tick failed", self.name)

    # -- gateway hooks --------------------------------------------------------------------------

    @abstractmethod
    def _add_routes(self, app: web.Application) -> None:
        """Register the gateway API's routes."""

    @abstractmethod
    def _error_response(self, status: int, message: str) -> web.Response:
        """An error in the gateway's format (used for faults, unknown routes, ...)."""

    def _fault_body_response(self, status: int, body: Any) -> web.Response:
        if body is None:
            return self._error_response(status, _reason(status))
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type="application/json")
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="application/json")
        return json_response(body, status)

    def _malformed_body(self) -> bytes:
        return b'{"status": "funded", "paidAt": '

    def _is_create(self, request: web.Request) -> bool:
        """Whether the request creates a session (for ``lose_next_create``)."""
        return False

    def _pre_handle(self, request: web.Request) -> web.StreamResponse | None:
        """Answer before faults and the handler (MixPay's rate limit), or None."""
        return None

    def _decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add headers every API answer carries (MixPay's x-ratelimit-*)."""

    def _checkout_lines(self, session: S) -> list[tuple[str, str]]:
        return [
            ("Amount", f"{decimal_text(session.amount)} {session.currency}"),
            ("Reference", session.reference or "-"),
            ("Status", session.status),
        ]

    def _checkout_return(self, session: S) -> str | None:
        return None

    # -- request plumbing -----------------------------------------------------------------------

    @staticmethod
    def record(request: web.Request) -> RecordedRequest:
        """The recording of this API request (its parsed body is what handlers read)."""
        rec = request.get(_REQUEST_KEY)
        if not isinstance(rec, RecordedRequest):
            raise RuntimeError("request was not recorded")
        return rec

    def _make_middleware(self) -> Any:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith(("/_sim/", "/checkout/")) or request.path == "/_sim":
                try:
                    return await handler(request)
                except web.HTTPException as exc:
                    if exc.status < 400:  # redirects of the checkout form
                        raise
                    return json_response({"error": exc.reason}, exc.status)
            raw = await request.read()
            parsed, error = parse_body(request.content_type, raw)
            rec = RecordedRequest(
                time=time.monotonic(),
                at=self.now(),
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=raw,
                parsed=parsed,
                parse_error=error,
            )
            self.requests.append(rec)
            request[_REQUEST_KEY] = rec
            response = await self._handle_api(request, handler)
            if response is None:  # the answer is lost: the connection was aborted
                return web.Response(status=499)
            rec.response_status = response.status
            self._decorate(request, response)
            return response

        return middleware

    async def _handle_api(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse | None:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        early = self._pre_handle(request)
        if early is not None:
            return early
        fault = self.next_fault(request.path, self._is_create(request))
        if fault is not None and fault.kind != "lose_create":
            self.spend(fault)
            if fault.kind == "fail":
                failed = self._fault_body_response(fault.status, fault.body)
                if fault.retry_after is not None:
                    failed.headers["Retry-After"] = _retry_after_text(fault.retry_after)
                return failed
            if fault.kind == "malformed":
                return web.Response(
                    status=200, body=self._malformed_body(), content_type="application/json"
                )
            await asyncio.sleep(fault.seconds)  # hang, then answer normally
        self.tick()
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = self._error_response(exc.status, exc.reason)
        if fault is not None and fault.kind == "lose_create" and 200 <= response.status < 300:
            self.spend(fault)
            if fault.mode == "abort":
                if request.transport is not None:
                    request.transport.abort()
                return None
            return web.Response(
                status=502,
                text="<html><head><title>502 Bad Gateway</title></head>"
                "<body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html",
            )
        return response

    # -- /_sim control routes -------------------------------------------------------------------

    def _add_control_routes(self, app: web.Application) -> None:
        app.router.add_get("/_sim/sessions", self._ctl_sessions)
        app.router.add_get("/_sim/sessions/{id}", self._ctl_session)
        app.router.add_post("/_sim/sessions/{id}/{action}", self._ctl_action)
        app.router.add_get("/_sim/requests", self._ctl_requests)
        app.router.add_get("/_sim/callbacks", self._ctl_callbacks)
        app.router.add_post("/_sim/callbacks", self._ctl_set_callbacks)
        app.router.add_post("/_sim/faults", self._ctl_faults)
        app.router.add_post("/_sim/faults/clear", self._ctl_clear_faults)
        app.router.add_post("/_sim/reset", self._ctl_reset)
        app.router.add_get("/checkout/{id}", self._checkout_page)

    async def _ctl_params(self, request: web.Request) -> dict[str, Any]:
        parsed, _ = parse_body(request.content_type, await request.read())
        params = dict(request.query)
        if isinstance(parsed, dict):
            params.update(parsed)
        return params

    async def _ctl_sessions(self, request: web.Request) -> web.Response:
        self.tick()
        return json_response(
            {
                "gateway": self.name,
                "create_count": self.create_count,
                "sessions": {sid: s.to_dict() for sid, s in self.sessions.items()},
            }
        )

    async def _ctl_session(self, request: web.Request) -> web.Response:
        self.tick()
        try:
            session = self.session(request.match_info["id"])
        except SimulatorError as exc:
            return json_response({"ok": False, "error": str(exc)}, exc.http_status)
        return json_response({"ok": True, "session": session.to_dict()})

    async def _ctl_action(self, request: web.Request) -> web.Response:
        params = await self._ctl_params(request)
        session_id = request.match_info["id"]
        action = request.match_info["action"]
        self.tick()
        try:
            session = self._http_control(session_id, action, params)
        except SimulatorError as exc:
            return json_response({"ok": False, "error": str(exc)}, exc.http_status)
        except (ValueError, TypeError) as exc:
            return json_response({"ok": False, "error": str(exc)}, 400)
        return_to = params.get("return_to")
        if (
            "form" in request.content_type
            and isinstance(return_to, str)
            and (return_to.startswith("/") or is_http_url(return_to))
        ):
            raise web.HTTPSeeOther(return_to)
        return json_response({"ok": True, "session": session.to_dict()})

    def _http_control(self, session_id: str, action: str, params: dict[str, Any]) -> S:
        if action == "pay":
            at = params.get("at")
            return self._http_pay(
                session_id, parse_iso(at) if isinstance(at, str) and at else None,
                _truthy(params.get("force")), params,
            )
        if action == "underpay":
            fraction = parse_decimal(params.get("paid_fraction", "0.5"))
            if fraction is None:
                raise ValueError("paid_fraction must be a decimal number")
            return self.underpay(session_id, fraction)
        if action == "expire":
            return self.expire(session_id)
        if action == "fail":
            return self._http_fail(session_id, params)
        if action == "cancel":
            return self.cancel(session_id)
        if action == "status":
            status = params.get("status")
            if not isinstance(status, str) or not status:
                raise ValueError("status is required")
            return self.set_status(session_id, status)
        raise UnsupportedControl(f"unknown control {action!r}")

    def _http_pay(
        self, session_id: str, at: datetime | None, force: bool, params: dict[str, Any]
    ) -> S:
        return self.pay(session_id, at, force=force)

    def _http_fail(self, session_id: str, params: dict[str, Any]) -> S:
        reason = params.get("reason")
        return self.fail(session_id, None if reason is None else str(reason))

    async def _ctl_requests(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "requests": [
                    {
                        "time": r.time,
                        "at": r.at,
                        "method": r.method,
                        "path": r.path,
                        "query": r.query,
                        "headers": r.headers,
                        "body": r.text,
                        "parsed": r.parsed,
                        "response_status": r.response_status,
                    }
                    for r in self.requests
                ]
            }
        )

    async def _ctl_callbacks(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "enabled": self.callbacks_enabled,
                "sent": self.callbacks_sent,
                "attempts": self.callback_attempts,
                "dropped": self.callbacks_dropped,
                "in_flight": len(self._callback_tasks),
            }
        )

    async def _ctl_set_callbacks(self, request: web.Request) -> web.Response:
        params = await self._ctl_params(request)
        if "enabled" in params:
            self.callbacks_enabled = _truthy(params["enabled"])
        return json_response({"ok": True, "enabled": self.callbacks_enabled})

    async def _ctl_faults(self, request: web.Request) -> web.Response:
        params = await self._ctl_params(request)
        kind = params.get("kind")
        try:
            n = int(params.get("n", 1))
            if kind == "fail":
                retry_after = params.get("retry_after")
                self.fail_next(
                    n,
                    status=int(params.get("status", 500)),
                    body=params.get("body"),
                    retry_after=None if retry_after is None else float(retry_after),
                    path_contains=params.get("path_contains"),
                )
            elif kind == "hang":
                self.hang_next(n, float(params.get("seconds", 5.0)), params.get("path_contains"))
            elif kind == "malformed":
                self.malformed_next(n, params.get("path_contains"))
            elif kind == "lose_create":
                mode = str(params.get("mode", "502"))
                self.lose_next_create(n, "abort" if mode == "abort" else "502")
            else:
                raise ValueError(f"kind must be one of {', '.join(_FAULT_KINDS)}")
        except (ValueError, TypeError) as exc:
            return json_response({"ok": False, "error": str(exc)}, 400)
        return json_response({"ok": True, "faults": self.faults})

    async def _ctl_clear_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return json_response({"ok": True})

    async def _ctl_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return json_response({"ok": True})

    async def _checkout_page(self, request: web.Request) -> web.Response:
        self.tick()
        try:
            session = self.session(request.match_info["id"])
        except SimulatorError:
            return web.Response(status=404, text="<h1>Payment session not found</h1>",
                                content_type="text/html")
        esc = html.escape
        rows = "".join(
            f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in self._checkout_lines(session)
        )
        page_url = f"/checkout/{urllib.parse.quote(session.id)}"
        return_to = self._checkout_return(session) or page_url
        action = f"/_sim/sessions/{urllib.parse.quote(session.id)}/pay"
        body = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{esc(self.name)} checkout (simulator)</title></head><body>"
            f"<h1>{esc(self.name)} checkout</h1><p>Local simulator: no real money moves.</p>"
            f"<table>{rows}</table>"
            f"<form method='post' action='{esc(action)}'>"
            f"<input type='hidden' name='return_to' value='{esc(return_to)}'>"
            "<button type='submit'>Pay</button></form></body></html>"
        )
        return web.Response(text=body, content_type="text/html")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _retry_after_text(seconds: float) -> str:
    """Retry-After is whole seconds (RFC 9110): a fraction is rounded up."""
    return str(max(0, math.ceil(seconds)))


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def reason_phrase(status: int) -> str:
    """The HTTP reason phrase of `status` ("Bad Request")."""
    return _reason(status)
