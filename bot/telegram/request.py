"""The bot's HTTP client for the Bot API: python-telegram-bot's `BaseRequest` over aiohttp.

Why not PTB's default `HTTPXRequest`: with many updates handled at once, httpx/httpcore's
connection pool spends most of the bot's CPU on its own bookkeeping (every request scans
every pooled connection). Measured in `bench/` (README, "Benchmarks"): a bare PTB echo bot
with 64 concurrent updates and a pool of 128 answered about 5× fewer messages a second than
with one update at a time. aiohttp's connector is already a dependency (the web server) and
keeps its pool in constant time per request.

Errors are translated as PTB's own request classes do: timeouts become `TimedOut`
(a pool wait is said to be one: the request was not sent), every other transport failure
`NetworkError`; HTTP answers, errors included, are returned for PTB to read.
"""

from __future__ import annotations

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_DEFAULT = BaseRequest.DEFAULT_NONE


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a bounded pool of connections to the Bot API server."""

    __slots__ = ("_connections", "_session", "_timeouts")

    def __init__(
        self,
        connection_pool_size: int = 1,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._connections = connection_pool_size
        self._timeouts = {
            "read": read_timeout,
            "write": write_timeout,
            "connect": connect_timeout,
            "pool": pool_timeout,
        }
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        """The read timeout used when a call names none."""
        return self._timeouts["read"]

    async def initialize(self) -> None:
        """Open the session (its connector is the pool)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.USER_AGENT},
                # The bot reads no proxy settings from the environment, as with httpx.
                trust_env=False,
            )

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _timeout(self, name: str, value: object) -> float | None:
        if value is _DEFAULT or not isinstance(value, int | float):
            return self._timeouts[name] if value is _DEFAULT else None
        return float(value)

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = _DEFAULT,
        write_timeout: object = _DEFAULT,
        connect_timeout: object = _DEFAULT,
        pool_timeout: object = _DEFAULT,
    ) -> tuple[int, bytes]:
        """Send one Bot API call; (status, body)."""
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = self._timeout("read", read_timeout)
        write = self._timeout("write", write_timeout)
        connect = self._timeout("connect", connect_timeout)
        pool = self._timeout("pool", pool_timeout)
        # aiohttp has no separate write timeout: the whole exchange is bounded by the sum
        # of the parts that apply to it, and each read by the read timeout.
        total = None if None in (read, write, connect) else (read or 0) + (write or 0) + (
            connect or 0
        )
        timeout = aiohttp.ClientTimeout(
            total=total, connect=pool, sock_connect=connect, sock_read=read
        )
        body: aiohttp.FormData | None = None
        if request_data is not None:
            body = aiohttp.FormData(quote_fields=False)
            for name, value in request_data.json_parameters.items():
                body.add_field(name, value)
            for name, (filename, content, mimetype) in request_data.multipart_data.items():
                body.add_field(name, content, filename=filename, content_type=mimetype)
        try:
            async with self._session.request(method, url, data=body, timeout=timeout) as res:
                return res.status, await res.read()
        except TimeoutError as err:
            raise TimedOut from err
        except aiohttp.ClientError as err:
            # The class name helps when the error's own message is empty.
            raise NetworkError(f"aiohttp.{type(err).__name__}: {err}") from err
