"""Pending work as the bot would have left it, for tests and benchmarks that start from it
(failover, several instances): invoices open at Mion and shown in their merchant's chat,
each on a PostgreSQL database of its own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from bot.domain.models import Invoice, InvoiceKind, InvoiceMessage, MessageRole, NewInvoice

if TYPE_CHECKING:
    from storage.base import Repository
    from testkit.mion import MionSimulator
    from testkit.telegram import BotApiEmulator


async def create_database(server: str, prefix: str) -> str:
    """A new, empty database named `<prefix>_<random>` on `server` (a PostgreSQL URL); its
    URL. Random names keep parallel tests, helpers and benchmarks apart."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


async def drop_database(server: str, database_url: str) -> None:
    """Drop the database of `database_url` from `server`, connections and all."""
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(server, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def scratch_database(server: str, prefix: str) -> AsyncIterator[str]:
    """A database of its own for the duration of the block (its URL), dropped after it."""
    url = await create_database(server, prefix)
    try:
        yield url
    finally:
        await drop_database(server, url)


def mion_client(mion: MionSimulator, api_key: str) -> httpx.AsyncClient:
    """An HTTP client for Mion's merchant API, as the bot's own would call it."""
    return httpx.AsyncClient(base_url=mion.url, headers={"x-api-key": api_key}, trust_env=False)


@dataclass(frozen=True, slots=True)
class SeededInvoice:
    invoice: Invoice
    session_id: str
    message: InvoiceMessage  # the merchant's message about it, as stored


async def seed_mion_invoice(
    repo: Repository,
    emu: BotApiEmulator,
    mion: httpx.AsyncClient,
    *,
    merchant: int,
    amount_minor: int,
    description: str,
    reference_prefix: str,
    now: datetime,
    next_poll_at: datetime,
    lifetime: timedelta = timedelta(hours=2),
) -> SeededInvoice:
    """One pending EUR invoice at Mion (`mion`: a `mion_client`; the session's reference is
    `<reference_prefix>-<invoice id>`), its session attached and due at `next_poll_at`, and
    its message in the merchant's chat."""
    invoice = await repo.create_invoice(
        NewInvoice(
            public_token=secrets.token_urlsafe(16),
            merchant_id=merchant,
            amount_minor=amount_minor,
            currency="EUR",
            description=description,
            gateway="mion",
            kind=InvoiceKind.CHECKOUT,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    answer = await mion.post(
        "/payment-sessions",
        json={
            "amount": invoice.amount_minor,
            "currencyIso3": "EUR",
            "expiry": (now + lifetime).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reference": f"{reference_prefix}-{invoice.id}",
            "retailPos": False,
        },
    )
    answer.raise_for_status()
    session_id = str(answer.json()["paymentSessionId"])
    await repo.attach_session(
        invoice.id,
        gateway_session_id=session_id,
        checkout_url=None,
        payment={},
        expires_at=None,
        next_poll_at=next_poll_at,
        now=now,
    )
    _, body = await emu.call(
        "sendMessage", {"chat_id": merchant, "text": f"Invoice #{invoice.id} pending"}
    )
    message = await repo.add_message(
        InvoiceMessage(
            invoice_id=invoice.id,
            role=MessageRole.MERCHANT,
            chat_id=merchant,
            message_id=int(body["result"]["message_id"]),
            user_id=merchant,
            language="en",
        )
    )
    return SeededInvoice(invoice, session_id, message)
