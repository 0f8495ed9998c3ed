"""The sandbox gateway seen from the tests: controls, and a recording, faulty transport.

The product's sandbox (bot/gateways/sandbox_api.py) has no fault and no control endpoint.
The tests get them here, around it:

- `SandboxControl(bank)`: what a test does to sandbox sessions behind the bot's back (pay,
  expire, fail, cancel, force a status or any field), as compare-and-set changes through the
  same repository, like any other instance would.
- `BotSandbox(gateway)`: the same controls on a running bot's sandbox, and what its client
  sent (through httpx's public event hooks).
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

from bot.domain.models import SandboxSession
from bot.gateways.mion import MION_PAID_STATUSES
from bot.gateways.sandbox import SandboxGateway
from bot.gateways.sandbox_api import (
    EXPIRED,
    SANDBOX_URL,
    UNPAID,
    SandboxApi,
    SandboxBank,
    SandboxRefused,
)
from testkit.gateway_base import Fault, FaultControls, RecordedRequest, parse_body


class SandboxControl:
    """Changes to sandbox sessions that only a test makes (the gateway's own doings)."""

    def __init__(self, bank: SandboxBank) -> None:
        self.bank = bank

    async def _changed(self, session: SandboxSession) -> SandboxSession:
        """Called with the result of every control (a subclass refreshes what it shows)."""
        return session

    async def _end(self, session_id: str, status: str) -> SandboxSession:
        def edit(session: SandboxSession, now: datetime) -> SandboxSession:
            if session.paid_at is not None or session.status != UNPAID:
                raise SandboxRefused(409, f"session {session_id} is {session.status}")
            if status == EXPIRED:
                return replace(session, status=EXPIRED, expires_at=min(session.expires_at, now))
            return replace(session, status=status)

        return await self._changed(await self.bank.change(session_id, edit))

    async def session(self, session_id: str) -> SandboxSession | None:
        return await self.bank.session(session_id)

    async def pay(self, session_id: str, *, force: bool = False) -> SandboxSession:
        return await self._changed(await self.bank.pay(session_id, force=force))

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

        return await self._changed(await self.bank.change(session_id, edit))

    async def set_fields(self, session_id: str, **fields: Any) -> SandboxSession:
        """Force stored fields (`paid_at`, `status`, ...) as they are, nothing derived."""

        def edit(session: SandboxSession, now: datetime) -> SandboxSession:
            return replace(session, **fields)

        return await self._changed(await self.bank.change(session_id, edit))


class SandboxSim(FaultControls, SandboxControl):
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
        fault = self.next_fault(record.path, is_create)
        if fault is not None and fault.kind != "lose_create":
            self.spend(fault)
            if fault.kind == "fail":
                return _fault_response(fault)
            if fault.kind == "malformed":
                return httpx.Response(200, content=b'{"status": "funded", "paidAt": ',
                                      headers={"content-type": "application/json"})
            await _hang(request, fault.seconds)
        response = await self.api.handle(request)
        await self._seen_in(response, is_create)
        if fault is not None and fault.kind == "lose_create" and response.is_success:
            self.spend(fault)
            if fault.mode == "abort":
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            return httpx.Response(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                                  headers={"content-type": "text/html"})
        record.response_status = response.status_code
        return response

    async def _seen_in(self, response: httpx.Response, is_create: bool) -> None:
        session_id = _session_id(response)
        if is_create and response.status_code == 201:
            self.create_count += 1
        if session_id is not None and session_id not in self._seen:
            self._seen.append(session_id)
        await self.refresh()

    async def refresh(self) -> None:
        """Read every session this transport has seen again (as stored, nothing derived)."""
        for session_id in self._seen:
            stored = await self.bank.repo.sandbox_get(session_id)
            if stored is not None:
                self.sessions[session_id] = stored

    async def _changed(self, session: SandboxSession) -> SandboxSession:
        await self.refresh()
        return session


def _session_id(response: httpx.Response) -> str | None:
    answer = json.loads(response.content) if response.content else None
    found = answer.get("paymentSessionId") if isinstance(answer, dict) else None
    return found if isinstance(found, str) else None


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


class BotSandbox(SandboxControl):
    """The sandbox of a running bot, for e2e tests: its controls, and what its client sent
    (`requests`, `create_count`), recorded through the client's public event hooks."""

    def __init__(self, gateway: SandboxGateway) -> None:
        super().__init__(gateway.bank)
        self.requests: list[httpx.Request] = []
        self.create_count = 0
        self._seen: list[str] = []
        gateway.client.event_hooks["request"].append(self._on_request)
        gateway.client.event_hooks["response"].append(self._on_response)

    async def _on_request(self, request: httpx.Request) -> None:
        self.requests.append(request)

    async def _on_response(self, response: httpx.Response) -> None:
        await response.aread()
        session_id = _session_id(response)
        request = response.request
        if request.method == "POST" and request.url.path == "/payment-sessions":
            self.create_count += response.status_code == 201
        if session_id is not None and session_id not in self._seen:
            self._seen.append(session_id)

    async def sessions(self) -> dict[str, SandboxSession]:
        """Every session the bot's sandbox created or read, as stored now."""
        found = {sid: await self.bank.repo.sandbox_get(sid) for sid in self._seen}
        return {sid: session for sid, session in found.items() if session is not None}
