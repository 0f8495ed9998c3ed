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
