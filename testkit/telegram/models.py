"""State records of the Bot API emulator (users, chats, messages, files, queries)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ApiError",
    "CallbackQueryRecord",
    "EmuChat",
    "EmuUser",
    "EmulatorStats",
    "InlineQueryRecord",
    "MessageRecord",
    "RateLimiter",
    "RateLimits",
    "RecordedRequest",
    "StoredFile",
]


class ApiError(Exception):
    """An error answer of the Bot API (``{"ok": false, ...}``).

    ``violation`` is set when the request itself was wrong (a bug in the bot), so the
    emulator records it in ``violations``.
    """

    def __init__(
        self,
        status: int,
        description: str,
        *,
        parameters: dict[str, Any] | None = None,
        violation: str | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters
        self.violation = violation

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


@dataclass(eq=False)
class EmuUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False
    is_premium: bool = False
    blocked: bool = False  # the user blocked the bot
    started: bool = True  # the user has a private chat with the bot

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        if self.is_premium:
            data["is_premium"] = True
        return data

    @property
    def chat_id(self) -> int:
        return self.id


@dataclass(eq=False)
class EmuChat:
    id: int
    type: str  # private | group | supergroup | channel
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    bot_is_member: bool = True

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            data["first_name"] = self.first_name or ""
            if self.last_name:
                data["last_name"] = self.last_name
        elif self.title is not None:
            data["title"] = self.title
        if self.username:
            data["username"] = self.username
        return data

    @property
    def is_private(self) -> bool:
        return self.type == "private"

    @property
    def chat_id(self) -> int:
        return self.id


@dataclass(eq=False)
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # photo | document | ...
    data: bytes
    filename: str | None = None
    mime_type: str | None = None
    file_path: str = ""
    width: int = 0
    height: int = 0
    url: str | None = None  # sent by HTTP URL (the emulator does not download it)

    def photo_sizes(self) -> list[dict[str, Any]]:
        return [
            {
                "file_id": self.file_id,
                "file_unique_id": self.file_unique_id,
                "width": self.width,
                "height": self.height,
                "file_size": len(self.data),
            }
        ]

    def document_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
        }
        if self.filename:
            data["file_name"] = self.filename
        if self.mime_type:
            data["mime_type"] = self.mime_type
        return data


@dataclass(eq=False)
class MessageRecord:
    """A message as the emulator stores it (both directions, and inline messages)."""

    message_id: int
    chat_id: int
    from_bot: bool
    date: int
    from_user_id: int | None = None
    text: str | None = None  # plain text, as Telegram shows it
    html: str | None = None  # raw text as sent (HTML/Markdown source when parse_mode was used)
    parse_mode: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    caption: str | None = None  # plain caption
    caption_html: str | None = None  # raw caption as sent
    caption_entities: list[dict[str, Any]] = field(default_factory=list)
    photo_file: StoredFile | None = None
    document_file: StoredFile | None = None
    reply_markup: dict[str, Any] | None = None
    edits: int = 0
    edit_history: list[dict[str, Any]] = field(default_factory=list)
    edit_date: int | None = None
    deleted: bool = False
    inline_message_id: str | None = None
    via_bot: bool = False
    reply_to_message_id: int | None = None
    forward_origin: dict[str, Any] | None = None

    # ---- convenience views
    @property
    def photo(self) -> bytes | None:
        return self.photo_file.data if self.photo_file is not None else None

    @property
    def photo_file_id(self) -> str | None:
        return self.photo_file.file_id if self.photo_file is not None else None

    @property
    def document(self) -> bytes | None:
        return self.document_file.data if self.document_file is not None else None

    @property
    def document_filename(self) -> str | None:
        return self.document_file.filename if self.document_file is not None else None

    @property
    def document_file_id(self) -> str | None:
        return self.document_file.file_id if self.document_file is not None else None

    @property
    def kind(self) -> str:
        if self.photo_file is not None:
            return "photo"
        if self.document_file is not None:
            return "document"
        return "text"

    @property
    def content(self) -> str:
        """Text or caption (plain), empty string when there is neither."""
        return self.text if self.text is not None else (self.caption or "")

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Inline keyboard buttons, row by row, flattened."""
        markup = self.reply_markup or {}
        rows = markup.get("inline_keyboard") or []
        return [btn for row in rows for btn in row if isinstance(btn, dict)]

    def find_button(self, label: str) -> dict[str, Any] | None:
        """The inline button whose text or callback_data equals ``label``."""
        for btn in self.buttons:
            if btn.get("text") == label:
                return btn
        for btn in self.buttons:
            if btn.get("callback_data") == label:
                return btn
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "html": self.html,
            "caption": self.caption,
            "caption_html": self.caption_html,
            "reply_markup": self.reply_markup,
            "photo_file_id": self.photo_file_id,
            "document_file_id": self.document_file_id,
            "date": self.edit_date or self.date,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON view for the HTTP control API."""
        return {
            "message_id": self.message_id,
            "chat_id": self.chat_id,
            "from_bot": self.from_bot,
            "from_user_id": self.from_user_id,
            "date": self.date,
            "kind": self.kind,
            "text": self.text,
            "html": self.html,
            "caption": self.caption,
            "caption_html": self.caption_html,
            "reply_markup": self.reply_markup,
            "photo_file_id": self.photo_file_id,
            "photo_size": len(self.photo) if self.photo is not None else None,
            "document_file_id": self.document_file_id,
            "document_filename": self.document_filename,
            "document_size": len(self.document) if self.document is not None else None,
            "edits": self.edits,
            "deleted": self.deleted,
            "inline_message_id": self.inline_message_id,
            "reply_to_message_id": self.reply_to_message_id,
            "forward_origin": self.forward_origin,
        }


@dataclass(eq=False)
class CallbackQueryRecord:
    id: str
    user_id: int
    data: str
    chat_id: int | None
    message_id: int | None
    inline_message_id: str | None
    answer: dict[str, Any] | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def wait_answer(self, timeout: float = 5.0) -> dict[str, Any]:
        """The answerCallbackQuery parameters (text, show_alert, url, cache_time)."""
        await asyncio.wait_for(self.answered.wait(), timeout)
        assert self.answer is not None
        return self.answer


@dataclass(eq=False)
class InlineQueryRecord:
    id: str
    user_id: int
    query: str
    offset: str = ""
    answer: dict[str, Any] | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def wait_answer(self, timeout: float = 5.0) -> dict[str, Any]:
        """The answerInlineQuery parameters (results, cache_time, ...)."""
        await asyncio.wait_for(self.answered.wait(), timeout)
        assert self.answer is not None
        return self.answer


@dataclass(slots=True)
class RecordedRequest:
    ts: float  # time.monotonic() when the request arrived
    method: str
    params: dict[str, Any]
    status: int = 200
    description: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "method": self.method,
            "params": {k: _jsonable(v) for k, v in self.params.items()},
            "status": self.status,
            "description": self.description,
        }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


@dataclass
class EmulatorStats:
    requests: int = 0
    too_many_requests: int = 0  # every 429 answer (rate limiter and injected faults)
    rate_limited: int = 0  # 429 answers from the rate limiter only
    injected_faults: int = 0
    errors: int = 0  # every non-2xx answer
    violations: int = 0
    updates: int = 0  # updates created
    webhook_deliveries: int = 0
    webhook_failures: int = 0
    per_method: dict[str, int] = field(default_factory=dict)
    per_status: dict[int, int] = field(default_factory=dict)

    def __getitem__(self, key: str) -> int:
        if key == "429":
            return self.too_many_requests
        value = getattr(self, key, None)
        if isinstance(value, int):
            return value
        return self.per_method.get(key, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "too_many_requests": self.too_many_requests,
            "rate_limited": self.rate_limited,
            "injected_faults": self.injected_faults,
            "errors": self.errors,
            "violations": self.violations,
            "updates": self.updates,
            "webhook_deliveries": self.webhook_deliveries,
            "webhook_failures": self.webhook_failures,
            "per_method": dict(self.per_method),
            "per_status": {str(k): v for k, v in self.per_status.items()},
        }


@dataclass
class RateLimits:
    """Telegram's (unofficial but enforced) flood limits for sending/editing."""

    global_per_second: float = 30.0
    global_burst: int = 30
    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_minute: float = 20.0
    group_burst: int = 20


