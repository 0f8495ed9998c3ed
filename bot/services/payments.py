"""The one object the adapters hold: builds the services by job and names their entry points.

Handlers, the watcher and the web server call `PaymentsService`; each method is one line
into the service that owns the job, so the homes stay in `invoices`, `sync`, `callbacks`,
`access` and `reports`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.drafts import InvoiceDraft
from bot.domain.models import Invoice, InvoiceKind, InvoiceMessage, InvoiceStatus, MessageRole
from bot.domain.polling import PaymentPolicy
from bot.gateways.base import Gateway, SessionStatus
from bot.metrics import Metrics
from bot.services.access import AccessService
from bot.services.alerts import Alerts
from bot.services.books import BooksService
from bot.services.callbacks import CallbackService
from bot.services.core import Clock, ServiceCore
from bot.services.counter import CounterService
from bot.services.invoices import InvoiceService
from bot.services.links import LinkService, ReceiptService
from bot.services.reports import ReportService
from bot.services.staff import StaffService
from bot.services.sync import StatusSync
from storage.base import Repository


class PaymentsService:
    """Everything that happens to an invoice, whichever path (command, poll, callback) asks."""

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
        default_zone: ZoneInfo | None = None,
        zones: MutableMapping[int, ZoneInfo] | None = None,
    ) -> None:
        core = ServiceCore(
            repo,
            gateways,
            policy,
            clock=clock,
            callback_url=callback_url,
            on_outbox=on_outbox,
            metrics=metrics,
        )
        self.core = core
        self.gateways = core.gateways
        self.policy = policy
        self.metrics = core.metrics
        self.alerts = Alerts(core)
        self.access = AccessService(core)
        self.staff = StaffService(core, self.access)
        self.sync = StatusSync(core, self.alerts)
        self.invoices = InvoiceService(core, self.access, self.sync, self.alerts)
        self.callbacks = CallbackService(core, self.sync)
        self.reports = ReportService(core)
        self.links = LinkService(core, self.access, self.invoices)
        self.receipts = ReceiptService(core, self.invoices)
        self.counter = CounterService(core, self.access, self.invoices)
        self.books = BooksService(
            core, self.access, default_zone=default_zone or ZoneInfo("UTC"), zones=zones
        )

    # -- access ---------------------------------------------------------------------------
    def is_admin(self, user_id: int) -> bool:
        return self.access.is_admin(user_id)

    async def is_merchant(self, user_id: int) -> bool:
        return await self.access.is_merchant(user_id)

    # -- invoices -------------------------------------------------------------------------
    async def merchant_gateway(self, user_id: int) -> str:
        return await self.invoices.merchant_gateway(user_id)

    def gateway_for_kind(self, kind: InvoiceKind) -> str | None:
        return self.invoices.gateway_for_kind(kind)

    def validate(self, draft: InvoiceDraft, gateway_name: str) -> tuple[int, str, str, Gateway]:
        return self.invoices.validate(draft, gateway_name)

    async def create_invoice(
        self,
        user_id: int,
        draft: InvoiceDraft,
        *,
        update_id: int | None = None,
        timeout: float | None = None,
    ) -> Invoice:
        return await self.invoices.create_invoice(
            user_id, draft, update_id=update_id, timeout=timeout
        )

    async def check_draft(self, user_id: int, draft: InvoiceDraft) -> None:
        await self.invoices.check_draft(user_id, draft)

    async def views_of(self, invoice_id: int) -> list[InvoiceMessage]:
        """The messages that show an invoice (to find one already sent)."""
        return await self.core.repo.messages_for(invoice_id)

    async def remember_message(
        self, message: InvoiceMessage, shown: InvoiceStatus
    ) -> InvoiceMessage:
        return await self.invoices.remember_message(message, shown)

    async def message_in_chat(
        self, invoice_id: int, chat_id: int, role: MessageRole
    ) -> InvoiceMessage | None:
        return await self.invoices.message_in_chat(invoice_id, chat_id, role)

    async def moved_message(self, message: InvoiceMessage, chat_id: int, message_id: int) -> None:
        await self.invoices.moved_message(message, chat_id, message_id)

    async def invoice_for_customer(self, public_token: str) -> Invoice | None:
        return await self.invoices.invoice_for_customer(public_token)

    async def invoice_of(self, user_id: int, invoice_id: int) -> Invoice:
        return await self.invoices.invoice_of(user_id, invoice_id)

    async def cancel(self, user_id: int, invoice_id: int) -> tuple[Invoice, bool]:
        return await self.invoices.cancel(user_id, invoice_id)

    async def simulate_payment(self, invoice: Invoice) -> Invoice:
        return await self.invoices.simulate_payment(invoice)

    # -- statuses -------------------------------------------------------------------------
    async def check(
        self, invoice: Invoice, owner: str = "", not_before: datetime | None = None
    ) -> Invoice:
        return await self.sync.check(invoice, owner, not_before)

    async def refresh(self, invoice: Invoice) -> Invoice:
        return await self.sync.refresh(invoice)

    async def apply_status(self, invoice: Invoice, status: SessionStatus) -> Invoice:
        return await self.sync.apply_status(invoice, status)

    async def handle_callback(self, gateway_name: str, body: bytes, content_type: str) -> Invoice:
        return await self.callbacks.handle_callback(gateway_name, body, content_type)

    async def report_setup(self, gateway_name: str, problems: Sequence[str]) -> None:
        await self.alerts.setup_problems(gateway_name, problems)
