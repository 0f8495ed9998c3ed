"""Admin alerts: a gateway rejects our credentials, its setup is incomplete, a payment
does not match its invoice."""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain import notices
from bot.domain.models import Invoice
from bot.gateways.base import GatewayError, SessionStatus
from bot.services.core import ServiceCore


class Alerts:
    """Tells each admin once; remembers which gateways' credentials were reported."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core
        self._auth_alerted: set[str] = set()

    async def auth_failed(self, gateway_name: str, exc: GatewayError) -> None:
        """Tell each admin once (per gateway and day) that a gateway rejects our credentials."""
        if gateway_name in self._auth_alerted:
            return
        self._auth_alerted.add(gateway_name)
        core = self.core
        day = core.clock().date()
        await core.enqueue(
            notices.auth_alerts(gateway_name, exc.user_message, day, core.policy.admin_ids)
        )

    def auth_works(self, gateway_name: str) -> None:
        """The gateway answered: a later rejection is worth an alert again."""
        self._auth_alerted.discard(gateway_name)

    async def setup_problems(self, gateway_name: str, problems: Sequence[str]) -> None:
        """Tell each admin (once a day per problem) what a gateway's setup check found."""
        core = self.core
        day = core.clock().date()
        await core.enqueue(
            notices.setup_alerts(gateway_name, problems, day, core.policy.admin_ids)
        )

    async def mismatch(self, invoice: Invoice, status: SessionStatus) -> None:
        """Tell each admin once that a gateway reported a payment that does not match the
        invoice (payee, currency or amount): it was not booked."""
        await self.core.enqueue(
            notices.mismatch_alerts(invoice, status, self.core.policy.admin_ids)
        )
