"""What every service shares: storage, gateways, the policy, the clock, and the outbox."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from bot.domain.models import Invoice, NewOutbox
from bot.domain.polling import PaymentPolicy, next_poll_at
from bot.gateways.base import Gateway, GatewayError
from bot.metrics import Metrics
from storage.base import Repository

Clock = Callable[[], datetime]


class ServiceCore:
    """The ports and settings the services are built on (one per bot)."""

    def __init__(
        self,
        repo: Repository,
        gateways: Mapping[str, Gateway],
        policy: PaymentPolicy,
        *,
        clock: Clock,
        callback_url: Callable[[str], str | None] | None = None,
        on_outbox: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.repo = repo
        self.gateways = dict(gateways)
        self.policy = policy
        self.clock = clock
        self.callback_url = callback_url or (lambda _gateway: None)
        self.on_outbox = on_outbox or (lambda: None)
        self.metrics = metrics or Metrics()

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.policy.admin_ids

    def callbacks_on(self, invoice: Invoice) -> bool:
        """The gateway calls us back about this invoice (so polling may be slow)."""
        gateway = self.gateways.get(invoice.gateway)
        return bool(gateway and gateway.supports_callbacks and self.callback_url(invoice.gateway))

    def next_poll_at(self, invoice: Invoice) -> datetime | None:
        return next_poll_at(self.policy, invoice, self.clock(), self.callbacks_on(invoice))

    async def enqueue(self, rows: Sequence[NewOutbox]) -> None:
        """Write outbox rows (duplicates by dedupe key are dropped) and wake the notifier."""
        if rows and await self.repo.enqueue(rows, self.clock()):
            self.on_outbox()


def outcome(exc: GatewayError) -> str:
    """A gateway error as a metrics label: `unavailable`, `auth`, `notfound`, ..."""
    return type(exc).__name__.removeprefix("Gateway").lower() or "error"
