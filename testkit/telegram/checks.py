"""Bot API checks of the emulator: what Telegram refuses, and why, before anything changes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from testkit.telegram.format import EntityParseError, parse_formatted, utf16_len
from testkit.telegram.models import (
    ApiError,
    EmuChat,
    MessageRecord,
    RateLimiter,
    RecordedRequest,
    StoredFile,
)
from testkit.telegram.spec import UploadedFile
from testkit.telegram.state import ChatState, EmulatorConfig, image_size

logger = logging.getLogger("testkit.telegram")

_BUTTON_PLAIN_FIELDS = frozenset({"text", "icon_custom_emoji_id", "style"})
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1"})
_MAX_TEXT = 4096
_MAX_CAPTION = 1024


@dataclass(slots=True)
class Fault:
    """An error waiting to answer the next matching request (see `fail_next`)."""

    remaining: int
    status: int
    retry_after: int | None
    method: str | None  # lower-cased
    description: str | None
    apply: bool


class ApiChecks(ChatState):
    """Whether a Bot API request may do what it asks: chats, texts, markup, files, limits, faults."""

    def __init__(self, config: EmulatorConfig) -> None:
        super().__init__(config)
        # every request as it was answered, and every way the bot broke the Bot API's rules
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._calls: dict[str, list[RecordedRequest]] = {}
        self.spec = config.spec
        self.enforce_limits = config.enforce_limits
        self.limits = config.limits
        self.clock = config.clock
        self.limiter = RateLimiter(self.limits, config.clock)
        # sendPhoto/editMessageMedia with bytes that are not an image -> IMAGE_PROCESS_FAILED
        self.strict_images = config.strict_images
        self._faults: list[Fault] = []

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

    def _take_fault(self, method: str) -> Fault | None:
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
    def _fault_error(fault: Fault) -> ApiError:
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

    # ------------------------------------------------------- checks of one request

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
            if self.strict_images and image_size(upload.data) is None:
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
