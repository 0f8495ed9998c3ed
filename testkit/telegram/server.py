"""The Bot API emulator's HTTP server: aiohttp app, routes, one request end to end."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Self

from aiohttp import BodyPartReader, web

from testkit.telegram.methods import BotApiMethods
from testkit.telegram.models import (
    ApiError,
)
from testkit.telegram.spec import UploadedFile
from testkit.telegram.state import EmulatorConfig, wire_json

logger = logging.getLogger("testkit.telegram")


class EmulatorServer(BotApiMethods):
    """The HTTP face: the aiohttp app, the Bot API and file routes, start and stop."""

    def __init__(self, config: EmulatorConfig) -> None:
        super().__init__(config)
        self.delay: float = 0.0
        self.method_delays: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the emulator is not started")
        return self._url

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url(...)``."""
        return f"{self.url}/file/bot"

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("already started")
        self._closing = False
        # access_log=None: the request path contains the bot token
        runner = web.AppRunner(
            self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        real_port = sockets[0].getsockname()[1] if sockets else port
        self._url = f"http://{host}:{real_port}"
        logger.info("Bot API emulator listening on %s", self._url)

    async def stop(self) -> None:
        self._closing = True
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ HTTP API

    async def _handle_api(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        raw_method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            self._violation(f"{raw_method}: request with a wrong bot token")
            body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            self._record(arrived, raw_method, {}, 401, "Unauthorized")
            return web.json_response(body, status=401)
        try:
            raw, files, from_form = await self._parse_body(request)
        except ApiError as exc:
            self._violation(exc.violation or exc.description)
            self._record(arrived, raw_method, {}, exc.status, exc.description)
            return web.json_response(exc.payload(), status=exc.status)
        status, body = await self.call(raw_method, raw, files, from_form=from_form, arrived=arrived)
        return web.json_response(body, status=status, dumps=wire_json)

    async def _parse_body(
        self, request: web.Request
    ) -> tuple[dict[str, Any], dict[str, UploadedFile], bool]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        from_form = True
        if request.method == "POST" and request.body_exists:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise ApiError(
                        400, "Bad Request: can't parse JSON body", violation="malformed JSON body"
                    ) from None
                if not isinstance(body, dict):
                    raise ApiError(
                        400,
                        "Bad Request: JSON body must be an object",
                        violation="JSON body not an object",
                    )
                params.update(body)
                from_form = not body and bool(params)
            elif ctype == "multipart/form-data":
                reader = await request.multipart()
                while True:
                    part = await reader.next()
                    if part is None:
                        break
                    if not isinstance(part, BodyPartReader) or part.name is None:
                        continue
                    if part.filename is not None:
                        data = await part.read(decode=False)
                        files[part.name] = UploadedFile(
                            field_name=part.name,
                            filename=part.filename,
                            content_type=part.headers.get(
                                "Content-Type", "application/octet-stream"
                            ),
                            data=bytes(data),
                        )
                    else:
                        params[part.name] = await part.text()
            else:
                form = await request.post()
                for key, value in form.items():
                    params[key] = value if isinstance(value, str) else str(value)
        return params, files, from_form

    async def call(
        self,
        raw_method: str,
        raw: dict[str, Any],
        files: dict[str, UploadedFile] | None = None,
        *,
        from_form: bool = False,
        arrived: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Execute one Bot API request; returns (HTTP status, response body)."""
        arrived = time.monotonic() if arrived is None else arrived
        files = files or {}
        self.stats.requests += 1
        method = self.spec.canonical_method(raw_method)
        if method is None:
            self._violation(f"{raw_method}: unknown Bot API method")
            self._record(arrived, raw_method, raw, 404, "Not Found")
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        delay = self.method_delays.get(method, self.delay)
        if delay > 0:
            await asyncio.sleep(delay)
        spec = self.spec.methods[method]
        merged = dict(raw)
        attachments: dict[str, UploadedFile] = {}
        for name, upload in files.items():
            if name in spec.fields and name not in merged:
                merged[name] = upload
            else:
                attachments[name] = upload
        params, problems = self.spec.coerce(method, merged, from_form=from_form)
        problems.extend(self.spec.validate(method, params))
        status = 200
        body: dict[str, Any]
        try:
            if problems:
                for p in problems:
                    self._violation(p)
                first = problems[0].removeprefix(f"{method}: ").removeprefix(f"{method}.")
                raise ApiError(400, f"Bad Request: {first}")
            fault = self._take_fault(method)
            if fault is not None and not fault.apply:
                raise self._fault_error(fault)
            if self.enforce_limits and self._is_limited_method(method):
                retry = self._rate_check(params)
                if retry:
                    self.stats.rate_limited += 1
                    raise ApiError(
                        429,
                        f"Too Many Requests: retry after {retry}",
                        parameters={"retry_after": retry},
                    )
            handler = self._handlers.get(method, self._true)
            try:
                result = await handler(params, attachments)
            except ApiError:
                raise
            except Exception as exc:
                # an emulator bug: fail loudly (as a violation) rather than silently
                logger.exception("emulator error in %s", method)
                raise ApiError(
                    500,
                    "Internal Server Error",
                    violation=f"emulator internal error: {type(exc).__name__}: {exc}",
                ) from None
            if fault is not None:
                raise self._fault_error(fault)
            body = {"ok": True, "result": result}
        except ApiError as exc:
            if exc.violation:
                self._violation(f"{method}: {exc.violation}")
            status, body = exc.status, exc.payload()
        if status == 429:
            self.stats.too_many_requests += 1
        if status >= 300:
            self.stats.errors += 1
        self._record(arrived, method, params, status, body.get("description"))
        logger.debug("%s -> %s", method, status)
        return status, body

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        stored = self._files_by_path.get(request.match_info["path"])
        if stored is not None and (stored.data or stored.url is None):
            return web.Response(
                body=stored.data,
                headers={"Content-Type": stored.mime_type or "application/octet-stream"},
            )
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )
