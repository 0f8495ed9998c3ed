"""The Bot API emulator, driven by the real python-telegram-bot against it over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import os
import signal
import struct
import sys
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllPrivateChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputMediaPhoto,
    InputTextMessageContent,
    MenuButtonCommands,
    Update,
)
from telegram.error import BadRequest, Conflict, EndPointNotFound, Forbidden, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChosenInlineResultHandler,
    CommandHandler,
    ContextTypes,
    InlineQueryHandler,
)

from testkit.telegram import BotApiEmulator, RateLimits
from testkit.telegram.format import EntityParseError, parse_formatted
from testkit.telegram.spec import load_spec
from testkit.tls import server_context

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*attribute `retry_after` will be of type"),
    pytest.mark.filterwarnings("ignore:Please use 'Bot.sendMessage' instead"),
]

TOKEN = "123456:TEST-token"
REPO = Path(__file__).resolve().parents[1]


def png(width: int = 2, height: int = 3, shade: int = 0) -> bytes:
    """A valid grayscale PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def seconds(value: int | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    emulator = BotApiEmulator(token=TOKEN, bot_username="tillbot_test_bot")
    await emulator.start(host="127.0.0.1", port=0)
    try:
        yield emulator
        emulator.assert_no_violations()
    finally:
        await emulator.stop()


@pytest.fixture
async def bot(emu: BotApiEmulator) -> AsyncIterator[Bot]:
    tg_bot = Bot(TOKEN, base_url=f"{emu.url}/bot", base_file_url=f"{emu.url}/file/bot")
    async with tg_bot:
        yield tg_bot


def build_app(emu: BotApiEmulator) -> Application[Any, Any, Any, Any, Any, Any]:
    return (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(f"{emu.url}/bot")
        .base_file_url(f"{emu.url}/file/bot")
        .build()
    )


async def run_app(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(timeout=1, allowed_updates=Update.ALL_TYPES)


async def stop_app(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    assert app.updater is not None
    await app.updater.stop()
    await app.stop()
    await app.shutdown()


# ----------------------------------------------------------------------------- basics


async def test_get_me_and_request_recording(emu: BotApiEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.username == "tillbot_test_bot"
    assert me.is_bot and me.supports_inline_queries
    assert [r.status for r in emu.calls("getMe")] == [200, 200]  # initialize() + get_me()
    assert emu.stats.per_method["getMe"] == 2
    assert emu.requests[0].ts <= time.monotonic()


async def test_application_command_keyboard_and_callback(emu: BotApiEmulator) -> None:
    app = build_app(emu)

    async def invoice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and context.args is not None
        amount, title = context.args[0], " ".join(context.args[1:])
        await update.message.reply_text(
            f"<b>Invoice</b> {amount} for {title} &amp; more",
            parse_mode="HTML",
            reply_markup=InlineKeyboardMarkup(
                [
                    [InlineKeyboardButton("Pay", callback_data="pay:1")],
                    [InlineKeyboardButton("Open", url="https://example.com/i/1")],
                ]
            ),
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer(f"got {query.data}", show_alert=True)
        await query.edit_message_text("Paid ✅")

    app.add_handler(CommandHandler("invoice", invoice))
    app.add_handler(CallbackQueryHandler(pressed))
    user = emu.add_user(user_id=1001, first_name="Mia", username="mia", language_code="en")
    await run_app(app)
    try:
        sent = await emu.send_message(user, "/invoice 12.50 Coffee")
        assert sent.entities == [{"type": "bot_command", "offset": 0, "length": 8}]
        reply = await emu.wait_for_message(1001, lambda m: "Invoice" in (m.text or ""))
        assert reply.text == "Invoice 12.50 for Coffee & more"
        assert reply.html == "<b>Invoice</b> 12.50 for Coffee &amp; more"
        assert reply.entities == [{"type": "bold", "offset": 0, "length": 7}]
        assert reply.message_id == sent.message_id + 1 and reply.from_bot

        cq = await emu.press_button(user, reply, "Pay")
        answer = await emu.wait_for_callback_answer(cq.id)
        assert answer["text"] == "got pay:1" and answer["show_alert"] is True
        edited = await emu.wait_for_message(1001, lambda m: m.edits == 1)
        assert edited is reply and edited.text == "Paid ✅"
        # editMessageText without reply_markup removes the keyboard, like Telegram
        assert edited.reply_markup is None
        assert edited.edit_history[0]["text"] == "Invoice 12.50 for Coffee & more"
        with pytest.raises(LookupError):
            await emu.press_button(user, edited, "Pay")
    finally:
        await stop_app(app)
    assert [m.from_bot for m in emu.messages(1001)] == [False, True]
    assert emu.bot_messages(1001) == [reply]
    assert emu.unanswered_callback_queries() == []


async def test_long_polling_waits_and_confirms(emu: BotApiEmulator, bot: Bot) -> None:
    user = emu.add_user(7, "Al")
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    await emu.send_message(user, "hello")
    updates = await poll
    assert loop.time() - started < 2
    assert len(updates) == 1 and updates[0].message is not None
    assert updates[0].message.text == "hello"
    # not confirmed yet: delivered again
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id]
    # offset confirms
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()
    assert emu.pending_updates == []


async def test_second_poller_conflicts_the_first(emu: BotApiEmulator, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=3))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    # a second bot instance (Bot's own connection pool holds one request at a time)
    async with Bot(TOKEN, base_url=f"{emu.url}/bot") as other:
        assert await other.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates"):
        await first
    assert time.monotonic() - started < 1


# ------------------------------------------------------------------------------ edits


async def test_edit_not_modified_and_not_found(emu: BotApiEmulator, bot: Bot) -> None:
    emu.add_user(1001, "Mia")
    kb = InlineKeyboardMarkup([[InlineKeyboardButton("A", callback_data="a")]])
    msg = await bot.send_message(1001, "<i>hi</i>", parse_mode="HTML", reply_markup=kb)
    # same text written differently but identical entities -> still not modified
    with pytest.raises(BadRequest) as err:
        await bot.edit_message_text(
            "<em>hi</em>",
            chat_id=1001,
            message_id=msg.message_id,
            parse_mode="HTML",
            reply_markup=kb,
        )
    assert err.value.message == (
        "Message is not modified: specified new message content and reply markup are exactly "
        "the same as a current content and reply markup of the message"
    )
    # only the markup changes -> modified
    edited = await bot.edit_message_text(
        "<i>hi</i>", chat_id=1001, message_id=msg.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, type(msg)) and edited.reply_markup is None
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(chat_id=1001, message_id=msg.message_id)

    with pytest.raises(BadRequest, match=r"^Message to edit not found$"):
        await bot.edit_message_text("x", chat_id=1001, message_id=999)
    assert await bot.delete_message(1001, msg.message_id) is True
    assert emu.messages(1001)[0].deleted
    with pytest.raises(BadRequest, match=r"^Message to edit not found$"):
        await bot.edit_message_text("x", chat_id=1001, message_id=msg.message_id)
    with pytest.raises(BadRequest, match=r"^Message to delete not found$"):
        await bot.delete_message(1001, msg.message_id)


async def test_chat_not_found_and_blocked_user(emu: BotApiEmulator, bot: Bot) -> None:
    user = emu.add_user(1001, "Mia")
    with pytest.raises(BadRequest, match=r"^Chat not found$"):
        await bot.send_message(555, "hi")
    emu.block(user)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(1001, "hi")
    emu.add_user(1002, "Shy", started=False)
    with pytest.raises(Forbidden, match="can't initiate conversation"):
        await bot.send_message(1002, "hi")
    await emu.send_message(user, "/start")  # writing to the bot unblocks it
    assert (await bot.send_message(1001, "welcome back")).text == "welcome back"


# ------------------------------------------------------------------- faults and limits


async def test_injected_429_surfaces_as_retry_after(emu: BotApiEmulator, bot: Bot) -> None:
    emu.add_user(1001, "Mia")
    emu.fail_next(1, status=429, retry_after=7, method="sendMessage")
    with pytest.raises(RetryAfter) as err:
        await bot.send_message(1001, "hi")
    assert seconds(err.value.retry_after) == 7
    body = emu.calls("sendMessage")[0]
    assert body.status == 429 and body.description == "Too Many Requests: retry after 7"
    assert (await bot.send_message(1001, "hi")).text == "hi"
    assert emu.stats.too_many_requests == 1 and emu.stats["429"] == 1
    assert len(emu.bot_messages(1001)) == 1


async def test_injected_server_error_and_lost_response(emu: BotApiEmulator, bot: Bot) -> None:
    from telegram.error import NetworkError

    emu.add_user(1001, "Mia")
    emu.fail_next(1, status=502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(1001, "one")
    assert emu.bot_messages(1001) == []
    emu.fail_next(1, status=500, method="sendMessage", apply=True)
    with pytest.raises(NetworkError):
        await bot.send_message(1001, "two")
    assert [m.text for m in emu.bot_messages(1001)] == ["two"]  # it went out anyway
    emu.delay = 0.2
    started = time.monotonic()
    await bot.get_me()
    assert time.monotonic() - started >= 0.2


async def test_rate_limit_private_chat_burst(emu: BotApiEmulator, bot: Bot) -> None:
    emu.add_user(1001, "Mia")
    emu.enforce_limits = True
    results = await asyncio.gather(
        *(bot.send_message(1001, f"m{i}") for i in range(4)), return_exceptions=True
    )
    limited = [r for r in results if isinstance(r, RetryAfter)]
    assert len(limited) == 1, results
    assert seconds(limited[0].retry_after) == 1
    assert emu.stats.rate_limited == 1 and emu.stats.too_many_requests == 1
    assert len(emu.bot_messages(1001)) == 3
    # another private chat has its own bucket
    emu.add_user(1002, "Bo")
    assert (await bot.send_message(1002, "x")).text == "x"


async def test_rate_limit_two_messages_same_instant_without_burst(
    emu: BotApiEmulator, bot: Bot
) -> None:
    emu.add_user(1001, "Mia")
    emu.limits.private_burst = 1
    emu.enforce_limits = True
    first, second = await asyncio.gather(
        bot.send_message(1001, "a"), bot.send_message(1001, "b"), return_exceptions=True
    )
    outcomes = sorted(type(r).__name__ for r in (first, second))
    assert outcomes == ["Message", "RetryAfter"]
    # group chats: 20 per minute
    emu.add_group(-100500, "Shop")
    for i in range(20):
        await bot.send_message(-100500, f"g{i}")
    with pytest.raises(RetryAfter) as err:
        await bot.send_message(-100500, "too many")
    assert 1 <= seconds(err.value.retry_after) <= 3
    # limits off: no 429
    emu.enforce_limits = False
    await bot.send_message(-100500, "ok now")


async def test_rate_limit_global(emu: BotApiEmulator, bot: Bot) -> None:
    emu.limits = RateLimits(global_per_second=30, global_burst=30)
    emu.limiter.limits = emu.limits
    emu.limiter.clock = lambda: 1000.0  # all in the same instant
    emu.enforce_limits = True
    for uid in range(1, 36):
        emu.add_user(uid, f"U{uid}")
    results = await asyncio.gather(
        *(bot.send_message(uid, "hi") for uid in range(1, 36)), return_exceptions=True
    )
    assert sum(isinstance(r, RetryAfter) for r in results) == 5
    assert emu.stats.rate_limited == 5


# --------------------------------------------------------------------- files and media


async def test_send_photo_get_file_and_edit_media(emu: BotApiEmulator, bot: Bot) -> None:
    emu.add_user(1001, "Mia")
    first, second = png(4, 5, 0), png(6, 7, 255)
    msg = await bot.send_photo(1001, first, caption="<b>QR</b>", parse_mode="HTML")
    rec = emu.messages(1001)[-1]
    assert rec.photo == first and rec.caption == "QR" and rec.caption_html == "<b>QR</b>"
    assert (msg.photo[-1].width, msg.photo[-1].height) == (4, 5)
    tg_file = await bot.get_file(msg.photo[-1].file_id)
    assert bytes(await tg_file.download_as_bytearray()) == first

    with pytest.raises(BadRequest, match="There is no text in the message to edit"):
        await bot.edit_message_text("x", chat_id=1001, message_id=msg.message_id)

    edited = await bot.edit_message_media(
        InputMediaPhoto(second, caption="new"), chat_id=1001, message_id=msg.message_id
    )
    assert not isinstance(edited, bool)
    assert rec.photo == second and rec.caption == "new" and rec.edits == 1
    assert rec.edit_history[0]["photo_file_id"] == msg.photo[-1].file_id
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_media(
            InputMediaPhoto(edited.photo[-1].file_id, caption="new"),
            chat_id=1001,
            message_id=msg.message_id,
        )
    # a file_id of a sent photo can be sent again
    again = await bot.send_photo(1001, edited.photo[-1].file_id)
    assert emu.messages(1001)[-1].photo == second and again.photo[-1].file_id
    await bot.edit_message_caption(chat_id=1001, message_id=again.message_id, caption="c")
    assert emu.messages(1001)[-1].caption == "c"


async def test_send_document_and_bad_photo(emu: BotApiEmulator, bot: Bot) -> None:
    emu.add_user(1001, "Mia")
    msg = await bot.send_document(1001, b"id,amount\n1,12.50\n", filename="invoices.csv")
    rec = emu.messages(1001)[-1]
    assert rec.document == b"id,amount\n1,12.50\n" and rec.document_filename == "invoices.csv"
    assert msg.document is not None and msg.document.file_name == "invoices.csv"
    with pytest.raises(BadRequest, match="Can't use file of type document as photo"):
        await bot.send_photo(1001, msg.document.file_id)
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(1001, b"<svg/>", filename="qr.svg")
    with pytest.raises(BadRequest, match="Failed to get http url content"):
        await bot.send_photo(1001, "http://127.0.0.1:9/qr.png")
    assert emu.violations == ["sendPhoto: photo 'qr.svg' is not a PNG/JPEG/GIF/WebP/BMP image"]
    emu.violations.clear()


# ----------------------------------------------------------------------- validation


async def test_unknown_parameter_and_method_are_violations(emu: BotApiEmulator, bot: Bot) -> None:
    emu.add_user(1001, "Mia")
    with pytest.raises(BadRequest, match=r"^Unknown parameter 'bogus'$"):
        await bot.send_message(1001, "hi", api_kwargs={"bogus": 1})
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendInvoiceToMoon", api_kwargs={"x": 1})
    assert emu.violations == [
        "sendMessage: unknown parameter 'bogus'",
        "sendInvoiceToMoon: unknown Bot API method",
    ]
    assert emu.calls("sendInvoiceToMoon")[0].status == 404
    with pytest.raises(AssertionError, match="2 Bot API violation"):
        emu.assert_no_violations()
    emu.violations.clear()
    emu.assert_no_violations()


async def test_markup_and_text_validation(emu: BotApiEmulator, bot: Bot) -> None:
    emu.add_user(1001, "Mia")
    long_data = InlineKeyboardMarkup([[InlineKeyboardButton("Pay", callback_data="x" * 65)]])
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(1001, "hi", reply_markup=long_data)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(1001, "x" * 4097)
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message(1001, "price < 5 <b>x", parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_photo(1001, png(), caption="c" * 1025)
    with pytest.raises(BadRequest, match="text buttons are unallowed"):
        await bot.do_api_request(
            "sendMessage",
            api_kwargs={
                "chat_id": 1001,
                "text": "t",
                "reply_markup": {"inline_keyboard": [[{"text": "x"}]]},
            },
        )
    with pytest.raises(BadRequest, match=r"(?i)inline_keyboard.0..0.: unknown field 'colour'"):
        await bot.do_api_request(
            "sendMessage",
            api_kwargs={
                "chat_id": 1001,
                "text": "t",
                "reply_markup": {
                    "inline_keyboard": [[{"text": "x", "url": "https://a.b", "colour": 1}]]
                },
            },
        )
    assert len(emu.violations) == 6, emu.violations
    assert any("callback_data of button 'Pay' is 65 bytes" in v for v in emu.violations)
    assert emu.bot_messages(1001) == []
    emu.violations.clear()


async def test_json_body_and_case_insensitive_method(emu: BotApiEmulator) -> None:
    emu.add_user(1001, "Mia")
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"{emu.url}/bot{TOKEN}/SENDMESSAGE",
            json={
                "chat_id": 1001,
                "text": "json",
                "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "a"}]]},
            },
        )
        assert resp.status_code == 200 and resp.json()["result"]["text"] == "json"
        resp = await client.post(f"{emu.url}/bot{TOKEN}/getMe", data={"foo": "1"})
        assert resp.status_code == 400 and resp.json()["ok"] is False
        resp = await client.post(f"{emu.url}/bot123:WRONG/getMe")
        assert resp.status_code == 401
    assert emu.bot_messages(1001)[0].reply_markup == {
        "inline_keyboard": [[{"text": "a", "callback_data": "a"}]]
    }
    assert len(emu.violations) == 2
    emu.violations.clear()


def test_spec_and_formatting_units() -> None:
    spec = load_spec()
    assert spec.canonical_method("sendmessage") == "sendMessage"
    params, problems = spec.coerce(
        "sendMessage",
        {
            "chat_id": "-100500",
            "text": "5",
            "disable_notification": "true",
            "reply_markup": '{"inline_keyboard": []}',
        },
        from_form=True,
    )
    assert problems == [] and params["chat_id"] == -100500 and params["text"] == "5"
    assert params["disable_notification"] is True and params["reply_markup"] == {
        "inline_keyboard": []
    }
    assert spec.validate("sendMessage", {"chat_id": 1}) == [
        "sendMessage: missing required parameter 'text'"
    ]
    errors = spec.validate(
        "setMyCommands", {"commands": [{"command": "a"}], "scope": {"type": "nope"}}
    )
    assert "setMyCommands.commands[0]: missing required field 'description' of BotCommand" in errors
    assert any("unknown BotCommandScope type 'nope'" in e for e in errors)

    parsed = parse_formatted("  <b>Hi</b> 👋 <a href='https://x.y'>link</a>\n", "HTML")
    assert parsed.text == "Hi 👋 link"
    assert parsed.entities == [
        {"type": "bold", "offset": 0, "length": 2},
        {
            "type": "text_link",
            "offset": 6,
            "length": 4,
            "url": "https://x.y",
        },  # 👋 = 2 UTF-16 units
    ]
    assert parse_formatted("*bold* 12\\.50", "MarkdownV2").text == "bold 12.50"
    with pytest.raises(EntityParseError, match="reserved"):
        parse_formatted("12.50", "MarkdownV2")
    with pytest.raises(EntityParseError, match="Unsupported start tag"):
        parse_formatted("<div>x</div>", "HTML")


# ----------------------------------------------------------------- inline mode


async def test_inline_query_choose_result_and_edit_inline(emu: BotApiEmulator) -> None:
    app = build_app(emu)

    async def on_inline(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.inline_query is not None
        query = update.inline_query.query
        await update.inline_query.answer(
            [
                InlineQueryResultArticle(
                    id="inv-1",
                    title=f"Invoice {query}",
                    input_message_content=InputTextMessageContent(
                        f"<b>Invoice</b> {query}", parse_mode="HTML"
                    ),
                    reply_markup=InlineKeyboardMarkup(
                        [[InlineKeyboardButton("Pay", callback_data="pay-inline")]]
                    ),
                )
            ],
            cache_time=0,
        )

    async def on_chosen(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chosen = update.chosen_inline_result
        assert chosen is not None and chosen.inline_message_id is not None
        await context.bot.edit_message_text(
            f"Invoice {chosen.query} (awaiting payment)",
            inline_message_id=chosen.inline_message_id,
            reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("Pay", callback_data="pay-inline")]]
            ),
        )

    async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.inline_message_id is not None and query.message is None
        await query.answer()
        await query.edit_message_reply_markup(None)

    app.add_handler(InlineQueryHandler(on_inline))
    app.add_handler(ChosenInlineResultHandler(on_chosen))
    app.add_handler(CallbackQueryHandler(on_press))
    user = emu.add_user(1001, "Mia")
    await run_app(app)
    try:
        qid = await emu.inline_query(user, "12.50 Coffee")
        answer = await emu.wait_for_inline_answer(qid)
        assert [r["id"] for r in answer["results"]] == ["inv-1"]
        rec = await emu.choose_inline_result(user, qid, "inv-1")
        assert rec.text == "Invoice 12.50 Coffee" and rec.inline_message_id in emu.inline_messages
        await emu.wait_for(lambda: rec.edits == 1)
        assert rec.text == "Invoice 12.50 Coffee (awaiting payment)"
        assert emu.calls("editMessageText")[-1].status == 200
        cq = await emu.press_button(user, rec, "pay-inline")
        await cq.wait_answer()
        await emu.wait_for(lambda: rec.edits == 2)
        assert rec.reply_markup is None
    finally:
        await stop_app(app)


# ---------------------------------------------------------------------- webhook


async def test_webhook_delivery_with_secret_and_retry(emu: BotApiEmulator, bot: Bot) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    failures = {"left": 1}

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        if failures["left"]:
            failures["left"] -= 1
            return web.Response(status=500)
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), body))
        return web.Response(text="ok")

    server_app = web.Application()
    server_app.router.add_post("/hook", hook)
    runner = web.AppRunner(server_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        user = emu.add_user(1001, "Mia")
        await emu.send_message(user, "queued before")
        with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
            await bot.set_webhook(f"http://127.0.0.1:{port}/hook")  # Telegram: HTTPS only
        emu.violations.clear()
        assert await bot.set_webhook(
            f"https://127.0.0.1:{port}/hook", secret_token="s3cr3t", drop_pending_updates=True
        )
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates()
        await emu.send_message(user, "/start")
        await emu.send_message(user, "second")
        await emu.wait_for(lambda: len(received) == 2)
        assert [secret for secret, _ in received] == ["s3cr3t", "s3cr3t"]
        assert [b["message"]["text"] for _, b in received] == ["/start", "second"]  # in order
        assert emu.stats.webhook_failures == 1 and emu.stats.webhook_deliveries == 2
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook") and info.pending_update_count == 0
        assert info.last_error_message is not None and "500" in info.last_error_message
        assert await bot.delete_webhook()
        await emu.send_message(user, "polling again")
        updates = await bot.get_updates(timeout=1)
        assert updates[-1].message is not None and updates[-1].message.text == "polling again"
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------- misc methods


async def test_commands_menu_chat_action_get_chat(emu: BotApiEmulator, bot: Bot) -> None:
    emu.add_user(1001, "Mia", username="mia")
    group = emu.add_group(-100500, "Shop")
    commands = [BotCommand("invoice", "Create an invoice"), BotCommand("help", "Help")]
    assert await bot.set_my_commands(commands)
    assert await bot.set_my_commands(
        commands[:1], scope=BotCommandScopeAllPrivateChats(), language_code="de"
    )
    assert [c.command for c in await bot.get_my_commands()] == ["invoice", "help"]
    assert emu.commands_for({"type": "all_private_chats"}, "de") == [
        {"command": "invoice", "description": "Create an invoice"}
    ]
    assert len(emu.commands) == 2
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    assert await bot.set_chat_menu_button(menu_button=MenuButtonCommands())
    assert (await bot.get_chat_menu_button()).type == "commands"
    assert await bot.send_chat_action(1001, "typing")
    chat = await bot.get_chat(group.id)
    assert chat.title == "Shop" and chat.type == "supergroup"
    assert (await bot.get_chat(1001)).username == "mia"
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Name", "x")])
    assert await bot.log_out() is True  # generic: validated, answered True
    emu.violations.clear()


async def test_group_privacy_forward_and_reply(emu: BotApiEmulator, bot: Bot) -> None:
    admin = emu.add_user(1, "Admin")
    merchant = emu.add_user(2, "Merchant", username="merch")
    group = emu.add_group(-100500, "Shop")
    await emu.send_message(admin, "just chatting", chat=group)
    await emu.send_message(admin, "/invoice@other_bot 1", chat=group)
    cmd = await emu.send_message(admin, "/invoice@tillbot_test_bot 5", chat=group)
    fwd = await emu.forward_message(from_user=admin, original_sender=merchant)
    updates = await bot.get_updates(timeout=0)
    texts = [u.message.text for u in updates if u.message]
    assert texts == ["/invoice@tillbot_test_bot 5", "Forwarded message"]
    origin = updates[-1].message.forward_origin if updates[-1].message else None
    assert origin is not None and origin.type == "user"
    assert origin.sender_user.id == merchant.id  # type: ignore[attr-defined]
    assert fwd.forward_origin is not None
    reply = await bot.send_message(group.id, "ok", reply_parameters={"message_id": cmd.message_id})  # type: ignore[arg-type]
    assert (
        reply.reply_to_message is not None and reply.reply_to_message.message_id == cmd.message_id
    )
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(group.id, "x", reply_parameters={"message_id": 999})  # type: ignore[arg-type]
    assert len(emu.messages(group.id)) == 4


# ------------------------------------------------------------------ standalone runner


async def test_standalone_runner_and_control_api() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "testkit.telegram",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--log-level",
        "DEBUG",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), line
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            r = await client.post("/_emu/users", json={"user_id": 1001, "first_name": "Mia"})
            assert r.status_code == 200 and r.json()["id"] == 1001
            r = await client.post(
                "/_emu/send_message", json={"user_id": 1001, "text": "/invoice 1"}
            )
            assert r.json()["text"] == "/invoice 1"
            async with Bot(TOKEN, base_url=f"{url}/bot") as remote_bot:
                updates = await remote_bot.get_updates(timeout=1)
                assert updates[0].message is not None and updates[0].message.text == "/invoice 1"
                await remote_bot.send_message(
                    1001,
                    "Pay",
                    reply_markup=InlineKeyboardMarkup(
                        [[InlineKeyboardButton("Pay", callback_data="p")]]
                    ),
                )
                r = await client.get("/_emu/messages", params={"chat_id": 1001})
                msgs = r.json()
                assert [m["from_bot"] for m in msgs] == [False, True]
                r = await client.post(
                    "/_emu/press_button",
                    json={
                        "user_id": 1001,
                        "chat_id": 1001,
                        "message_id": msgs[1]["message_id"],
                        "button": "Pay",
                    },
                )
                cq_id = r.json()["callback_query_id"]
                updates = await remote_bot.get_updates(offset=updates[-1].update_id + 1, timeout=1)
                assert updates[0].callback_query is not None
                assert updates[0].callback_query.id == cq_id
                await client.post("/_emu/fail_next", json={"n": 1, "status": 429, "retry_after": 3})
                with pytest.raises(RetryAfter):
                    await remote_bot.send_message(1001, "x")
                await client.post("/_emu/limits", json={"enforce": True, "private_burst": 1})
                await remote_bot.send_message(1001, "y")
                with pytest.raises(RetryAfter):
                    await remote_bot.send_message(1001, "z")
            r = await client.get("/_emu/requests", params={"method": "sendMessage"})
            assert [q["status"] for q in r.json()] == [200, 429, 200, 429]
            assert (await client.get("/_emu/violations")).json() == []
            assert (await client.get("/_emu/stats")).json()["too_many_requests"] == 2
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 10)
        except TimeoutError:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert b"sendMessage" in err  # debug log names the method ...
    assert TOKEN.encode() not in err  # ... and never the token


