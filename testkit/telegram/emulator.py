"""A local Telegram Bot API emulator for end-to-end tests, the demo and benchmarks.

The real python-telegram-bot ``Application`` talks to it over HTTP::

    emu = BotApiEmulator(token="123:ABC", bot_username="tillbot_test_bot")
    await emu.start()
    app = (ApplicationBuilder().token("123:ABC")
           .base_url(f"{emu.url}/bot").base_file_url(f"{emu.url}/file/bot").build())

Every request is validated against the Bot API description (``telegram_api.json``);
wrong requests are answered like Telegram would and recorded in ``emu.violations``.
Tests drive users through ``send_message``, ``press_button``, ``inline_query`` ...
and inspect what the bot did through ``messages()``, ``requests`` and ``stats``.

Standalone (for a bot in another process)::

    python -m testkit.telegram --port 8081 --token 123:ABC

which also exposes the driver controls as JSON under ``{url}/_emu/...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
import signal
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, ClientSession, ClientTimeout, TCPConnector, web

from testkit.telegram.format import EntityParseError, parse_formatted, utf16_len
from testkit.telegram.models import (
    ApiError,
    CallbackQueryRecord,
    EmuChat,
    EmulatorStats,
    EmuUser,
    InlineQueryRecord,
    MessageRecord,
    RateLimiter,
    RateLimits,
    RecordedRequest,
    StoredFile,
)
from testkit.telegram.spec import ApiSpec, UploadedFile, load_spec
from testkit.tls import client_context

__all__ = [
    "ApiError",
    "BotApiEmulator",
    "CallbackQueryRecord",
    "EmuChat",
    "EmuUser",
    "EmulatorStats",
    "InlineQueryRecord",
    "MessageRecord",
    "RateLimits",
    "RecordedRequest",
    "StoredFile",
    "main",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[dict[str, Any], dict[str, UploadedFile]], Awaitable[Any]]

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_BUTTON_PLAIN_FIELDS = frozenset({"text", "icon_custom_emoji_id", "style"})
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1"})
_MAX_TEXT = 4096
_MAX_CAPTION = 1024


@dataclass(slots=True)
class _Fault:
    remaining: int
    status: int
    retry_after: int | None
    method: str | None  # lower-cased
    description: str | None
    apply: bool


def _now() -> int:
    return int(time.time())


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _same_markup(new: dict[str, Any] | None, old: dict[str, Any] | None) -> bool:
    """Equal as message reply markup: only a non-empty inline keyboard counts."""

    def norm(markup: dict[str, Any] | None) -> str:
        rows = (markup or {}).get("inline_keyboard")
        return _canon(rows) if rows and any(rows) else "null"

    return norm(new) == norm(old)


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of PNG/GIF/JPEG/WebP/BMP data, None when it is not an image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data.startswith(b"BM") and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(int(w)), abs(int(h))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return 512, 512
    if data.startswith(b"\xff\xd8"):
        idx = 2
        while idx + 9 < len(data):
            if data[idx] != 0xFF:
                idx += 1
                continue
            marker = data[idx + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE):
                h, w = struct.unpack(">HH", data[idx + 5 : idx + 9])
                return int(w), int(h)
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                idx += 2
                continue
            seg = struct.unpack(">H", data[idx + 2 : idx + 4])[0]
            idx += 2 + int(seg)
        return 512, 512
    return None


class BotApiEmulator:
    """In-process fake of the Telegram Bot API server plus a driver for tests."""

    def __init__(
        self,
        token: str = "123:ABC",  # noqa: S107
        bot_username: str = "tillbot_test_bot",
        *,
        enforce_limits: bool = False,
        bot_first_name: str = "Tillbot",
        limits: RateLimits | None = None,
        privacy_mode: bool = True,
        strict_images: bool = True,
        spec: ApiSpec | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        head = token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 1
        self.spec = spec or load_spec()
        self.enforce_limits = enforce_limits
        self.limits = limits or RateLimits()
        self.clock = clock
        self.limiter = RateLimiter(self.limits, clock)
        # bots in privacy mode only see commands, replies and mentions in groups
        self.privacy_mode = privacy_mode
        # sendPhoto/editMessageMedia with bytes that are not an image -> IMAGE_PROCESS_FAILED
        self.strict_images = strict_images
        self.delay: float = 0.0
        self.method_delays: dict[str, float] = {}
        # webhook delivery: attempts per update and base of the exponential backoff
        self.webhook_max_attempts = 5
        self.webhook_retry_delay = 0.05

        self.violations: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.stats = EmulatorStats()
        self.users: dict[int, EmuUser] = {}
        self.chats: dict[int, EmuChat] = {}
        self.files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self.inline_messages: dict[str, MessageRecord] = {}
        self.callback_queries: dict[str, CallbackQueryRecord] = {}
        self.inline_queries: dict[str, InlineQueryRecord] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.menu_buttons: dict[int | None, dict[str, Any]] = {}
        self.webhook_url: str = ""
        self.webhook_secret: str | None = None
        self.webhook_info_extra: dict[str, Any] = {}
        self.allowed_updates: list[str] | None = None

        self._calls: dict[str, list[RecordedRequest]] = {}
        self._messages: dict[int, list[MessageRecord]] = {}
        self._message_index: dict[tuple[int, int], MessageRecord] = {}
        self._next_message_id: dict[int, int] = {}
        self._updates: deque[dict[str, Any]] = deque()
        self._update_ids = itertools.count(100_000)
        self._ids = itertools.count(1)
        self._faults: list[_Fault] = []
        self._poll_generation = 0
        self._changed = asyncio.Event()
        self._updates_event = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._session: ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_last_error: tuple[int, str] | None = None
        self._handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "logOut": self._true,
            "close": self._true,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageMedia": self._edit_message_media,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "deleteMessages": self._delete_messages,
            "answerCallbackQuery": self._answer_callback_query,
            "answerInlineQuery": self._answer_inline_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": self._set_chat_menu_button,
            "getChatMenuButton": self._get_chat_menu_button,
            "sendChatAction": self._send_chat_action,
            "getChat": self._get_chat,
            "getFile": self._get_file,
        }

    # =================================================================== lifecycle

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

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._add_control_routes(app)
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
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._webhook_task
            self._webhook_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotApiEmulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ==================================================================== driver

    def add_user(
        self,
        user_id: int,
        first_name: str = "User",
        username: str | None = None,
        language_code: str | None = "en",
        *,
        last_name: str | None = None,
        is_premium: bool = False,
        started: bool = True,
    ) -> EmuUser:
        """A Telegram user; their private chat with the bot has ``chat_id == user_id``.

        ``started=False`` models a user who never opened the bot: sending to them fails
        with 403 "bot can't initiate conversation with a user" until they write first.
        """
        user = EmuUser(
            id=user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            is_premium=is_premium,
            started=started,
        )
        self.users[user_id] = user
        self.chats[user_id] = EmuChat(
            id=user_id,
            type="private",
            first_name=first_name,
            last_name=last_name,
            username=username,
        )
        return user

    def add_group(
        self,
        chat_id: int,
        title: str = "Group",
        *,
        type: str | None = None,
        username: str | None = None,
        bot_is_member: bool = True,
    ) -> EmuChat:
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        kind = type or ("supergroup" if str(chat_id).startswith("-100") else "group")
        chat = EmuChat(
            id=chat_id, type=kind, title=title, username=username, bot_is_member=bot_is_member
        )
        self.chats[chat_id] = chat
        return chat

    def block(self, user: EmuUser | int) -> None:
        """The user blocks the bot: sending to them answers 403."""
        u = self._user(user)
        if not u.blocked:
            u.blocked = True
            self._chat_member_update(u, "member", "kicked")
        self._notify()

    def unblock(self, user: EmuUser | int) -> None:
        u = self._user(user)
        if u.blocked:
            u.blocked = False
            self._chat_member_update(u, "kicked", "member")
        self._notify()

    async def send_message(
        self,
        user: EmuUser | int,
        text: str,
        chat: EmuChat | int | None = None,
        *,
        reply_to: MessageRecord | int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> MessageRecord:
        """The user writes ``text``; enqueues a ``message`` update, returns the record.

        Text starting with ``/`` gets a ``bot_command`` entity. In groups, with privacy
        mode on, only commands, replies to the bot and mentions reach the bot.
        """
        u = self._user(user)
        c = self._chat_for(u, chat)
        ents = list(entities) if entities is not None else self._auto_entities(text)
        rec = self._new_message(c.id, from_bot=False, from_user_id=u.id)
        rec.text = text
        rec.html = text
        rec.entities = ents
        rec.reply_to_message_id = self._reply_id(c.id, reply_to)
        self._user_wrote(u, c)
        if self._bot_sees(c, rec):
            self._enqueue("message", self._message_api(rec))
        self._notify()
        return rec

    async def edit_message(
        self,
        user: EmuUser | int,
        message: MessageRecord,
        text: str,
        *,
        entities: list[dict[str, Any]] | None = None,
    ) -> MessageRecord:
        """The user edits their text message: an ``edited_message`` update (the new version,
        same ``message_id``, with ``edit_date``), if the bot saw the message or now does."""
        u = self._user(user)
        if message.from_bot or message.from_user_id != u.id or message.text is None:
            raise ValueError("users can only edit their own text messages")
        c = self._chat_for(u, message.chat_id)
        message.edit_history.append(message.snapshot())
        message.text = text
        message.html = text
        message.entities = list(entities) if entities is not None else self._auto_entities(text)
        message.edits += 1
        message.edit_date = max(_now(), message.date)
        if self._bot_sees(c, message):
            self._enqueue("edited_message", self._message_api(message))
        self._notify()
        return message

    async def send_photo(
        self,
        user: EmuUser | int,
        data: bytes,
        caption: str | None = None,
        chat: EmuChat | int | None = None,
    ) -> MessageRecord:
        u = self._user(user)
        c = self._chat_for(u, chat)
        rec = self._new_message(c.id, from_bot=False, from_user_id=u.id)
        rec.photo_file = self._store_file(data, "photo", "photo.jpg", "image/jpeg")
        rec.caption = caption
        rec.caption_html = caption
        self._user_wrote(u, c)
        if self._bot_sees(c, rec):
            self._enqueue("message", self._message_api(rec))
        self._notify()
        return rec

    async def send_document(
        self,
        user: EmuUser | int,
        data: bytes,
        filename: str = "file.bin",
        caption: str | None = None,
        chat: EmuChat | int | None = None,
        mime_type: str = "application/octet-stream",
    ) -> MessageRecord:
        u = self._user(user)
        c = self._chat_for(u, chat)
        rec = self._new_message(c.id, from_bot=False, from_user_id=u.id)
        rec.document_file = self._store_file(data, "document", filename, mime_type)
        rec.caption = caption
        rec.caption_html = caption
        self._user_wrote(u, c)
        if self._bot_sees(c, rec):
            self._enqueue("message", self._message_api(rec))
        self._notify()
        return rec

    async def forward_message(
        self,
        from_user: EmuUser | int,
        original_sender: EmuUser | EmuChat | str,
        text: str = "Forwarded message",
        chat: EmuChat | int | None = None,
        *,
        original_date: int | None = None,
    ) -> MessageRecord:
        """``from_user`` forwards a message written by ``original_sender`` to the bot.

        ``original_sender`` is a user (origin ``user``), a chat (``chat``/``channel``)
        or a name string (``hidden_user``: the sender hides their account).
        """
        u = self._user(from_user)
        c = self._chat_for(u, chat)
        date = original_date if original_date is not None else _now() - 60
        origin: dict[str, Any]
        if isinstance(original_sender, EmuUser):
            origin = {"type": "user", "date": date, "sender_user": original_sender.to_api()}
        elif isinstance(original_sender, EmuChat):
            if original_sender.type == "channel":
                origin = {
                    "type": "channel",
                    "date": date,
                    "chat": original_sender.to_api(),
                    "message_id": 1,
                }
            else:
                origin = {"type": "chat", "date": date, "sender_chat": original_sender.to_api()}
        else:
            origin = {"type": "hidden_user", "date": date, "sender_user_name": original_sender}
        rec = self._new_message(c.id, from_bot=False, from_user_id=u.id)
        rec.text = text
        rec.html = text
        rec.forward_origin = origin
        self._user_wrote(u, c)
        if self._bot_sees(c, rec):
            self._enqueue("message", self._message_api(rec))
        self._notify()
        return rec

    async def press_button(
        self,
        user: EmuUser | int,
        message: MessageRecord | int,
        button: str,
        *,
        chat: EmuChat | int | None = None,
    ) -> CallbackQueryRecord:
        """Press the inline button whose text or callback_data is ``button``.

        ``message`` is a record (or a message id in ``chat``, default the user's chat).
        Enqueues a ``callback_query`` update; await ``wait_for_callback_answer(cq.id)``
        or ``cq.wait_answer()`` for the bot's answerCallbackQuery.
        """
        u = self._user(user)
        if isinstance(message, int):
            chat_id = self._chat_for(u, chat).id
            found = self._message_index.get((chat_id, message))
            if found is None:
                raise LookupError(f"no message {message} in chat {chat_id}")
            rec = found
        else:
            rec = message
        if rec.deleted:
            raise LookupError(f"message {rec.message_id} was deleted")
        btn = rec.find_button(button)
        if btn is None:
            labels = [b.get("text") for b in rec.buttons]
            raise LookupError(f"no inline button {button!r} on message; buttons: {labels}")
        data = btn.get("callback_data")
        if not isinstance(data, str):
            raise ValueError(f"button {btn.get('text')!r} is not a callback button: {btn}")
        cq_id = str(4_000_000_000_000_000 + next(self._ids))
        payload: dict[str, Any] = {
            "id": cq_id,
            "from": u.to_api(),
            "chat_instance": str(-(abs(rec.chat_id) * 7919 + 17)),
            "data": data,
        }
        if rec.inline_message_id is not None:
            payload["inline_message_id"] = rec.inline_message_id
        else:
            payload["message"] = self._message_api(rec)
        cq = CallbackQueryRecord(
            id=cq_id,
            user_id=u.id,
            data=data,
            chat_id=rec.chat_id if rec.inline_message_id is None else None,
            message_id=rec.message_id if rec.inline_message_id is None else None,
            inline_message_id=rec.inline_message_id,
        )
        self.callback_queries[cq_id] = cq
        self._enqueue("callback_query", payload)
        self._notify()
        return cq

    async def wait_for_callback_answer(
        self,
        cq: CallbackQueryRecord | str,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """The answerCallbackQuery parameters the bot sent for this query."""
        rec = self.callback_queries[cq] if isinstance(cq, str) else cq
        return await self.wait_for(lambda: rec.answer, timeout)

    def unanswered_callback_queries(self) -> list[CallbackQueryRecord]:
        return [cq for cq in self.callback_queries.values() if cq.answer is None]

    async def inline_query(
        self,
        user: EmuUser | int,
        query: str,
        *,
        offset: str = "",
        chat_type: str = "sender",
    ) -> str:
        """The user types ``@bot query``; enqueues an ``inline_query`` update, returns its id."""
        u = self._user(user)
        qid = str(7_000_000_000_000_000 + next(self._ids))
        self.inline_queries[qid] = InlineQueryRecord(
            id=qid, user_id=u.id, query=query, offset=offset
        )
        self._enqueue(
            "inline_query",
            {
                "id": qid,
                "from": u.to_api(),
                "query": query,
                "offset": offset,
                "chat_type": chat_type,
            },
        )
        self._notify()
        return qid

    async def wait_for_inline_answer(self, query_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The answerInlineQuery parameters (``results`` decoded) for ``query_id``."""
        rec = self.inline_queries[query_id]
        return await self.wait_for(lambda: rec.answer, timeout)

    async def choose_inline_result(
        self,
        user: EmuUser | int,
        query_id: str,
        result_id: str,
        chat: EmuChat | int | None = None,
    ) -> MessageRecord:
        """The user picks a result of an answered inline query.

        Creates the inline message (content from the result's input_message_content
        and reply_markup), stored in ``inline_messages`` and, when ``chat`` is given,
        also in that chat. Enqueues ``chosen_inline_result``; like Telegram, it carries
        ``inline_message_id`` only when the result has an inline keyboard.
        """
        u = self._user(user)
        q = self.inline_queries[query_id]
        if q.answer is None:
            raise RuntimeError(f"inline query {query_id} has not been answered")
        results = q.answer.get("results") or []
        result = next(
            (r for r in results if isinstance(r, dict) and r.get("id") == result_id), None
        )
        if result is None:
            ids = [r.get("id") for r in results if isinstance(r, dict)]
            raise LookupError(f"no inline result {result_id!r}; results: {ids}")
        inline_id = "EMU" + secrets.token_urlsafe(18)
        if chat is not None:
            c = self._chat_for(u, chat)
            rec = self._new_message(c.id, from_bot=False, from_user_id=u.id)
        else:
            rec = MessageRecord(
                message_id=0, chat_id=0, from_bot=False, date=_now(), from_user_id=u.id
            )
        rec.inline_message_id = inline_id
        rec.via_bot = True
        self._fill_inline_content(rec, result)
        self.inline_messages[inline_id] = rec
        chosen: dict[str, Any] = {"result_id": result_id, "from": u.to_api(), "query": q.query}
        if rec.reply_markup and rec.reply_markup.get("inline_keyboard"):
            chosen["inline_message_id"] = inline_id
        self._enqueue("chosen_inline_result", chosen)
        if chat is not None:
            c = self._chat_for(u, chat)
            if (c.is_private and c.id == u.id) or not c.is_private:
                self._enqueue("message", self._message_api(rec))
        self._notify()
        return rec

    # ------------------------------------------------------------------ queries

    def messages(
        self, chat_id: int | EmuChat | EmuUser, *, include_deleted: bool = True
    ) -> list[MessageRecord]:
        """Messages of a chat in order, both directions."""
        cid = chat_id.id if isinstance(chat_id, EmuChat | EmuUser) else chat_id
        msgs = self._messages.get(cid, [])
        return list(msgs) if include_deleted else [m for m in msgs if not m.deleted]

    def bot_messages(
        self, chat_id: int | EmuChat | EmuUser, *, include_deleted: bool = True
    ) -> list[MessageRecord]:
        return [m for m in self.messages(chat_id, include_deleted=include_deleted) if m.from_bot]

    def message(self, chat_id: int, message_id: int) -> MessageRecord | None:
        return self._message_index.get((chat_id, message_id))

    def calls(self, method: str) -> list[RecordedRequest]:
        """Recorded requests of one method (case-insensitive name)."""
        canon = self.spec.canonical_method(method) or method
        return list(self._calls.get(canon, []))

    def file_bytes(self, file_id: str) -> bytes:
        return self.files[file_id].data

    def commands_for(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        return self.commands.get((_canon(scope or {"type": "default"}), language_code), [])

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return list(self._updates)

    def assert_no_violations(self) -> None:
        if self.violations:
            listing = "\n".join(f"  - {v}" for v in self.violations)
            raise AssertionError(f"{len(self.violations)} Bot API violation(s):\n{listing}")

    # ------------------------------------------------------------------ waiting

    async def wait_for(self, predicate: Callable[[], T | bool | None], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` returns something truthy and return it.

        Re-evaluated on every emulator state change (requests, updates) and at least
        every 100 ms for predicates over outside state. Raises TimeoutError.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            result = predicate()
            if result:
                return cast(T, result)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.1))

    async def wait_for_message(
        self,
        chat_id: int | EmuChat | EmuUser,
        predicate: Callable[[MessageRecord], bool] | None = None,
        timeout: float = 5.0,
        *,
        from_bot: bool | None = True,
    ) -> MessageRecord:
        """The newest non-deleted message of the chat matching ``predicate``.

        Only the bot's messages by default (``from_bot=None``: both directions).
        Edits are seen too: waiting for a message to change works.
        """
        cid = chat_id.id if isinstance(chat_id, EmuChat | EmuUser) else chat_id

        def find() -> MessageRecord | None:
            for m in reversed(self._messages.get(cid, [])):
                if m.deleted or (from_bot is not None and m.from_bot != from_bot):
                    continue
                if predicate is None or predicate(m):
                    return m
            return None

        return await self.wait_for(find, timeout)

    # ------------------------------------------------------------ fault control

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        retry_after: int | None = None,
        method: str | None = None,
        *,
        description: str | None = None,
        apply: bool = False,
    ) -> None:
        """Answer the next ``n`` requests (of ``method``, or any method except getUpdates)
        with an error. 429 carries ``parameters.retry_after`` (default 1).

        ``apply=True`` executes the request first and then answers the error, like a
        response lost on the way back.
        """
        self._faults.append(
            _Fault(
                remaining=n,
                status=status,
                retry_after=retry_after,
                method=method.lower() if method else None,
                description=description,
                apply=apply,
            )
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    # ============================================================ internals: state

    def _user(self, user: EmuUser | int) -> EmuUser:
        if isinstance(user, EmuUser):
            return user
        found = self.users.get(user)
        if found is None:
            raise LookupError(f"unknown user {user}; add_user() first")
        return found

    def _chat_for(self, user: EmuUser, chat: EmuChat | int | None) -> EmuChat:
        if chat is None:
            return self.chats[user.id]
        cid = chat.id if isinstance(chat, EmuChat) else chat
        found = self.chats.get(cid)
        if found is None:
            raise LookupError(f"unknown chat {cid}; add_group() first")
        return found

    def _user_wrote(self, user: EmuUser, chat: EmuChat) -> None:
        if chat.is_private:
            if user.blocked:
                self.unblock(user)
            user.started = True

    def _reply_id(self, chat_id: int, reply_to: MessageRecord | int | None) -> int | None:
        if reply_to is None:
            return None
        return reply_to.message_id if isinstance(reply_to, MessageRecord) else reply_to

    def _auto_entities(self, text: str) -> list[dict[str, Any]]:
        if not text.startswith("/"):
            return []
        cmd = text.split(maxsplit=1)[0] if text.strip() else text
        return [{"type": "bot_command", "offset": 0, "length": utf16_len(cmd)}]

    def _bot_sees(self, chat: EmuChat, rec: MessageRecord) -> bool:
        if chat.is_private:
            return True
        if not chat.bot_is_member:
            return False
        if not self.privacy_mode:
            return True
        text = rec.text if rec.text is not None else (rec.caption or "")
        if text.startswith("/"):
            cmd = text.split(maxsplit=1)[0]
            if "@" not in cmd:
                return True
            return cmd.split("@", 1)[1].lower() == self.bot_username.lower()
        if f"@{self.bot_username.lower()}" in text.lower():
            return True
        if rec.reply_to_message_id is not None:
            target = self._message_index.get((chat.id, rec.reply_to_message_id))
            return target is not None and target.from_bot
        return False

    def _new_message(
        self, chat_id: int, *, from_bot: bool, from_user_id: int | None
    ) -> MessageRecord:
        mid = self._next_message_id.get(chat_id, 0) + 1
        self._next_message_id[chat_id] = mid
        rec = MessageRecord(
            message_id=mid,
            chat_id=chat_id,
            from_bot=from_bot,
            date=_now(),
            from_user_id=from_user_id,
        )
        self._messages.setdefault(chat_id, []).append(rec)
        self._message_index[(chat_id, mid)] = rec
        return rec

    def _store_file(
        self,
        data: bytes,
        kind: str,
        filename: str | None,
        mime_type: str | None,
        *,
        url: str | None = None,
    ) -> StoredFile:
        n = next(self._ids)
        ext = (filename or "").rsplit(".", 1)[-1] if filename and "." in filename else "bin"
        if kind == "photo":
            ext = "jpg"
        size = _image_size(data) if kind == "photo" else None
        stored = StoredFile(
            file_id=f"EMU{kind[:3].upper()}{n:08d}{secrets.token_hex(6)}",
            file_unique_id=f"U{kind[:1]}{n:08d}",
            kind=kind,
            data=data,
            filename=filename,
            mime_type=mime_type,
            file_path=f"{kind}s/file_{n}.{ext}",
            width=size[0] if size else (512 if url else 0),
            height=size[1] if size else (512 if url else 0),
            url=url,
        )
        self.files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def _chat_member_update(self, user: EmuUser, old: str, new: str) -> None:
        chat = self.chats.get(user.id)
        if chat is None:
            return
        self._enqueue(
            "my_chat_member",
            {
                "chat": chat.to_api(),
                "from": user.to_api(),
                "date": _now(),
                "old_chat_member": {"status": old, "user": self.bot_user}
                | ({"until_date": 0} if old == "kicked" else {}),
                "new_chat_member": {"status": new, "user": self.bot_user}
                | ({"until_date": 0} if new == "kicked" else {}),
            },
        )

    def _message_api(self, rec: MessageRecord, *, with_reply: bool = True) -> dict[str, Any]:
        chat = self.chats.get(rec.chat_id)
        data: dict[str, Any] = {
            "message_id": rec.message_id,
            "date": rec.date,
            "chat": chat.to_api()
            if chat
            else {"id": rec.chat_id, "type": "private", "first_name": ""},
        }
        if rec.from_bot:
            data["from"] = self.bot_user
        elif rec.from_user_id is not None:
            user = self.users.get(rec.from_user_id)
            if user is not None:
                data["from"] = user.to_api()
        if rec.via_bot:
            data["via_bot"] = self.bot_user
        if rec.forward_origin is not None:
            data["forward_origin"] = rec.forward_origin
        if rec.text is not None:
            data["text"] = rec.text
            if rec.entities:
                data["entities"] = rec.entities
        if rec.photo_file is not None:
            data["photo"] = rec.photo_file.photo_sizes()
        if rec.document_file is not None:
            data["document"] = rec.document_file.document_api()
        if rec.caption is not None:
            data["caption"] = rec.caption
            if rec.caption_entities:
                data["caption_entities"] = rec.caption_entities
        if rec.reply_markup and "inline_keyboard" in rec.reply_markup:
            data["reply_markup"] = rec.reply_markup
        if rec.edit_date is not None:
            data["edit_date"] = rec.edit_date
        if with_reply and rec.reply_to_message_id is not None:
            target = self._message_index.get((rec.chat_id, rec.reply_to_message_id))
            if target is not None:
                data["reply_to_message"] = self._message_api(target, with_reply=False)
        return data

    def _fill_inline_content(self, rec: MessageRecord, result: dict[str, Any]) -> None:
        content = result.get("input_message_content")
        markup = result.get("reply_markup")
        rec.reply_markup = markup if isinstance(markup, dict) else None
        if isinstance(content, dict) and "message_text" in content:
            parsed = parse_formatted(
                str(content["message_text"]), content.get("parse_mode"), content.get("entities")
            )
            rec.text, rec.entities = parsed.text, parsed.entities
            rec.html, rec.parse_mode = str(content["message_text"]), content.get("parse_mode")
            return
        rtype = result.get("type")
        if rtype in ("photo", "document"):
            file_id = result.get(f"{rtype}_file_id")
            url = result.get(f"{rtype}_url")
            stored = self.files.get(file_id) if isinstance(file_id, str) else None
            if stored is None:
                stored = self._store_file(b"", rtype, None, result.get("mime_type"), url=str(url))
            if rtype == "photo":
                rec.photo_file = stored
            else:
                rec.document_file = stored
            caption = result.get("caption")
            if isinstance(caption, str):
                parsed = parse_formatted(
                    caption, result.get("parse_mode"), result.get("caption_entities")
                )
                rec.caption, rec.caption_entities, rec.caption_html = (
                    parsed.text,
                    parsed.entities,
                    caption,
                )
            return
        title = result.get("title")
        rec.text = str(title) if title is not None else ""
        rec.html = rec.text

    # --------------------------------------------------------- updates / notify

    def _notify(self) -> None:
        event = self._changed
        self._changed = asyncio.Event()
        event.set()

    def _wake(self) -> None:
        self._notify()
        event = self._updates_event
        self._updates_event = asyncio.Event()
        event.set()

    def _enqueue(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        allowed = set(self.allowed_updates) if self.allowed_updates else DEFAULT_ALLOWED_UPDATES
        if kind not in allowed:
            return None
        update = {"update_id": next(self._update_ids), kind: payload}
        self._updates.append(update)
        self.stats.updates += 1
        self._wake()
        if self.webhook_url:
            self._ensure_webhook_task()
        return update

    def _confirm(self, offset: int | None) -> None:
        if offset is None:
            return
        if offset < 0:
            keep = -offset
            while len(self._updates) > keep:
                self._updates.popleft()
            return
        while self._updates and self._updates[0]["update_id"] < offset:
            self._updates.popleft()

    # ======================================================== internals: HTTP API

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
        return web.json_response(body, status=status, dumps=_dumps)

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

    def _record(
        self, arrived: float, method: str, params: dict[str, Any], status: int, desc: str | None
    ) -> None:
        rec = RecordedRequest(
            ts=arrived, method=method, params=params, status=status, description=desc
        )
        self.requests.append(rec)
        self._calls.setdefault(method, []).append(rec)
        self.stats.per_method[method] = self.stats.per_method.get(method, 0) + 1
        self.stats.per_status[status] = self.stats.per_status.get(status, 0) + 1
        self._notify()

    def _violation(self, text: str) -> None:
        self.violations.append(text)
        self.stats.violations += 1
        logger.warning("Bot API violation: %s", text)

    def _take_fault(self, method: str) -> _Fault | None:
        low = method.lower()
        for fault in self._faults:
            if fault.method == low or (fault.method is None and low != "getupdates"):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                self.stats.injected_faults += 1
                return fault
        return None

    @staticmethod
    def _fault_error(fault: _Fault) -> ApiError:
        if fault.status == 429:
            retry = fault.retry_after if fault.retry_after is not None else 1
            return ApiError(
                429,
                fault.description or f"Too Many Requests: retry after {retry}",
                parameters={"retry_after": retry},
            )
        defaults = {
            400: "Bad Request: injected error",
            401: "Unauthorized",
            403: "Forbidden: bot was blocked by the user",
            404: "Not Found",
            409: "Conflict: injected conflict",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }
        return ApiError(fault.status, fault.description or defaults.get(fault.status, "Error"))

    @staticmethod
    def _is_limited_method(method: str) -> bool:
        if method == "sendChatAction":
            return False
        return method.startswith(("send", "edit", "copy", "forward"))

    def _rate_check(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if params.get("inline_message_id") is not None or chat_id is None:
            return self.limiter.acquire(None, True)
        chat = self.chats.get(chat_id) if isinstance(chat_id, int) else None
        private = (
            chat.is_private if chat is not None else (isinstance(chat_id, int) and chat_id > 0)
        )
        key: int | str = chat_id if isinstance(chat_id, int | str) else str(chat_id)
        return self.limiter.acquire(key, private)

    # ------------------------------------------------------------ helpers for handlers

    def _resolve_chat(self, chat_id: Any) -> EmuChat:
        chat: EmuChat | None = None
        if isinstance(chat_id, str) and chat_id.lstrip("-").isdigit():
            chat_id = int(chat_id)
        if isinstance(chat_id, int):
            chat = self.chats.get(chat_id)
        elif isinstance(chat_id, str) and chat_id.startswith("@"):
            name = chat_id[1:].lower()
            chat = next(
                (
                    c
                    for c in self.chats.values()
                    if not c.is_private and c.username and c.username.lower() == name
                ),
                None,
            )
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _check_can_write(self, chat: EmuChat) -> None:
        if chat.is_private:
            user = self.users.get(chat.id)
            if user is not None and user.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if user is not None and not user.started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        elif not chat.bot_is_member:
            kind = "supergroup" if chat.type == "supergroup" else "group"
            if chat.type == "channel":
                raise ApiError(403, "Forbidden: bot is not a member of the channel chat")
            raise ApiError(403, f"Forbidden: bot is not a member of the {kind} chat")

    def _parse_text(
        self,
        text: Any,
        parse_mode: Any,
        entities: Any,
        *,
        caption: bool = False,
    ) -> tuple[str, list[dict[str, Any]]]:
        what = "caption" if caption else "text"
        try:
            parsed = parse_formatted(
                str(text),
                parse_mode if isinstance(parse_mode, str) else None,
                entities if isinstance(entities, list) else None,
            )
        except EntityParseError as exc:
            raise ApiError(400, f"Bad Request: {exc}", violation=f"{what}: {exc}") from None
        limit = _MAX_CAPTION if caption else _MAX_TEXT
        if utf16_len(parsed.text) > limit:
            desc = "message caption is too long" if caption else "message is too long"
            raise ApiError(
                400,
                f"Bad Request: {desc}",
                violation=f"{what} is {utf16_len(parsed.text)} characters (max {limit})",
            )
        if not caption and not parsed.text:
            raise ApiError(
                400, "Bad Request: message text is empty", violation="text is empty after parsing"
            )
        return parsed.text, parsed.entities

    def _check_markup(self, markup: Any) -> dict[str, Any] | None:
        if not isinstance(markup, dict):
            return None
        if "inline_keyboard" not in markup:
            return markup
        rows = markup.get("inline_keyboard")
        if not isinstance(rows, list):
            return markup
        count = 0
        for row in rows:
            if not isinstance(row, list):
                continue
            for btn in row:
                if not isinstance(btn, dict):
                    continue
                count += 1
                self._check_button(btn)
        if count > 100:
            raise ApiError(
                400, "Bad Request: reply markup is too long", violation=f"{count} inline buttons"
            )
        return markup

    @staticmethod
    def _check_button(btn: dict[str, Any]) -> None:
        text = btn.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(
                400,
                "Bad Request: can't parse inline keyboard button: Text must be non-empty",
                violation=f"inline button without text: {btn}",
            )
        kinds = [k for k, v in btn.items() if k not in _BUTTON_PLAIN_FIELDS and v is not None]
        if not kinds:
            raise ApiError(
                400,
                "Bad Request: can't parse inline keyboard button: Text buttons are unallowed "
                "in the inline keyboard",
                violation=f"inline button {text!r} has no action (url, callback_data, ...)",
            )
        if len(kinds) > 1:
            raise ApiError(
                400,
                "Bad Request: can't parse inline keyboard button: exactly one of the optional "
                "fields must be used",
                violation=f"inline button {text!r} has several actions: {kinds}",
            )
        data = btn.get("callback_data")
        if data is not None:
            size = len(str(data).encode("utf-8"))
            if not 1 <= size <= 64:
                raise ApiError(
                    400,
                    "Bad Request: BUTTON_DATA_INVALID",
                    violation=f"callback_data of button {text!r} is {size} bytes (1-64 allowed)",
                )
        url = btn.get("url")
        if url is not None:
            parts = urlsplit(str(url))
            if parts.scheme not in ("http", "https", "tg") or (
                parts.scheme != "tg" and not parts.netloc
            ):
                raise ApiError(
                    400,
                    f"Bad Request: inline keyboard button URL '{url}' is invalid: Wrong HTTP URL",
                    violation=f"invalid button URL {url!r}",
                )

    def _resolve_file(
        self, value: Any, attachments: dict[str, UploadedFile], kind: str
    ) -> StoredFile:
        if isinstance(value, UploadedFile):
            return self._stored_upload(value, kind)
        if not isinstance(value, str) or not value:
            raise ApiError(
                400, "Bad Request: file must be non-empty", violation=f"no {kind} file given"
            )
        if value.startswith("attach://"):
            part = attachments.get(value.removeprefix("attach://"))
            if part is None:
                raise ApiError(
                    400,
                    "Bad Request: wrong file identifier/HTTP URL specified",
                    violation=f"{value} refers to no uploaded part",
                )
            return self._stored_upload(part, kind)
        if value.startswith(("http://", "https://")):
            host = (urlsplit(value).hostname or "").lower()
            if host in _LOCAL_HOSTS or host.endswith(".local"):
                raise ApiError(400, "Bad Request: failed to get HTTP URL content")
            return self._store_file(b"", kind, value.rsplit("/", 1)[-1] or None, None, url=value)
        stored = self.files.get(value)
        if stored is None:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if stored.kind != kind and {stored.kind, kind} <= {"photo", "document"}:
            raise ApiError(
                400,
                f"Bad Request: can't use file of type {stored.kind.capitalize()} as "
                f"{kind.capitalize()}",
            )
        return stored

    def _stored_upload(self, upload: UploadedFile, kind: str) -> StoredFile:
        if not upload.data:
            raise ApiError(
                400, "Bad Request: file must be non-empty", violation="empty file upload"
            )
        if kind == "photo":
            if len(upload.data) > 10 * 1024 * 1024:
                raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
            if self.strict_images and _image_size(upload.data) is None:
                raise ApiError(
                    400,
                    "Bad Request: IMAGE_PROCESS_FAILED",
                    violation=f"photo {upload.filename!r} is not a PNG/JPEG/GIF/WebP/BMP image",
                )
        elif len(upload.data) > 50 * 1024 * 1024:
            raise ApiError(413, "Request Entity Too Large")
        return self._store_file(upload.data, kind, upload.filename, upload.content_type)

    def _check_reply(self, chat: EmuChat, params: dict[str, Any]) -> int | None:
        rp = params.get("reply_parameters")
        if not isinstance(rp, dict):
            return None
        target_chat = rp.get("chat_id", chat.id)
        mid = rp.get("message_id")
        target = self._message_index.get((target_chat, mid)) if isinstance(mid, int) else None
        if target is None or target.deleted:
            if rp.get("allow_sending_without_reply"):
                return None
            raise ApiError(400, "Bad Request: message to be replied not found")
        return target.message_id if target_chat == chat.id else None

    def _target(self, params: dict[str, Any]) -> tuple[MessageRecord, bool]:
        """The message an edit refers to; True when it is an inline message."""
        inline_id = params.get("inline_message_id")
        if inline_id is not None:
            rec = self.inline_messages.get(str(inline_id))
            if rec is None:
                raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
            return rec, True
        chat_id, message_id = params.get("chat_id"), params.get("message_id")
        if chat_id is None or message_id is None:
            raise ApiError(
                400,
                "Bad Request: message identifier is not specified",
                violation="neither chat_id+message_id nor inline_message_id given",
            )
        chat = self._resolve_chat(chat_id)
        self._check_can_write(chat)
        rec = (
            self._message_index.get((chat.id, message_id)) if isinstance(message_id, int) else None
        )
        if rec is None or rec.deleted:
            raise ApiError(400, "Bad Request: message to edit not found")
        if not rec.from_bot:
            raise ApiError(400, "Bad Request: message can't be edited")
        return rec, False

    # ------------------------------------------------------------------ methods

    async def _true(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return True

    async def _get_me(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return self.bot_user | {
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": True,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if self.webhook_url:
            raise ApiError(409, WEBHOOK_CONFLICT)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self.allowed_updates = [str(a) for a in allowed] or None
        offset = params.get("offset")
        self._confirm(offset if isinstance(offset, int) else None)
        limit = params.get("limit", 100)
        limit = min(max(limit if isinstance(limit, int) else 100, 1), 100)
        timeout = params.get("timeout", 0)
        timeout = max(float(timeout) if isinstance(timeout, int | float) else 0.0, 0.0)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake()  # an older waiting getUpdates ends with 409
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, POLL_CONFLICT)
            if self.webhook_url:
                raise ApiError(409, WEBHOOK_CONFLICT)
            if self._updates:
                return list(itertools.islice(self._updates, limit))
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                return []
            event = self._updates_event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def _set_webhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params, files)
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:  # Telegram takes only HTTPS
            raise ApiError(
                400,
                "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
                violation=f"bad webhook URL {url!r}",
            )
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_RE.fullmatch(str(secret)):
            raise ApiError(
                400,
                "Bad Request: secret token contains unallowed characters",
                violation="secret_token must be 1-256 characters A-Z, a-z, 0-9, _ and -",
            )
        if params.get("drop_pending_updates"):
            self._updates.clear()
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self.allowed_updates = [str(a) for a in allowed] or None
        self.webhook_url = url
        self.webhook_secret = str(secret) if secret is not None else None
        self.webhook_info_extra = {
            "max_connections": int(params.get("max_connections") or 40),
        }
        if params.get("ip_address"):
            self.webhook_info_extra["ip_address"] = params["ip_address"]
        self._webhook_last_error = None
        self._poll_generation += 1  # a waiting getUpdates ends with 409
        self._wake()
        self._ensure_webhook_task()
        return True

    async def _delete_webhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook_url = ""
        self.webhook_secret = None
        self.webhook_info_extra = {}
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            self._webhook_task = None
        return True

    async def _get_webhook_info(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        info: dict[str, Any] = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook_url:
            info.update(self.webhook_info_extra)
            if self.allowed_updates:
                info["allowed_updates"] = self.allowed_updates
            if self._webhook_last_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_last_error
        return info

    async def _send_message(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        self._check_can_write(chat)
        text, entities = self._parse_text(
            params.get("text", ""), params.get("parse_mode"), params.get("entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = self._check_reply(chat, params)
        rec = self._new_message(chat.id, from_bot=True, from_user_id=None)
        rec.text, rec.entities = text, entities
        rec.html, rec.parse_mode = str(params.get("text", "")), params.get("parse_mode")
        rec.reply_markup = markup
        rec.reply_to_message_id = reply_to
        return self._message_api(rec)

    async def _send_media(
        self, params: dict[str, Any], files: dict[str, UploadedFile], kind: str
    ) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        self._check_can_write(chat)
        caption_raw = params.get("caption")
        caption: str | None = None
        caption_entities: list[dict[str, Any]] = []
        if caption_raw is not None:
            caption, caption_entities = self._parse_text(
                caption_raw, params.get("parse_mode"), params.get("caption_entities"), caption=True
            )
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = self._check_reply(chat, params)
        stored = self._resolve_file(params.get(kind), files, kind)
        rec = self._new_message(chat.id, from_bot=True, from_user_id=None)
        if kind == "photo":
            rec.photo_file = stored
        else:
            rec.document_file = stored
        if caption_raw is not None:
            rec.caption, rec.caption_entities = caption or None, caption_entities
            rec.caption_html = str(caption_raw)
            rec.parse_mode = params.get("parse_mode")
        rec.reply_markup = markup
        rec.reply_to_message_id = reply_to
        return self._message_api(rec)

    async def _send_photo(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return await self._send_media(params, files, "photo")

    async def _send_document(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return await self._send_media(params, files, "document")

    async def _edit_message_text(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        if params.get("text") is None:
            raise ApiError(
                400, "Bad Request: message text is empty", violation="editMessageText without text"
            )
        text, entities = self._parse_text(
            params["text"], params.get("parse_mode"), params.get("entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        rec, inline = self._target(params)
        if rec.text is None:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        if text == rec.text and entities == rec.entities and _same_markup(markup, rec.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        rec.edit_history.append(rec.snapshot())
        rec.text, rec.entities = text, entities
        rec.html, rec.parse_mode = str(params["text"]), params.get("parse_mode")
        rec.reply_markup = markup
        return self._apply_edit_after(rec, inline)

    def _apply_edit_after(self, rec: MessageRecord, inline: bool) -> Any:
        # the snapshot of the previous content is taken by the caller before changing it
        rec.edits += 1
        rec.edit_date = _now()
        if not inline:
            return self._message_api(rec)
        return True

    def _parse_caption(
        self, raw: Any, parse_mode: Any, entities: Any
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """A caption as Telegram stores it: no caption at all when none was given."""
        if raw is None:
            return None, []
        return self._parse_text(raw, parse_mode, entities, caption=True)

    async def _edit_message_caption(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        raw = params.get("caption")
        caption, entities = self._parse_caption(
            raw, params.get("parse_mode"), params.get("caption_entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        rec, inline = self._target(params)
        if rec.photo_file is None and rec.document_file is None:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        new_caption = caption or None
        if (
            new_caption == rec.caption
            and entities == rec.caption_entities
            and _same_markup(markup, rec.reply_markup)
        ):
            raise ApiError(400, NOT_MODIFIED)
        rec.edit_history.append(rec.snapshot())
        rec.caption, rec.caption_entities = new_caption, entities
        rec.caption_html = None if raw is None else str(raw)
        rec.reply_markup = markup
        return self._apply_edit_after(rec, inline)

    async def _edit_message_media(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        media = params.get("media")
        if not isinstance(media, dict):
            raise ApiError(
                400,
                "Bad Request: can't parse InputMedia JSON object",
                violation="media is not an object",
            )
        mtype = media.get("type")
        if mtype not in ("photo", "document"):
            raise ApiError(
                400,
                f"Bad Request: unsupported media type {mtype!r} in the emulator",
                violation=f"editMessageMedia with media type {mtype!r} (emulated: photo, document)",
            )
        raw_caption = media.get("caption")
        caption, entities = self._parse_caption(
            raw_caption, media.get("parse_mode"), media.get("caption_entities")
        )
        markup = self._check_markup(params.get("reply_markup"))
        rec, inline = self._target(params)
        if rec.photo_file is None and rec.document_file is None:
            raise ApiError(400, "Bad Request: there is no media in the message to edit")
        media_ref = media.get("media")
        current = rec.photo_file if mtype == "photo" else rec.document_file
        if (
            isinstance(media_ref, str)
            and current is not None
            and media_ref == current.file_id
            and (caption or None) == rec.caption
            and _same_markup(markup, rec.reply_markup)
        ):
            raise ApiError(400, NOT_MODIFIED)
        stored = self._resolve_file(media_ref, files, str(mtype))
        rec.edit_history.append(rec.snapshot())
        if mtype == "photo":
            rec.photo_file, rec.document_file = stored, None
        else:
            rec.photo_file, rec.document_file = None, stored
        rec.caption, rec.caption_entities = caption or None, entities
        rec.caption_html = None if raw_caption is None else str(raw_caption)
        rec.reply_markup = markup
        return self._apply_edit_after(rec, inline)

    async def _edit_message_reply_markup(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        markup = self._check_markup(params.get("reply_markup"))
        rec, inline = self._target(params)
        if _same_markup(markup, rec.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        rec.edit_history.append(rec.snapshot())
        rec.reply_markup = markup
        return self._apply_edit_after(rec, inline)

    async def _delete_message(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        mid = params["message_id"]
        rec = self._message_index.get((chat.id, mid)) if isinstance(mid, int) else None
        if rec is None or rec.deleted:
            raise ApiError(400, "Bad Request: message to delete not found")
        if not chat.is_private and not rec.from_bot:
            raise ApiError(400, "Bad Request: message can't be deleted")
        rec.deleted = True
        return True

    async def _delete_messages(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        ids = params.get("message_ids") or []
        if not 1 <= len(ids) <= 100:
            raise ApiError(
                400, "Bad Request: too many messages to delete", violation="1-100 message_ids"
            )
        for mid in ids:
            rec = self._message_index.get((chat.id, mid)) if isinstance(mid, int) else None
            if rec is not None:
                rec.deleted = True
        return True

    async def _answer_callback_query(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        cq = self.callback_queries.get(str(params["callback_query_id"]))
        text = params.get("text")
        if isinstance(text, str) and utf16_len(text) > 200:  # Telegram counts UTF-16 units
            raise ApiError(
                400,
                "Bad Request: MESSAGE_TOO_LONG",
                violation=f"callback answer text is {utf16_len(text)} UTF-16 units (max 200)",
            )
        if cq is None or cq.answer is not None:
            raise ApiError(400, QUERY_TOO_OLD)
        cq.answer = dict(params)
        cq.answered.set()
        return True

    async def _answer_inline_query(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        q = self.inline_queries.get(str(params["inline_query_id"]))
        results = params.get("results") or []
        if len(results) > 50:
            raise ApiError(
                400,
                "Bad Request: RESULTS_TOO_MUCH",
                violation=f"{len(results)} inline results (max 50)",
            )
        seen: set[str] = set()
        for res in results:
            if not isinstance(res, dict):
                continue
            rid = str(res.get("id", ""))
            if not 1 <= len(rid.encode()) <= 64:
                raise ApiError(
                    400, "Bad Request: RESULT_ID_INVALID", violation=f"inline result id {rid!r}"
                )
            if rid in seen:
                raise ApiError(
                    400,
                    "Bad Request: RESULT_ID_DUPLICATE",
                    violation=f"duplicate inline result id {rid!r}",
                )
            seen.add(rid)
            self._check_markup(res.get("reply_markup"))
            content = res.get("input_message_content")
            if isinstance(content, dict) and "message_text" in content:
                self._parse_text(
                    content["message_text"], content.get("parse_mode"), content.get("entities")
                )
            if isinstance(res.get("caption"), str):  # 0-1024 characters after entity parsing
                self._parse_text(
                    res["caption"], res.get("parse_mode"), res.get("caption_entities"), caption=True
                )
        if q is None or q.answer is not None:
            raise ApiError(400, QUERY_TOO_OLD)
        q.answer = dict(params)
        q.answered.set()
        return True

    def _command_key(self, params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return _canon(scope), str(params.get("language_code") or "")

    async def _set_my_commands(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        commands = params.get("commands") or []
        if len(commands) > 100:
            raise ApiError(
                400,
                "Bad Request: too many commands",
                violation=f"{len(commands)} commands (max 100)",
            )
        for cmd in commands:
            if not isinstance(cmd, dict):
                continue
            name = str(cmd.get("command", ""))
            desc = str(cmd.get("description", ""))
            if not _COMMAND_RE.fullmatch(name):
                raise ApiError(
                    400,
                    "Bad Request: BOT_COMMAND_INVALID",
                    violation=f"command {name!r}: 1-32 chars of lowercase a-z, 0-9 and _",
                )
            if not 1 <= len(desc) <= 256:
                raise ApiError(
                    400,
                    "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID",
                    violation=f"command {name!r}: description must be 1-256 characters",
                )
        lang = params.get("language_code")
        if lang and not re.fullmatch(r"[a-z]{2}", str(lang)):
            raise ApiError(
                400, "Bad Request: LANG_CODE_INVALID", violation=f"language_code {lang!r}"
            )
        key = self._command_key(params)
        if commands:
            self.commands[key] = [dict(c) for c in commands if isinstance(c, dict)]
        else:
            self.commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return self.commands.get(self._command_key(params), [])

    async def _delete_my_commands(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        self.commands.pop(self._command_key(params), None)
        return True

    async def _set_chat_menu_button(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        chat_id = params.get("chat_id")
        if chat_id is not None:
            chat_id = self._resolve_chat(chat_id).id
        self.menu_buttons[chat_id] = params.get("menu_button") or {"type": "default"}
        return True

    async def _get_chat_menu_button(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        chat_id = params.get("chat_id")
        if chat_id is not None:
            chat_id = self._resolve_chat(chat_id).id
        return self.menu_buttons.get(chat_id) or self.menu_buttons.get(None) or {"type": "default"}

    async def _send_chat_action(
        self, params: dict[str, Any], files: dict[str, UploadedFile]
    ) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        if params.get("action") not in CHAT_ACTIONS:
            raise ApiError(
                400,
                "Bad Request: wrong parameter action in request",
                violation=f"unknown chat action {params.get('action')!r}",
            )
        self._check_can_write(chat)
        return True

    async def _get_chat(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        chat = self._resolve_chat(params["chat_id"])
        info = chat.to_api()
        info.update(
            {
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                },
            }
        )
        if chat.is_private:
            user = self.users.get(chat.id)
            if user is not None and user.username:
                info["username"] = user.username
        return info

    async def _get_file(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        stored = self.files.get(str(params["file_id"]))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.url is not None and not stored.data:
            raise ApiError(400, "Bad Request: file is temporarily unavailable")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

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

    # ================================================================= webhook

    def _ensure_webhook_task(self) -> None:
        if self._closing or not self.webhook_url:
            return
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop())

    async def _webhook_loop(self) -> None:
        while self.webhook_url and not self._closing:
            if not self._updates:
                event = self._updates_event
                if self._updates:
                    continue
                await event.wait()
                continue
            update = self._updates[0]
            await self._deliver(update)
            if self._updates and self._updates[0] is update:
                self._updates.popleft()
            self._notify()

    async def _deliver(self, update: dict[str, Any]) -> bool:
        if self._session is None:
            # Webhooks are HTTPS; the local test certificate is trusted too (tls.py).
            self._session = ClientSession(
                timeout=ClientTimeout(total=10), connector=TCPConnector(ssl=client_context())
            )
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret
        payload = _dumps(update)
        url = self.webhook_url
        for attempt in range(max(self.webhook_max_attempts, 1)):
            if attempt:
                await asyncio.sleep(self.webhook_retry_delay * (2 ** (attempt - 1)))
            if not self.webhook_url or self._closing:
                return False
            try:
                async with self._session.post(url, data=payload, headers=headers) as resp:
                    body = await resp.read()
                    if 200 <= resp.status < 300:
                        self.stats.webhook_deliveries += 1
                        await self._webhook_reply(resp.content_type, body)
                        return True
                    error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
            except (TimeoutError, OSError, ValueError) as exc:
                error = f"Connection error: {type(exc).__name__}"
            except Exception as exc:  # aiohttp.ClientError and friends
                error = f"Connection error: {type(exc).__name__}"
            self.stats.webhook_failures += 1
            self._webhook_last_error = (_now(), error)
            self._notify()
        logger.warning("webhook delivery of update %s dropped", update.get("update_id"))
        return False

    async def _webhook_reply(self, content_type: str, body: bytes) -> None:
        """Telegram executes a method call returned in the webhook response body."""
        if content_type != "application/json" or not body:
            return
        try:
            data = json.loads(body)
        except ValueError:
            return
        if isinstance(data, dict) and isinstance(data.get("method"), str):
            params = {k: v for k, v in data.items() if k != "method"}
            await self.call(data["method"], params, from_form=False)

    # ============================================================ control API

    def _add_control_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/_emu/users", self._c_add_user)
        r.add_post("/_emu/groups", self._c_add_group)
        r.add_post("/_emu/send_message", self._c_send_message)
        r.add_post("/_emu/forward_message", self._c_forward_message)
        r.add_post("/_emu/press_button", self._c_press_button)
        r.add_get("/_emu/callback_answer", self._c_callback_answer)
        r.add_post("/_emu/inline_query", self._c_inline_query)
        r.add_get("/_emu/inline_answer", self._c_inline_answer)
        r.add_post("/_emu/choose_inline_result", self._c_choose_inline_result)
        r.add_get("/_emu/messages", self._c_messages)
        r.add_get("/_emu/wait_message", self._c_wait_message)
        r.add_get("/_emu/requests", self._c_requests)
        r.add_get("/_emu/violations", self._c_violations)
        r.add_get("/_emu/stats", self._c_stats)
        r.add_get("/_emu/files/{file_id}", self._c_file)
        r.add_post("/_emu/fail_next", self._c_fail_next)
        r.add_post("/_emu/limits", self._c_limits)
        r.add_post("/_emu/delay", self._c_delay)
        r.add_post("/_emu/block", self._c_block)
        r.add_post("/_emu/unblock", self._c_unblock)
        r.add_get("/_emu/health", self._c_health)

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        if not request.body_exists:
            return {}
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="body must be JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return data

    @staticmethod
    def _ok(data: Any, status: int = 200) -> web.Response:
        return web.json_response(data, status=status, dumps=_dumps)

    async def _c_health(self, request: web.Request) -> web.Response:
        return self._ok({"ok": True, "url": self.url})

    async def _c_add_user(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        user = self.add_user(
            int(d["user_id"]),
            first_name=str(d.get("first_name", "User")),
            username=d.get("username"),
            language_code=d.get("language_code", "en"),
            last_name=d.get("last_name"),
            started=bool(d.get("started", True)),
        )
        return self._ok(user.to_api())

    async def _c_add_group(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        chat = self.add_group(
            int(d["chat_id"]), title=str(d.get("title", "Group")), type=d.get("type")
        )
        return self._ok(chat.to_api())

    async def _c_send_message(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        chat_id = d.get("chat_id")
        rec = await self.send_message(
            int(d["user_id"]), str(d["text"]), None if chat_id is None else int(chat_id)
        )
        return self._ok(rec.to_dict())

    async def _c_forward_message(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        origin: EmuUser | str
        if "original_user_id" in d:
            origin = self._user(int(d["original_user_id"]))
        else:
            origin = str(d.get("original_sender_name", "Hidden"))
        rec = await self.forward_message(
            int(d["user_id"]), origin, text=str(d.get("text", "Forwarded message"))
        )
        return self._ok(rec.to_dict())

    async def _c_press_button(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        user = self._user(int(d["user_id"]))
        target: MessageRecord | int
        if d.get("inline_message_id"):
            target = self.inline_messages[str(d["inline_message_id"])]
        else:
            target = int(d["message_id"])
        chat_id = d.get("chat_id")
        try:
            cq = await self.press_button(
                user, target, str(d["button"]), chat=None if chat_id is None else int(chat_id)
            )
        except (LookupError, ValueError) as exc:
            return self._ok({"error": str(exc)}, status=404)
        return self._ok({"callback_query_id": cq.id, "data": cq.data})

    async def _c_callback_answer(self, request: web.Request) -> web.Response:
        cq_id = request.query["id"]
        timeout = float(request.query.get("timeout", "5"))
        try:
            answer = await self.wait_for_callback_answer(cq_id, timeout)
        except (TimeoutError, KeyError):
            return self._ok({"answer": None}, status=404)
        return self._ok({"answer": answer})

    async def _c_inline_query(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        qid = await self.inline_query(int(d["user_id"]), str(d.get("query", "")))
        return self._ok({"inline_query_id": qid})

    async def _c_inline_answer(self, request: web.Request) -> web.Response:
        qid = request.query["id"]
        timeout = float(request.query.get("timeout", "5"))
        try:
            answer = await self.wait_for_inline_answer(qid, timeout)
        except (TimeoutError, KeyError):
            return self._ok({"answer": None}, status=404)
        return self._ok({"answer": answer})

    async def _c_choose_inline_result(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        chat_id = d.get("chat_id")
        rec = await self.choose_inline_result(
            int(d["user_id"]),
            str(d["inline_query_id"]),
            str(d["result_id"]),
            chat=None if chat_id is None else int(chat_id),
        )
        return self._ok(rec.to_dict())

    async def _c_messages(self, request: web.Request) -> web.Response:
        chat_id = int(request.query["chat_id"])
        msgs = self.messages(chat_id)
        if request.query.get("from_bot") in ("1", "true"):
            msgs = [m for m in msgs if m.from_bot]
        return self._ok([m.to_dict() for m in msgs])

    async def _c_wait_message(self, request: web.Request) -> web.Response:
        """Long-poll until the chat has at least ``count`` bot messages (or one containing
        ``contains``)."""
        chat_id = int(request.query["chat_id"])
        count = int(request.query.get("count", "1"))
        contains = request.query.get("contains")
        timeout = float(request.query.get("timeout", "5"))

        def ready() -> list[MessageRecord] | None:
            msgs = [m for m in self._messages.get(chat_id, []) if m.from_bot and not m.deleted]
            if contains is not None:
                msgs = [m for m in msgs if contains in m.content]
            return msgs if len(msgs) >= count else None

        try:
            msgs = await self.wait_for(ready, timeout)
        except TimeoutError:
            return self._ok({"messages": None}, status=408)
        return self._ok({"messages": [m.to_dict() for m in msgs]})

    async def _c_requests(self, request: web.Request) -> web.Response:
        method = request.query.get("method")
        since = int(request.query.get("since", "0"))
        reqs = self.calls(method) if method else self.requests
        return self._ok([r.to_dict() for r in reqs[since:]])

    async def _c_violations(self, request: web.Request) -> web.Response:
        return self._ok(self.violations)

    async def _c_stats(self, request: web.Request) -> web.Response:
        return self._ok(self.stats.to_dict())

    async def _c_file(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["file_id"])
        if stored is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=stored.data,
            headers={"Content-Type": stored.mime_type or "application/octet-stream"},
        )

    async def _c_fail_next(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        retry = d.get("retry_after")
        self.fail_next(
            int(d.get("n", 1)),
            status=int(d.get("status", 500)),
            retry_after=None if retry is None else int(retry),
            method=d.get("method"),
            description=d.get("description"),
            apply=bool(d.get("apply", False)),
        )
        return self._ok({"ok": True})

    async def _c_limits(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        if "enforce" in d:
            self.enforce_limits = bool(d["enforce"])
        for name in (
            "global_per_second",
            "global_burst",
            "private_per_second",
            "private_burst",
            "group_per_minute",
            "group_burst",
        ):
            if name in d:
                setattr(self.limits, name, type(getattr(self.limits, name))(d[name]))
        self.limiter.reset()
        return self._ok({"enforce": self.enforce_limits, "limits": vars(self.limits)})

    async def _c_delay(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        self.delay = float(d.get("seconds", 0))
        return self._ok({"delay": self.delay})

    async def _c_block(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        self.block(int(d["user_id"]))
        return self._ok({"ok": True})

    async def _c_unblock(self, request: web.Request) -> web.Response:
        d = await self._json(request)
        self.unblock(int(d["user_id"]))
        return self._ok({"ok": True})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


# ===================================================================== runner


async def _serve(args: argparse.Namespace) -> None:
    emu = BotApiEmulator(
        token=args.token,
        bot_username=args.bot_username,
        enforce_limits=args.enforce_limits,
        privacy_mode=not args.no_privacy,
    )
    await emu.start(host=args.host, port=args.port)
    print(f"Telegram Bot API emulator listening on {emu.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testkit.telegram",
        description="Local Telegram Bot API emulator (controls under /_emu/).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123:ABC")
    parser.add_argument("--bot-username", default="tillbot_test_bot")
    parser.add_argument("--enforce-limits", action="store_true")
    parser.add_argument("--no-privacy", action="store_true", help="bot sees all group messages")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
