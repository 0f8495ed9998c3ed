"""HTTP endpoints inside the bot process (when HTTP_PORT or PORT is set).

POST /telegram              Telegram's webhook; 403 without the right secret header
POST /webhooks/<gateway>/…  gateway callbacks: a hint to re-read the status from the API
GET  /healthz               storage reachable and watcher alive
GET  /metrics               Prometheus text format (prometheus-client; behind METRICS_TOKEN when set)
/app/…                      the counter Mini App and its API (bot/webapp/routes.py)

Slow and half-open clients cannot exhaust the process: a connection must finish a request's
headers within HTTP_HEADER_TIMEOUT_SECONDS of opening (or of its previous request: idle
keep-alive connections close then too), a body must arrive within HTTP_BODY_TIMEOUT_SECONDS
(else 408), and at most HTTP_MAX_CONNECTIONS connections are open (with those accepted in one
go, never more than half the process's file-descriptor limit). A new connection beyond the cap closes the oldest one
that is not in the middle of a request (half-open ones first), or is refused when every
connection is busy; neither writes a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import resource
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from telegram import Update

from bot.gateways.base import GatewayError, GatewayUnsupported
from bot.metrics import CONTENT_TYPE
from bot.telegram.context import TillbotApp
from bot.telegram.inbox import accept
from bot.webapp.routes import CounterWeb
from storage import StorageError

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name


class _Connection(asyncio.Protocol):
    """One accepted connection: admitted by the guard, then handled by aiohttp's protocol."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.busy = False  # inside a request (headers read, answer not yet handed over)
        self.served = 0  # requests answered on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # TCP: a stream transport
        self.transport = transport
        if not self.guard.admit(self):
            transport.abort()  # quietly: no log line per refused connection
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        if self.admitted:
            self.admitted = False
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()


class ConnectionGuard:
    """A protocol factory around aiohttp's that keeps at most `limit` connections open."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        limit: int,
        on_drop: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self.factory = factory
        self.limit = limit
        self.on_drop = on_drop
        self.open: dict[asyncio.BaseTransport, _Connection] = {}  # oldest first

    def __call__(self) -> _Connection:
        return _Connection(self, self.factory())

    def admit(self, connection: _Connection) -> bool:
        if len(self.open) >= self.limit and not self._evict_one():
            self.on_drop("refused")
            return False
        assert connection.transport is not None
        self.open[connection.transport] = connection
        return True

    def _evict_one(self) -> bool:
        """Close the oldest connection waiting for a request, half-open ones first."""
        idle = [c for c in self.open.values() if not c.busy]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.served > 0)  # stable: oldest of the first kind
        assert victim.transport is not None
        del self.open[victim.transport]
        victim.transport.abort()
        self.on_drop("evicted")
        return True

    def release(self, connection: _Connection) -> None:
        if connection.transport is not None:
            self.open.pop(connection.transport, None)

    def mark(self, transport: asyncio.BaseTransport | None, *, busy: bool) -> None:
        connection = self.open.get(transport) if transport is not None else None
        if connection is not None:
            connection.busy = busy
            if not busy:
                connection.served += 1


class _OncePerMinute(logging.Filter):
    """asyncio logs every failed accept() (e.g. out of file descriptors): keep one a minute."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if "accept" not in message:
            return True
        now = time.monotonic()
        if now - self._last.get(message, -3600.0) < 60.0:
            return False
        self._last[message] = now
        return True


_ACCEPT_LOG_FILTER = _OncePerMinute()