class _Bucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = max(capacity, 1.0)
        self.rate = rate
        self.tokens = self.capacity
        self.stamp = now

    def wait_time(self, now: float) -> float:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            return 0.0
        if self.rate <= 0:
            return math.inf
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets: one global, one per chat (private and group limits differ)."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self._global: _Bucket | None = None
        self._chats: dict[int | str, _Bucket] = {}

    def reset(self) -> None:
        self._global = None
        self._chats.clear()

    def acquire(self, chat_id: int | str | None, private: bool) -> int:
        """0 when the message may go out (and it is counted), else retry_after seconds."""
        now = self.clock()
        lim = self.limits
        if self._global is None:
            self._global = _Bucket(lim.global_burst, lim.global_per_second, now)
        buckets = [self._global]
        if chat_id is not None:
            bucket = self._chats.get(chat_id)
            if bucket is None:
                if private:
                    bucket = _Bucket(lim.private_burst, lim.private_per_second, now)
                else:
                    bucket = _Bucket(lim.group_burst, lim.group_per_minute / 60.0, now)
                self._chats[chat_id] = bucket
            buckets.append(bucket)
        wait = max(b.wait_time(now) for b in buckets)
        if wait > 0:
            return max(1, math.ceil(wait)) if math.isfinite(wait) else 3600
        for b in buckets:
            b.tokens -= 1.0
        return 0
