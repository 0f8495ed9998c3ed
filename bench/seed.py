"""Pending invoices written straight into the bot's database before it starts.

They stand for a busy shop's backlog: online checkouts waiting for customers. Their next
poll is `not_due_for` ahead (under the watcher's 10-minute resume horizon, so a restart
leaves them alone), so during a benchmark run they are pending but never due: they cost
what an idle backlog costs (index size, memory), and no gateway request.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from bot.domain.models import InvoiceKind, NewInvoice, utcnow
from storage import open_repository

# Per gateway: currency, checkout URL prefix (as the adapters make them).
GATEWAY_SHAPES: dict[str, tuple[str, str]] = {
    "mion": ("EUR", "https://app.mion.group/checkout/"),
    "mixpay": ("USD", "https://mixpay.me/code/"),
    "miraclepay": ("USD", "https://checkout.miraclepay.com/?sessionId="),
}


def _scratch_dir() -> Path:
    """A RAM disk when there is one: seeding is setup, not what is measured."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        try:
            probe = tempfile.mkdtemp(prefix="tillbot-seed-", dir=shm)
            return Path(probe)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="tillbot-seed-"))


async def seed_pending(
    db_path: Path,
    count: int,
    merchant_ids: Sequence[int],
    *,
    gateways: Sequence[str] = ("mion", "mixpay", "miraclepay"),
    not_due_for: timedelta = timedelta(minutes=9),
    now: datetime | None = None,
) -> int:
    """Create `count` pending online invoices (round robin over `gateways` and merchants)
    in a fresh database at `db_path`; returns how many were written."""
    now = now or utcnow()
    scratch = _scratch_dir()
    scratch_db = scratch / "seed.db"
    repo = await open_repository(f"sqlite:///{scratch_db}")
    try:
        for i in range(count):
            gateway = gateways[i % len(gateways)]
            currency, checkout = GATEWAY_SHAPES[gateway]
            invoice = await repo.create_invoice(
                NewInvoice(
                    public_token=secrets.token_urlsafe(16),
                    merchant_id=merchant_ids[i % len(merchant_ids)],
                    amount_minor=500 + (i * 37) % 20_000,
                    currency=currency,
                    description=f"Backlog order {i}",
                    gateway=gateway,
                    kind=InvoiceKind.CHECKOUT,
                    created_at=now,
                    expires_at=now + timedelta(hours=24),
                )
            )
            session = f"seed-{gateway}-{i:06d}-{secrets.token_hex(4)}"
            await repo.attach_session(
                invoice.id,
                gateway_session_id=session,
                checkout_url=checkout + session,
                payment={},
                expires_at=now + timedelta(hours=24),
                next_poll_at=now + not_due_for,
                now=now,
            )
    finally:
        await repo.close()  # the last connection checkpoints the WAL into the file
    db_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(scratch_db, db_path)
    shutil.rmtree(scratch, ignore_errors=True)
    return count


async def seed_pending_bulk(
    database_url: str,
    count: int,
    merchant_ids: Sequence[int],
    *,
    gateways: Sequence[str] = ("mion", "mixpay", "miraclepay"),
    not_due_for: timedelta = timedelta(minutes=9),
) -> int:
    """`count` pending online invoices written in bulk (SQLite or PostgreSQL; the schema
    migrated first): the idle benchmark's 100,000-invoice backlog in seconds."""
    repo = await open_repository(database_url)
    try:
        await repo.migrate()
    finally:
        await repo.close()
    now = utcnow()
    at = int(now.timestamp() * 1000)
    due = int((now + not_due_for).timestamp() * 1000)
    expires = int((now + timedelta(hours=24)).timestamp() * 1000)
    rows = []
    for i in range(count):
        gateway = gateways[i % len(gateways)]
        currency, checkout = GATEWAY_SHAPES[gateway]
        session = f"seed-{gateway}-{i:06d}-{secrets.token_hex(4)}"
        rows.append(
            (
                secrets.token_urlsafe(16),
                merchant_ids[i % len(merchant_ids)],
                500 + (i * 37) % 20_000,
                currency,
                f"Backlog order {i}",
                gateway,
                InvoiceKind.CHECKOUT.value,
                "pending",
                at,
                at,
                session,
                checkout + session,
                expires,
                due,
            )
        )
    columns = (
        "public_token", "merchant_id", "amount_minor", "currency", "description", "gateway",
        "kind", "status", "created_at", "updated_at", "gateway_session_id", "checkout_url",
        "expires_at", "next_poll_at",
    )
    if database_url.startswith("sqlite"):
        import sqlite3

        from storage import parse_sqlite_url

        path = parse_sqlite_url(database_url)[0]
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                f"INSERT INTO invoices ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                rows,
            )
            con.execute("COMMIT")
            con.execute("ANALYZE")
        finally:
            con.close()
    else:
        import asyncpg

        con = await asyncpg.connect(database_url)
        try:
            await con.copy_records_to_table("invoices", records=rows, columns=columns)
            await con.execute("ANALYZE invoices")
        finally:
            await con.close()
    return count