def connection_limits(wanted: int) -> tuple[int, int]:
    """(connections, backlog): HTTP_MAX_CONNECTIONS, but with the connections accepted in
    one go (asyncio accepts up to `backlog` at a time, before any can be closed) never
    more than half the file descriptors the process may open: the rest is for storage,
    Telegram and the gateways."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return wanted, 128
    backlog = max(4, min(128, soft // 8))
    return max(4, min(wanted, soft // 2 - backlog)), backlog


class WebServer:
    def __init__(self, app: TillbotApp, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.guard: ConnectionGuard | None = None
        self.bound_port: int | None = None
        self.counter = CounterWeb(app)

    def routes(self) -> web.Application:
        web_app = web.Application(client_max_size=MAX_BODY, middlewares=[self._track])
        web_app.router.add_post("/telegram", self.telegram)
        web_app.router.add_post("/webhooks/{gateway}", self.gateway_callback)
        web_app.router.add_post("/webhooks/{gateway}/{tail:.*}", self.gateway_callback)
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/metrics", self.metrics)
        self.counter.add_routes(web_app.router)
        return web_app

    async def start(self) -> None:
        settings = self.app.bot_data.settings
        metrics = self.app.bot_data.metrics
        # aiohttp closes a connection that has no complete request this long after it
        # opened or after its last answer: half-open, silent and idle connections alike.
        self._runner = web.AppRunner(
            self.routes(),
            access_log=None,
            keepalive_timeout=settings.http_header_timeout_seconds,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        limit, backlog = connection_limits(settings.http_max_connections)
        self.guard = ConnectionGuard(
            server, limit, on_drop=lambda reason: metrics.http_connection_dropped(reason)
        )
        logging.getLogger("asyncio").addFilter(_ACCEPT_LOG_FILTER)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard, self.host, self.port, backlog=backlog, reuse_address=True
        )
        sockets = list(self._server.sockets)
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info(
            "HTTP server listening on port %s (at most %s connections)",
            self.bound_port,
            self.guard.limit,
        )

    async def stop(self) -> None:
        self.counter.close()  # live status streams end, so the shutdown does not wait on them
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Marks the connection busy while a request is handled (the guard spares it)."""
        if self.guard is None:
            return await handler(request)
        self.guard.mark(request.transport, busy=True)
        try:
            return await handler(request)
        finally:
            self.guard.mark(request.transport, busy=False)

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The body, or None when it did not arrive within HTTP_BODY_TIMEOUT_SECONDS."""
        timeout = self.app.bot_data.settings.http_body_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                return await request.read()
        except TimeoutError:
            return None

    @staticmethod
    def _too_slow() -> web.Response:
        return web.json_response(
            {"error": "request body too slow"}, status=408, headers={"Connection": "close"}
        )

    async def telegram(self, request: web.Request) -> web.Response:
        """Telegram's webhook: only with the secret header every instance agrees on."""
        expected = self.app.bot_data.settings.webhook_secret
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"ok": False, "error": "forbidden"}, status=403)
        body = await self._read_body(request)
        if body is None:
            return self._too_slow()
        try:
            data = json.loads(body)
            update = Update.de_json(data, self.app.bot)
        # RecursionError: JSON nested deeper than the parser goes is malformed too.
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return web.json_response({"ok": False, "error": "malformed update"}, status=400)
        if self.app.bot_data.inbox is not None:
            # Stored before the 200: an update Telegram counts as delivered is never lost.
            try:
                handle = await accept(self.app, update, body.decode("utf-8", "replace"))
            except StorageError as exc:
                # Storage takes no writes: handled without the inbox (a command is refused
                # with "I cannot save right now"; reads still work).
                log.warning("update %s handled without the inbox: %s", update.update_id, exc)
                handle = True
            if not handle:  # a redelivery of one done or under way
                return web.json_response({"ok": True})
        await self.app.update_queue.put(update)
        return web.json_response({"ok": True})

    async def gateway_callback(self, request: web.Request) -> web.Response:
        """A gateway says something changed: re-read it from the gateway API, then act."""
        name = request.match_info["gateway"]
        services = self.app.bot_data
        gateway = services.gateways.get(name)
        if gateway is None:
            return web.json_response({"error": "unknown gateway"}, status=404)
        body = await self._read_body(request)
        if body is None:
            return self._too_slow()
        try:
            await services.payments.handle_callback(name, body, request.content_type)
        except ValueError:
            return web.json_response({"error": "malformed callback"}, status=400)
        except (LookupError, GatewayUnsupported):
            return web.json_response({"error": "unknown payment"}, status=404)
        except GatewayError as exc:
            log.warning("callback from %s: re-reading the status failed: %s", name, exc)
            return web.json_response({"error": "try again"}, status=503)
        status, payload = gateway.callback_response()
        return web.json_response(dict(payload), status=status)

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when storage takes a write, its file is the one opened, and the watcher and
        the notifier are alive; 503 otherwise."""
        services = self.app.bot_data
        try:
            storage_ok = await services.repo.ping()
        except Exception:
            storage_ok = False
        watch = services.storage_watch
        database = await watch.tick() if watch is not None else None
        if storage_ok and watch is not None:
            storage_ok = await watch.takes_writes()
        watcher = services.watcher
        watcher_ok = watcher is not None and watcher.alive(services.clock())
        notifier_ok = services.notifier is not None and services.notifier.alive
        ok = storage_ok and database is None and watcher_ok and notifier_ok
        body: dict[str, object] = {
            "ok": ok, "storage": storage_ok, "watcher": watcher_ok, "notifier": notifier_ok
        }
        if database is not None:
            body["database"] = f"file {database} while running"
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text; with METRICS_TOKEN set, only for `Authorization: Bearer <it>`."""
        services = self.app.bot_data
        token = services.settings.metrics_token
        if token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            expected = token.get_secret_value().encode()
            if not (
                scheme.lower() == "bearer"
                and hmac.compare_digest(given.strip().encode(), expected)
            ):
                return web.json_response(
                    {"error": "unauthorized"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        counts = {status.value: n for status, n in (await services.repo.count_by_status()).items()}
        body = services.metrics.render(counts)
        return web.Response(
            body=body,
            headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"},
        )
