"""Webhook delivery of the Bot API emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector

from testkit.telegram.server import EmulatorServer
from testkit.telegram.state import EmulatorConfig, unix_now, wire_json
from testkit.tls import client_context

logger = logging.getLogger("testkit.telegram")


class WebhookDelivery(EmulatorServer):
    """Delivers pending updates to the bot's webhook as Telegram does (HTTPS, retries)."""

    def __init__(self, config: EmulatorConfig) -> None:
        super().__init__(config)
        # webhook delivery: attempts per update and base of the exponential backoff
        self.webhook_max_attempts = 5
        self.webhook_retry_delay = 0.05
        self._session: ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None

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
        await super().stop()

    def _stop_delivery(self) -> None:
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            self._webhook_task = None

    def _start_delivery(self) -> None:
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
        payload = wire_json(update)
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
            self._webhook_last_error = (unix_now(), error)
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
