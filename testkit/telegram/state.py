"""Chat state of the Bot API emulator: users, chats, messages, files, pending updates."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from testkit.telegram.format import parse_formatted, utf16_len
from testkit.telegram.models import (
    CallbackQueryRecord,
    EmuChat,
    EmulatorStats,
    EmuUser,
    InlineQueryRecord,
    MessageRecord,
    RateLimits,
    StoredFile,
)
from testkit.telegram.spec import ApiSpec

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


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """What a test chooses when it makes an emulator (see `BotApiEmulator`)."""

    token: str
    bot_username: str
    bot_first_name: str
    enforce_limits: bool
    limits: RateLimits
    privacy_mode: bool
    strict_images: bool
    spec: ApiSpec
    clock: Callable[[], float]


def unix_now() -> int:
    return int(time.time())


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def wire_json(value: Any) -> str:
    """JSON as the Bot API writes it (UTF-8, compact)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


def image_size(data: bytes) -> tuple[int, int] | None:
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


class ChatState:
    """The world the bot lives in: users, chats, messages, files and the update queue."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.token = config.token
        self.bot_username = config.bot_username
        self.bot_first_name = config.bot_first_name
        head = config.token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 1
        # bots in privacy mode only see commands, replies and mentions in groups
        self.privacy_mode = config.privacy_mode
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
        self._webhook_last_error: tuple[int, str] | None = None
        self._messages: dict[int, list[MessageRecord]] = {}
        self._message_index: dict[tuple[int, int], MessageRecord] = {}
        self._next_message_id: dict[int, int] = {}
        self._updates: deque[dict[str, Any]] = deque()
        self._update_ids = itertools.count(100_000)
        self._ids = itertools.count(1)
        self._poll_generation = 0
        # getUpdates requests counted as they arrive (a long poll is recorded only when it
        # returns, up to its timeout later): a test can tell the bot is polling at once.
        self.polls_started = 0
        self._changed = asyncio.Event()
        self._updates_event = asyncio.Event()
        self._closing = False

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ------------------------------------------------------- users, chats, messages

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
            date=unix_now(),
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
        size = image_size(data) if kind == "photo" else None
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
                "date": unix_now(),
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
            self._start_delivery()
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

    def _start_delivery(self) -> None:
        """Called when updates wait and a webhook is set (the webhook layer delivers)."""

    def _stop_delivery(self) -> None:
        """Called when the webhook is deleted."""
