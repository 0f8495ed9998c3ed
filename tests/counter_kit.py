"""The counter Mini App in tests: the bot serving /app/ (webhook mode behind an HTTPS front,
as in production) and initData signed with the test's bot token, as Telegram signs it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from bot.webapp.auth import sign
from testkit.telegram.models import EmuUser
from testkit.tls import TlsFront
from tests.conftest import TOKEN, Harness, free_port


def init_data(user: EmuUser, *, token: str = TOKEN, age: float = 0.0, **extra: str) -> str:
    """initData for `user`, signed with `token` (the bot's own unless a test forges it)."""
    fields = {
        "query_id": "AAHdF6IQAAAAAN0XohDhrOrc",
        "user": json.dumps(
            {"id": user.id, "first_name": user.first_name, "language_code": user.language_code},
            separators=(",", ":"),
        ),
        "auth_date": str(int(time.time() - age)),
        **extra,
    }
    return sign(fields, token)


def auth(user: EmuUser, **kwargs: object) -> dict[str, str]:
    return {"Authorization": f"tma {init_data(user, **kwargs)}"}  # type: ignore[arg-type]


class CounterBot:
    """The running bot, its plain HTTP port (the page and the API) and an HTTP client."""

    def __init__(self, harness: Harness, port: int, client: httpx.AsyncClient) -> None:
        self.harness = harness
        self.port = port
        self.client = client

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/app/"


@asynccontextmanager
async def counter_bot(harness: Harness, **overrides: object) -> AsyncIterator[CounterBot]:
    """The bot on the sandbox gateway with PUBLIC_URL (an HTTPS front) and HTTP_PORT set
    (a test module's `counterbot` fixture enters it)."""
    port = free_port()
    front = TlsFront(port)
    await front.start()
    await harness.start(http_port=port, public_url=front.url, **overrides)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield CounterBot(harness, port, client)
    await harness.stop()
    await front.stop()
