"""The sandbox gateway seen from the tests: controls, and a recording, faulty transport.

The product's sandbox (bot/gateways/sandbox_api.py) has no fault and no control endpoint.
The tests get them here, around it:

- `SandboxControl(bank)`: what a test does to sandbox sessions behind the bot's back (pay,
  expire, fail, cancel, force a status or any field), as compare-and-set changes through the
  same repository, like any other instance would.
- `SandboxSim(bank)`: a `SandboxControl` with the shape of the gateway simulators
  (`requests`, `sessions`, `create_count`, `fail_next`, `hang_next`, `malformed_next`,
  `lose_next_create`), whose `transport()` records every request and injects faults before
  handing it to the real `SandboxApi`. A hang longer than the request's read timeout raises
  `httpx.ReadTimeout` after that timeout, as the network layer would.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import datetime
from http import HTTPStatus
from typing import Any

import httpx

from bot.gateways.mion import MION_PAID_STATUSES
from bot.gateways.sandbox_api import (
    EXPIRED,
    SANDBOX_URL,
    UNPAID,
    SandboxApi,
    SandboxBank,
    SandboxRefused,
)
from bot.simulators.gateway_base import Fault, LoseMode, RecordedRequest, parse_body
from storage.models import SandboxSession


class SandboxControl:
    """Changes to sandbox sessions that only a test makes (the gateway's own doings)."""

    def __init__(self, bank: SandboxBank) -> None:
        self.bank = bank

    async def _change(self, session_id: str, **fields: Any) -> SandboxSession:
        def edit(session: SandboxSession, now: datetime) -> SandboxSession:
            return replace(session, **fields)

        return await self.bank.change(session_id, edit)

    async def _end(self, session_id: str, status: str) -> SandboxSession:
        def edit(session: SandboxSession, now: datetime) -> SandboxSession:
            if session.paid_at is not None or session.status != UNPAID:
                raise SandboxRefused(409, f"session {session_id} is {session.status}")
            if status == EXPIRED:
                return replace(session, status=EXPIRED, expires_at=min(session.expires_at, now))
            return replace(session, status=status)

        return await self.bank.change(session_id, edit)

    async def session(self, session_id: str) -> SandboxSession | None:
        return await self.bank.session(session_id)

    async def pay(self, session_id: str, *, force: bool = False) -> SandboxSession:
        return await self.bank.pay(session_id, force=force)

    async def expire(self, session_id: str) -> SandboxSession:
        return await self._end(session_id, EXPIRED)

    async def fail(self, session_id: str) -> SandboxSession:
        return await self._end(session_id, "failed")

    async def cancel(self, session_id: str) -> SandboxSession:
        return await self._end(session_id, "cancelled")

    async def set_status(self, session_id: str, status: str) -> SandboxSession:
        """Force a status; a paid one without `paidAt` gets it now."""

        def edit(session: SandboxSession, now: datetime) -> SandboxSession:
            if status in MION_PAID_STATUSES and session.paid_at is None:
                session = replace(session, paid_at=now, payment_method="lightning")
            return replace(session, status=status)

        return await self.bank.change(session_id, edit)

    async def set_fields(self, session_id: str, **fields: Any) -> SandboxSession:
        """Force stored fields (`paid_at`, `status`, ...) as they are, nothing derived."""
        return await self._change(session_id, **fields)


class SandboxSim(SandboxControl):
    """The sandbox with a gateway simulator's test surface (see the module docstring)."""

    root_url = SANDBOX_URL

    def __init__(self, bank: SandboxBank) -> None:
        super().__init__(bank)
        self.api = SandboxApi(bank)
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.sessions: dict[str, SandboxSession] = {}  # as stored after the last request
        self.create_count = 0
        self._seen: list[str] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- faults, as GatewaySimulator's ------------------------------------------------------
    def clear_requests(self) -> None:
        self.requests.clear()

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: Any = None,
        retry_after: float | None = None,
        path_contains: str | None = None,
    ) -> None:
        self.faults.append(Fault("fail", n, status=status, body=body, retry_after=retry_after,
                                 path_contains=path_contains))

    def hang_next(self, n: int = 1, seconds: float = 5.0, path_contains: str | None = None) -> None:
        self.faults.append(Fault("hang", n, seconds=seconds, path_contains=path_contains))

    def malformed_next(self, n: int = 1, path_contains: str | None = None) -> None:
        self.faults.append(Fault("malformed", n, path_contains=path_contains))

    def lose_next_create(self, n: int = 1, mode: LoseMode = "502") -> None:
        self.faults.append(Fault("lose_create", n, mode=mode))

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- the transport ----------------------------------------------------------------------
    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        parsed, error = parse_body(request.headers.get("content-type", ""), body)
        record = RecordedRequest(
            time=time.monotonic(), at=self.bank.clock(), method=request.method,
            path=request.url.path, query=dict(request.url.params),
            headers={k.lower(): v for k, v in request.headers.items()}, body=body,
            parsed=parsed, parse_error=error,
        )
        self.requests.append(record)
        is_create = request.method == "POST" and record.path == "/payment-sessions"
        fault = next(
            (f for f in self.faults
             if f.matches(record.path) and (f.kind != "lose_create" or is_create)),
            None,
        )
        if fault is not None and fault.kind != "lose_create":
            fault.remaining -= 1
            self.faults[:] = [f for f in self.faults if f.remaining > 0]
            if fault.kind == "fail":
                return _fault_response(fault)
            if fault.kind == "malformed":
                return httpx.Response(200, content=b'{"status": "funded", "paidAt": ',
                                      headers={"content-type": "application/json"})
            await _hang(request, fault.seconds)
        response = await self.api.handle(request)
        await self._after(response, is_create)
        if fault is not None and fault.kind == "lose_create" and response.is_success:
            fault.remaining -= 1
            self.faults[:] = [f for f in self.faults if f.remaining > 0]
            if fault.mode == "abort":
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            return httpx.Response(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                                  headers={"content-type": "text/html"})
        record.response_status = response.status_code
        return response

    async def _after(self, response: httpx.Response, is_create: bool) -> None:
        answer = json.loads(response.content) if response.content else None
        session_id = answer.get("paymentSessionId") if isinstance(answer, dict) else None
        if is_create and response.status_code == 201:
            self.create_count += 1
        if isinstance(session_id, str) and session_id not in self._seen:
            self._seen.append(session_id)
        await self.refresh()

    async def refresh(self) -> None:
        """Read every session this transport has seen again (as stored, nothing derived)."""
        for session_id in self._seen:
            stored = await self.bank.repo.sandbox_get(session_id)
            if stored is not None:
                self.sessions[session_id] = stored

    async def _change(self, session_id: str, **fields: Any) -> SandboxSession:
        changed = await super()._change(session_id, **fields)
        await self.refresh()
        return changed

    async def _end(self, session_id: str, status: str) -> SandboxSession:
        changed = await super()._end(session_id, status)
        await self.refresh()
        return changed

    async def pay(self, session_id: str, *, force: bool = False) -> SandboxSession:
        changed = await super().pay(session_id, force=force)
        await self.refresh()
        return changed

    async def set_status(self, session_id: str, status: str) -> SandboxSession:
        changed = await super().set_status(session_id, status)
        await self.refresh()
        return changed


def _fault_response(fault: Fault) -> httpx.Response:
    body = fault.body if fault.body is not None else {"message": HTTPStatus(fault.status).phrase}
    content = body if isinstance(body, bytes) else (
        body.encode() if isinstance(body, str) else json.dumps(body).encode()
    )
    headers = {"content-type": "application/json"}
    if fault.retry_after is not None:
        headers["retry-after"] = str(max(0, int(-(-fault.retry_after // 1))))
    return httpx.Response(fault.status, content=content, headers=headers)


async def _hang(request: httpx.Request, seconds: float) -> None:
    timeouts = request.extensions.get("timeout", {})
    read = timeouts.get("read") if isinstance(timeouts, dict) else None
    if read is not None and seconds > read:
        await asyncio.sleep(read)
        raise httpx.ReadTimeout("Timed out while receiving data from the host", request=request)
    await asyncio.sleep(seconds)
