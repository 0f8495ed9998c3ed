"""The driver of the Bot API emulator: what users do and what tests read and wait for."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any, TypeVar, cast

from testkit.telegram.checks import Fault
from testkit.telegram.models import (
    CallbackQueryRecord,
    EmuChat,
    EmuUser,
    InlineQueryRecord,
    MessageRecord,
    RecordedRequest,
)
from testkit.telegram.state import canonical_json, unix_now
from testkit.telegram.webhook import WebhookDelivery

T = TypeVar("T")


class EmulatorDriver(WebhookDelivery):
    """The test-facing side: users act (write, press, query) and tests read what the bot did."""

    # ------------------------------------------------------------------ users act

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
        message.edit_date = max(unix_now(), message.date)
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
        date = original_date if original_date is not None else unix_now() - 60
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
                message_id=0, chat_id=0, from_bot=False, date=unix_now(), from_user_id=u.id
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
        return self.commands.get((canonical_json(scope or {"type": "default"}), language_code), [])

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
            Fault(
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

    def _user_wrote(self, user: EmuUser, chat: EmuChat) -> None:
        if chat.is_private:
            if user.blocked:
                self.unblock(user)
            user.started = True
