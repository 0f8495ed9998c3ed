"""HTTPS on 127.0.0.1 for the simulators, the tests and the benchmarks.

Webhook mode needs an HTTPS `PUBLIC_URL` (Telegram and MixPay call only HTTPS URLs). In
production TLS ends at a load balancer or reverse proxy in front of `HTTP_PORT`; `TlsFront`
is that proxy for local runs: it serves HTTPS on 127.0.0.1 with a self-signed certificate
made for this purpose (`local-tls-cert.pem`, for 127.0.0.1 and localhost only; its key is
public, so it proves nothing outside a test) and forwards each request to the bot's plain
HTTP port.

The simulators (gateway callbacks) and the Bot API emulator (webhook deliveries) trust that
certificate in addition to the system's CAs (`client_context`). The bot itself never trusts
it: nothing here is used by `bot.app`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
from aiohttp import web

_HERE = Path(__file__).resolve().parent
LOCAL_CERT = _HERE / "local-tls-cert.pem"
LOCAL_KEY = _HERE / "local-tls-key.pem"
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)


def client_context() -> ssl.SSLContext:
    """The system's CAs plus the local test certificate (for simulators and tests)."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(LOCAL_CERT))
    return context


def server_context() -> ssl.SSLContext:
    """A server context presenting the local test certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(LOCAL_CERT), str(LOCAL_KEY))
    return context


class TlsFront:
    """An HTTPS reverse proxy on 127.0.0.1 in front of plain HTTP ports (round robin over
    `targets`, skipping ones that refuse the connection), like a load balancer ending TLS."""

    def __init__(self, targets: list[int] | int, *, timeout: float = 30.0) -> None:
        self.targets = [targets] if isinstance(targets, int) else list(targets)
        self.timeout = timeout
        self.port = 0
        self._next = 0
        self._runner: web.AppRunner | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=2**22)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context())
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._client = httpx.AsyncClient(timeout=self.timeout, trust_env=False)
        return self.url

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TlsFront:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        last_error: Exception | None = None
        for _ in range(len(self.targets)):
            port = self.targets[self._next % len(self.targets)]
            self._next += 1
            try:
                answer = await self._client.request(
                    request.method,
                    f"http://127.0.0.1:{port}{request.path_qs}",
                    content=body,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                last_error = exc
                continue
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            out.pop("content-encoding", None)
            return web.Response(status=answer.status_code, body=answer.content, headers=out)
        return web.Response(status=502, text=f"no backend answered: {last_error}")
