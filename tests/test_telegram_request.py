"""The Bot API client (`bot/telegram/request.py`): errors are PTB's, as with PTB's own
request classes, so PTB's retry and error handling keep working."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web
from telegram import InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bot.telegram.request import AiohttpRequest


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _serve(handler: web.Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def test_a_refused_connection_is_a_network_error() -> None:
    request = AiohttpRequest(connect_timeout=2.0)
    await request.initialize()
    try:
        with pytest.raises(NetworkError, match="aiohttp"):
            await request.do_request(f"http://127.0.0.1:{_closed_port()}/getMe", "POST")
    finally:
        await request.shutdown()


async def test_a_slow_answer_times_out() -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"ok": True})

    runner, url = await _serve(slow)
    request = AiohttpRequest(read_timeout=0.2)
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.do_request(f"{url}/getMe", "POST")
    finally:
        await request.shutdown()
        await runner.cleanup()


async def test_parameters_and_files_arrive_as_telegram_reads_them() -> None:
    seen: dict[str, object] = {}

    async def record(req: web.Request) -> web.Response:
        form = await req.post()
        seen["chat_id"] = form["chat_id"]
        photo = form["photo"]
        assert isinstance(photo, web.FileField)
        seen["photo"] = (photo.filename, photo.content_type, photo.file.read())
        return web.json_response({"ok": True, "result": True}, status=400)

    runner, url = await _serve(record)
    request = AiohttpRequest()
    await request.initialize()
    try:
        data = RequestData(
            [
                RequestParameter.from_input("chat_id", 42),
                RequestParameter.from_input(
                    "photo", InputFile(b"\x89PNG-bytes", filename="qr.png")
                ),
            ]
        )
        status, body = await request.do_request(f"{url}/sendPhoto", "POST", data)
    finally:
        await request.shutdown()
        await runner.cleanup()
    # An HTTP error is returned for PTB to read, not raised here.
    assert status == 400 and b'"ok": true' in body
    assert seen["chat_id"] == "42"
    assert seen["photo"] == ("qr.png", "image/png", b"\x89PNG-bytes")


async def test_an_unopened_client_says_so() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:1/getMe", "POST")