def test_recorded_request_json() -> None:
    emu = BotApiEmulator(token=TOKEN)
    user = emu.add_user(5, "X")
    assert json.loads(json.dumps(emu.chats[user.id].to_api()))["type"] == "private"


async def test_a_user_edits_a_message_edited_message_update(emu: BotApiEmulator, bot: Bot) -> None:
    """Update.edited_message: the new version of a message the bot knows, same message_id,
    with edit_date; a command keeps its bot_command entity."""
    user = emu.add_user(8, "Ed")
    sent = await emu.send_message(user, "/invoice 1250 Sofa")
    [first] = await bot.get_updates(timeout=0)
    await emu.edit_message(user, sent, "/invoice 12.50 Sofa")
    [edited] = await bot.get_updates(offset=first.update_id + 1, timeout=0)
    assert edited.message is None and edited.edited_message is not None
    message = edited.edited_message
    assert message.message_id == sent.message_id and message.text == "/invoice 12.50 Sofa"
    assert message.edit_date is not None
    assert message.entities[0].type == "bot_command" and message.entities[0].length == 8
    assert len(sent.edit_history) == 1
    with pytest.raises(ValueError):  # nobody edits another's (or the bot's) message
        await emu.edit_message(emu.add_user(9, "Eve"), sent, "/invoice 1 x")


async def test_lengths_are_utf16_code_units_after_entity_parsing(
    emu: BotApiEmulator, bot: Bot
) -> None:
    """Telegram's 4096 (text), 1024 (caption) and 200 (callback answer) limits count UTF-16
    code units of the parsed text: an emoji outside the BMP is 2, `&amp;` is 1, tags are 0."""
    emu.add_user(1001, "Mia")
    await bot.send_message(1001, "&amp;" * 4096, parse_mode="HTML")  # 4096 '&' after parsing
    await bot.send_photo(1001, png(), caption="<b>" + "😀" * 512 + "</b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
        await bot.send_photo(1001, png(), caption="😀" * 513)  # 513 code points, 1026 units
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(1001, "😀" * 2049)
    sent = await bot.send_message(
        1001, "x", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="d")]])
    )
    query = await emu.press_button(1001, sent.message_id, "b")
    with pytest.raises(BadRequest, match=r"(?i)message_too_long"):
        await bot.answer_callback_query(query.id, text="😀" * 101)
    assert len(emu.violations) == 3, emu.violations
    emu.violations.clear()
