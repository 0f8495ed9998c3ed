"""Creating invoices (validate, store, open the gateway session), finding them for the
people allowed to see them, and the merchant's actions on one (cancel, sandbox payment)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.domain import notices
from bot.domain.drafts import (
    KIND_GATEWAYS,
    InputError,
    InvoiceDraft,
    NotAllowed,
    new_public_token,
    reference_for,
)
from bot.domain.models import (
    Invoice,
    InvoiceKind,
    InvoiceMessage,
    InvoiceStatus,
    MessageRole,
    NewInvoice,
    Transition,
)
from bot.domain.money import AmountError, parse_amount
from bot.domain.polling import UNFINISHED_CREATION_AFTER, expiry_for, first_poll_delay
from bot.domain.staff import Action
from bot.failpoints import crash_point
from bot.gateways.base import (
    Gateway,
    GatewayAuthError,
    GatewayError,
    PaymentState,
    SessionRequest,
    SessionStatus,
)
from bot.services.access import AccessService
from bot.services.alerts import Alerts
from bot.services.core import ServiceCore, outcome
from bot.services.sync import StatusSync
from bot.text import strip_controls

log = logging.getLogger(__name__)


class InvoiceService:
    """One merchant's invoices, from the command to the open gateway session."""

    def __init__(
        self, core: ServiceCore, access: AccessService, sync: StatusSync, alerts: Alerts
    ) -> None:
        self.core = core
        self.repo = core.repo
        self.access = access
        self.sync = sync
        self.alerts = alerts

    # -- choosing a gateway ---------------------------------------------------------------
    async def merchant_gateway(self, user_id: int) -> str:
        """The /settings gateway of the user's shop (its owner's), else DEFAULT_GATEWAY."""
        prefs = await self.repo.get_prefs(await self.access.shop_of(user_id) or user_id)
        if prefs.gateway and prefs.gateway in self.core.gateways:
            return prefs.gateway
        return self.core.policy.default_gateway

    def gateway_for_kind(self, kind: InvoiceKind) -> str | None:
        """The gateway for /pos (Mion, else the sandbox's Lightning) or /onchain (MixPay
        with a payment asset); None when no configured gateway can take that kind."""
        gateways = self.core.gateways
        for name in KIND_GATEWAYS.get(kind, tuple(gateways)):
            gw = gateways.get(name)
            if gw is not None and kind in gw.kinds:
                return name
        return None

    # -- creating -------------------------------------------------------------------------
    def validate(self, draft: InvoiceDraft, gateway_name: str) -> tuple[int, str, str, Gateway]:
        """Check a draft without side effects: (amount_minor, currency, description, gateway)."""
        gateways, policy = self.core.gateways, self.core.policy
        gateway = gateways.get(gateway_name)
        if gateway is None:
            raise InputError(
                "gateway_unavailable", gateway=gateway_name, available=", ".join(gateways)
            )
        if draft.kind not in gateway.kinds:
            raise InputError("kind_unsupported", gateway=gateway.title)
        currency = (draft.currency or self._default_currency_for(gateway)).upper()
        if not gateway.accepts_currency(currency) and not gateway.currencies:
            raise InputError("currency_not_taken", gateway=gateway.title, currency=currency)
        if not gateway.accepts_currency(currency):
            raise InputError(
                "currency_unsupported",
                gateway=gateway.title,
                currency=currency,
                accepted=", ".join(gateway.currencies),
            )
        try:
            amount = parse_amount(draft.amount_text, currency, policy.max_amount)
        except AmountError as exc:
            raise InputError(f"amount_{exc.code}", **exc.params) from None
        description = strip_controls(draft.description)  # no NUL or terminal escapes stored
        if len(description) > policy.max_description_length:
            raise InputError("description_too_long", count=policy.max_description_length)
        return amount, currency, description, gateway

    def default_currency_for(self, gateway: Gateway) -> str:
        """DEFAULT_CURRENCY when the gateway takes it, else the gateway's first currency."""
        return self._default_currency_for(gateway)

    def _default_currency_for(self, gateway: Gateway) -> str:
        default = self.core.policy.default_currency
        if gateway.accepts_currency(default):
            return default
        return gateway.currencies[0] if gateway.currencies else default

    async def check_draft(self, user_id: int, draft: InvoiceDraft) -> None:
        """Raise NotAllowed or InputError as `create_invoice` would, touching nothing."""
        await self.access.require(user_id, Action.SELL)
        self.validate(draft, draft.gateway or await self.merchant_gateway(user_id))

    async def create_invoice(
        self,
        user_id: int,
        draft: InvoiceDraft,
        *,
        update_id: int | None = None,
        timeout: float | None = None,
    ) -> Invoice:
        """Validate, store a pending invoice, create its gateway session, and return it.

        With `update_id` (the command's update, in the inbox) it is idempotent: the invoice
        that update created before is returned, its session resumed if the creation was cut
        short (found at the gateway by reference, or created). `timeout` bounds the gateway
        part; past it the invoice is failed and a retryable GatewayError raised.

        Raises NotAllowed, InputError (nothing stored, nothing sent to a gateway), or
        GatewayError (the invoice is stored as failed with the reason). A resumed invoice
        that had failed is returned as it is (failed, with its reason).
        """
        seat = await self.access.require(user_id, Action.SELL)
        return await self.create_for(
            seat.shop_id, draft, update_id=update_id, timeout=timeout, created_by=user_id
        )

    async def create_for(
        self,
        user_id: int,
        draft: InvoiceDraft,
        *,
        update_id: int | None = None,
        timeout: float | None = None,
        created_by: int | None = None,
    ) -> Invoice:
        """`create_invoice` for a shop already checked (a payment link opened by a customer
        creates the invoice in the link's shop's name); `created_by` made the sale."""
        core = self.core
        gateway_name = draft.gateway or await self.merchant_gateway(user_id)
        amount, currency, description, gateway = self.validate(draft, gateway_name)
        now = core.clock()
        expiry = expiry_for(core.policy, gateway_name, draft.kind)
        new = NewInvoice(
            public_token=new_public_token(),
            merchant_id=user_id,
            amount_minor=amount,
            currency=currency,
            description=description,
            gateway=gateway_name,
            kind=draft.kind,
            created_at=now,
            expires_at=now + expiry,
            next_poll_at=now + UNFINISHED_CREATION_AFTER,
            created_by=created_by,
        )
        if update_id is None:
            invoice = await self.repo.create_invoice(new)
        else:
            invoice, created_now = await self.repo.inbox_create_invoice(update_id, new)
            if invoice.gateway_session_id is not None or invoice.status is not InvoiceStatus.PENDING:
                return invoice  # created before the process died: nothing more to do
            if not created_now:
                log.info("resuming the creation of invoice %s", invoice.id)
                gateway = core.gateways.get(invoice.gateway, gateway)
                gateway.expect_existing(reference_for(invoice))
        request = SessionRequest(
            reference=reference_for(invoice),
            amount_minor=invoice.amount_minor,
            currency=invoice.currency,
            description=invoice.description,
            kind=invoice.kind,
            expires_in=expiry,
            callback_url=core.callback_url(invoice.gateway),
        )
        try:
            async with asyncio.timeout(timeout):
                session = await gateway.create_session(request)
        except TimeoutError:
            exc = GatewayError(
                f"{gateway.title} did not answer within {timeout:g} s",
                gateway=invoice.gateway,
                retryable=True,
            )
            core.metrics.gateway_request(invoice.gateway, "create", "timeout")
            await self._fail_creation(invoice, exc)
            raise exc from None
        except GatewayError as exc:
            core.metrics.gateway_request(invoice.gateway, "create", outcome(exc))
            await self._fail_creation(invoice, exc)
            raise
        crash_point("after_session_created")
        core.metrics.gateway_request(invoice.gateway, "create", "ok")
        invoice = await self.repo.attach_session(
            invoice.id,
            gateway_session_id=session.session_id,
            checkout_url=session.checkout_url,
            payment=dict(session.payment),
            expires_at=session.expires_at or invoice.expires_at,
            next_poll_at=now + first_poll_delay(core.policy, invoice.kind),
            now=core.clock(),
        )
        await self._register_callback(gateway, invoice)
        return invoice

    async def _fail_creation(self, invoice: Invoice, exc: GatewayError) -> None:
        if isinstance(exc, GatewayAuthError):
            await self.alerts.auth_failed(invoice.gateway, exc)
        await self.repo.transition(
            Transition(
                invoice_id=invoice.id,
                expected=frozenset({InvoiceStatus.PENDING}),
                new_status=InvoiceStatus.FAILED,
                at=self.core.clock(),
                raw_status="create_failed",
                failure_reason=exc.user_message[:500],
            )
        )

    async def _register_callback(self, gateway: Gateway, invoice: Invoice) -> None:
        url = self.core.callback_url(invoice.gateway)
        if not (url and gateway.supports_callbacks and invoice.gateway_session_id):
            return
        try:
            await gateway.register_callback(invoice.gateway_session_id, url)
        except GatewayError as exc:
            # Polling still watches the invoice; a lost webhook only costs latency.
            log.warning("webhook registration failed for invoice %s: %s", invoice.id, exc)

    # -- showing --------------------------------------------------------------------------
    async def remember_message(
        self, message: InvoiceMessage, shown: InvoiceStatus
    ) -> InvoiceMessage:
        """Store a message that shows an invoice; if the invoice moved on while the message
        was being sent, queue an edit so it does not stay stale."""
        stored = await self.repo.add_message(message)
        current = await self.repo.get_invoice(message.invoice_id)
        if current is not None and current.status != shown and stored.id is not None:
            await self.core.enqueue([notices.catch_up_edit(current, stored)])
        return stored

    async def message_in_chat(
        self, invoice_id: int, chat_id: int, role: MessageRole
    ) -> InvoiceMessage | None:
        """The newest message showing the invoice in that chat for that role (a link opened
        again, an invoice tapped twice in /invoices): it is moved, not copied."""
        found = [
            m
            for m in await self.repo.messages_for(invoice_id)
            if m.chat_id == chat_id and m.role is role and m.inline_message_id is None
        ]
        return found[-1] if found else None

    async def moved_message(self, message: InvoiceMessage, chat_id: int, message_id: int) -> None:
        """The invoice's message in a chat was sent again: edits go to the new one."""
        assert message.id is not None, "a stored message"
        await self.repo.replace_message(message.id, chat_id=chat_id, message_id=message_id)

    async def invoice_for_customer(self, public_token: str) -> Invoice | None:
        """The invoice a share link names; None for anything else."""
        if not public_token or len(public_token) > 64:
            return None
        return await self.repo.get_invoice_by_token(public_token)

    async def invoice_of_sandbox_session(self, session_id: str) -> Invoice | None:
        """The invoice a sandbox checkout link (a session id) names."""
        return await self.repo.get_invoice_by_session("sandbox", session_id) if session_id else None

    async def invoice_of(self, user_id: int, invoice_id: int) -> Invoice:
        """An invoice of the user's shop that their role lets them see: any of the shop's
        for its owner and managers, their own sales for a cashier (admins may see any);
        NotAllowed otherwise."""
        invoice = await self.repo.get_invoice(invoice_id)
        if invoice is not None and self.core.is_admin(user_id):
            return invoice
        seat = await self.access.seat(user_id)
        if (
            invoice is None
            or seat is None
            or invoice.merchant_id != seat.shop_id
            or not (seat.may(Action.SEE_SHOP) or invoice.seller_id == user_id)
        ):
            raise NotAllowed("not your invoice")
        return invoice

    async def page_of(
        self, user_id: int, page: int, page_size: int
    ) -> tuple[int, int, Sequence[Invoice]]:
        """One page of the invoices the user may see (the shop's, or a cashier's own sales),
        newest first: (total, page shown, invoices); a page past the end shows the last one.
        NotAllowed for a customer."""
        seat = await self.access.require(user_id, Action.SEE_OWN_SALES)
        mine = None if seat.may(Action.SEE_SHOP) else user_id
        total = await self.repo.count_invoices(seat.shop_id, created_by=mine)
        if total == 0:
            return 0, 0, []
        page = min(page, (total - 1) // page_size)
        invoices = await self.repo.list_invoices(
            seat.shop_id, limit=page_size, offset=page * page_size, created_by=mine
        )
        return total, page, invoices

    # -- merchant actions -----------------------------------------------------------------
    async def cancel(self, user_id: int, invoice_id: int) -> tuple[Invoice, bool]:
        """Cancel a pending invoice: at the gateway when it can, locally otherwise.
        Returns (invoice, cancelled_at_gateway)."""
        invoice = await self.invoice_of(user_id, invoice_id)
        if invoice.status is not InvoiceStatus.PENDING:
            raise InputError("not_pending", status=invoice.status.value)
        gateway = self.core.gateways.get(invoice.gateway)
        at_gateway = False
        if gateway is not None and gateway.supports_cancel and invoice.gateway_session_id:
            try:
                at_gateway = await gateway.cancel(invoice.gateway_session_id)
            except GatewayError as exc:
                log.warning(
                    "cancel at %s failed for invoice %s: %s", invoice.gateway, invoice.id, exc
                )
        status = SessionStatus(
            state=PaymentState.CANCELLED,
            raw_status="cancelled" if at_gateway else "cancelled_locally",
        )
        updated = await self.sync.move(invoice, InvoiceStatus.CANCELLED, status)
        if updated.status is not InvoiceStatus.CANCELLED:
            raise InputError("not_pending", status=updated.status.value)
        return updated, at_gateway

    async def simulate_payment(self, invoice: Invoice) -> Invoice:
        """Sandbox: pay the session at the simulator, then learn of it like any payment."""
        gateway = self.core.gateways.get(invoice.gateway)
        if gateway is None or not gateway.can_simulate or invoice.gateway_session_id is None:
            raise InputError("cannot_simulate")
        if invoice.status is not InvoiceStatus.PENDING:
            return invoice
        await gateway.simulate_payment(invoice.gateway_session_id)
        return await self.sync.refresh(invoice)
