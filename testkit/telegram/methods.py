"""Bot API methods of the emulator, by name (the messages ones are in `messaging`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from testkit.telegram.format import utf16_len
from testkit.telegram.messaging import MessageMethods
from testkit.telegram.models import (
    ApiError,
)
from testkit.telegram.spec import UploadedFile
from testkit.telegram.state import EmulatorConfig, canonical_json

QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
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
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
Handler = Callable[[dict[str, Any], dict[str, UploadedFile]], Awaitable[Any]]


class BotApiMethods(MessageMethods):
    """The Bot API methods by name: updates, webhooks, callbacks, inline, commands, chats, files."""

    def __init__(self, config: EmulatorConfig) -> None:
        super().__init__(config)
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
        self.polls_started += 1
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
        self._start_delivery()
        return True

    async def _delete_webhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self.webhook_url = ""
        self.webhook_secret = None
        self.webhook_info_extra = {}
        self._stop_delivery()
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
        return canonical_json(scope), str(params.get("language_code") or "")

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
