"""HTTP endpoints inside the bot process (when HTTP_PORT or PORT is set).

POST /telegram              Telegram's webhook; 403 without the right secret header
POST /webhooks/<gateway>/…  gateway callbacks: a hint to re-read the status from the API
GET  /healthz               storage reachable and watcher alive
GET  /metrics               Prometheus text format (prometheus-client)
"""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web
from telegram import Update

from bot.context import TillbotApp
from bot.gateways.base import GatewayError, GatewayUnsupported
from bot.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name


class WebServer:
    def __init__(self, app: TillbotApp, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    def routes(self) -> web.Application:
        web_app = web.Application(client_max_size=MAX_BODY)
        web_app.router.add_post("/telegram", self.telegram)
        web_app.router.add_post("/webhooks/{gateway}", self.gateway_callback)
        web_app.router.add_post("/webhooks/{gateway}/{tail:.*}", self.gateway_callback)
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/metrics", self.metrics)
        return web_app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.routes(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("HTTP server listening on port %s", self.bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def telegram(self, request: web.Request) -> web.Response:
        """Telegram's webhook: only with the secret header every instance agrees on."""
        expected = self.app.bot_data.settings.webhook_secret
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"ok": False, "error": "forbidden"}, status=403)
        try:
            data = json.loads(await request.read())
            update = Update.de_json(data, self.app.bot)
        except (ValueError, TypeError, KeyError, AttributeError):  # not an Update's shape
            return web.json_response({"ok": False, "error": "malformed update"}, status=400)
        await self.app.update_queue.put(update)
        return web.json_response({"ok": True})

    async def gateway_callback(self, request: web.Request) -> web.Response:
        """A gateway says something changed: re-read it from the gateway API, then act."""
        name = request.match_info["gateway"]
        services = self.app.bot_data
        gateway = services.gateways.get(name)
        if gateway is None:
            return web.json_response({"error": "unknown gateway"}, status=404)
        body = await request.read()
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
        """200 when storage answers and the watcher ticked recently; 503 otherwise."""
        services = self.app.bot_data
        try:
            storage_ok = await services.repo.ping()
        except Exception:
            storage_ok = False
        watcher = services.watcher
        watcher_ok = watcher is not None and watcher.alive(services.clock())
        notifier_ok = services.notifier is not None and services.notifier.alive
        ok = storage_ok and watcher_ok and notifier_ok
        body = {"ok": ok, "storage": storage_ok, "watcher": watcher_ok, "notifier": notifier_ok}
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        services = self.app.bot_data
        counts = {status.value: n for status, n in (await services.repo.count_by_status()).items()}
        body = services.metrics.render(counts)
        return web.Response(
            body=body,
            headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"},
        )
