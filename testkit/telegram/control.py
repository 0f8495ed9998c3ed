"""The control API of the standalone Bot API emulator (``/_emu/...``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from testkit.telegram.driver import EmulatorDriver
from testkit.telegram.models import (
    EmuUser,
    MessageRecord,
)
from testkit.telegram.state import wire_json


class ControlApi(EmulatorDriver):
    """The driver as JSON under ``/_emu/``, for a bot in another process."""

    def make_app(self) -> web.Application:
        app = super().make_app()
        self._add_control_routes(app)
        return app

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
        return web.json_response(data, status=status, dumps=wire_json)

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
