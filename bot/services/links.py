"""Reusable payment links (create, list, disable, open into a customer's own invoice) and
receipts (the receipt of a paid invoice, found again by its token, resent by the merchant)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.domain.drafts import InputError, InvoiceDraft, NotAllowed, parse_invoice_args
from bot.domain.links import NewLink, PaymentLink, Receipt, crypto_leg, new_token, tip_of
from bot.domain.models import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    MessageRole,
    NewOutbox,
    OutboxEvent,
    OutboxKind,
)
from bot.domain.money import plain_decimal
from bot.domain.staff import Action
from bot.services.access import AccessService
from bot.services.core import ServiceCore
from bot.services.invoices import InvoiceService

# `/link 3.50 Coffee`, `/link 3,50 USD Coffee`, `/link USD 3.50 Coffee`: a fixed amount;
# anything else (`/link Coffee`) is an open amount the customer names.
_AMOUNT_WORD = re.compile(r"^\d[\d.,]*$")
LIST_LIMIT = 20


def is_fixed_amount(words: Sequence[str]) -> bool:
    if not words:
        return False
    if _AMOUNT_WORD.match(words[0]):
        return True
    return len(words) > 1 and len(words[0]) == 3 and bool(_AMOUNT_WORD.match(words[1]))


class LinkService:
    """A merchant's reusable payment links and the invoices customers open from them."""

    def __init__(self, core: ServiceCore, access: AccessService, invoices: InvoiceService) -> None:
        self.core = core
        self.repo = core.repo
        self.access = access
        self.invoices = invoices

    async def create(self, user_id: int, words: Sequence[str]) -> PaymentLink:
        """`/link <amount> [currency] <description>` or `/link <description>` (open amount).
        Raises NotAllowed or InputError (nothing stored)."""
        seat = await self.access.require(user_id, Action.MANAGE_LINKS)
        words = [w for w in words if w]
        if not words:
            raise InputError("link_usage")
        gateway = await self.invoices.merchant_gateway(user_id)
        fixed = is_fixed_amount(words)
        if fixed:
            draft = parse_invoice_args(words, InvoiceKind.CHECKOUT)
        else:  # validated with a nominal amount: currency, description, gateway
            draft = InvoiceDraft("1", " ".join(words), None, None, InvoiceKind.CHECKOUT)
        draft = InvoiceDraft(draft.amount_text, draft.description, draft.currency, gateway)
        amount, currency, description, _gateway = self.invoices.validate(draft, gateway)
        if not description:
            raise InputError("link_usage")
        return await self.repo.link_create(
            NewLink(
                token=new_token(),
                merchant_id=seat.shop_id,
                amount_minor=amount if fixed else None,
                currency=currency,
                description=description,
                gateway=gateway,
                created_at=self.core.clock(),
            )
        )

    async def list(self, user_id: int) -> Sequence[PaymentLink]:
        seat = await self.access.require(user_id, Action.MANAGE_LINKS)
        return await self.repo.links_of(seat.shop_id, LIST_LIMIT)

    async def disable(self, user_id: int, token: str) -> PaymentLink:
        """Disable one of the shop's links; NotAllowed for anyone else's."""
        seat = await self.access.require(user_id, Action.MANAGE_LINKS)
        link = await self.repo.link_get(token)
        if link is None or link.merchant_id != seat.shop_id:
            raise NotAllowed("not your link")
        await self.repo.link_disable(token, seat.shop_id, self.core.clock())
        disabled = await self.repo.link_get(token)
        assert disabled is not None
        return disabled

    async def link(self, token: str) -> PaymentLink | None:
        return await self.repo.link_get(token) if token else None

    async def open(self, token: str, amount_text: str | None = None) -> Invoice:
        """A fresh invoice of the link for the customer who opened it. InputError when the
        link is unknown, disabled, or its merchant is one no more, or the amount is bad;
        GatewayError when the gateway fails (the invoice is stored as failed)."""
        link = await self.link(token)
        if link is None:
            raise InputError("link_not_found")
        if not link.enabled or await self.access.shop_of(link.merchant_id) != link.merchant_id:
            raise InputError("link_disabled")
        if link.amount_minor is None:
            if not amount_text:
                raise InputError("amount_missing")
            amount = amount_text.strip()
        else:
            amount = plain_decimal(link.amount_minor, link.currency)
        gateway = link.gateway if link.gateway in self.core.gateways else None
        draft = InvoiceDraft(amount, link.description, link.currency, gateway)
        invoice = await self.invoices.create_for(link.merchant_id, draft)
        await self.repo.link_add_invoice(link.token, invoice.id)
        return invoice


class ReceiptService:
    """The receipt of a paid invoice: its token, what it shows, and the merchant's resend."""

    def __init__(self, core: ServiceCore, invoices: InvoiceService) -> None:
        self.core = core
        self.repo = core.repo
        self.invoices = invoices

    async def receipt_for(self, invoice: Invoice) -> Receipt:
        """What the receipt of `invoice` shows; its token is made the first time."""
        token = await self.repo.receipt_token(invoice.id, new_token(), self.core.clock())
        prefs = await self.repo.get_prefs(invoice.merchant_id)
        return Receipt(
            invoice_id=invoice.id,
            token=token,
            merchant=prefs.name or str(invoice.merchant_id),
            note=invoice.description,
            amount_minor=invoice.amount_minor,
            currency=invoice.currency,
            paid_at=invoice.paid_at,
            reference=invoice.gateway_session_id or "—",
            crypto=crypto_leg(invoice),
            tip_minor=tip_of(invoice),
            number=invoice.shown_number,
        )

    async def by_token(self, token: str) -> tuple[Invoice, Receipt] | None:
        """The paid invoice and receipt a receipt link names; None for anything else."""
        invoice_id = await self.repo.receipt_invoice(token) if token else None
        invoice = await self.repo.get_invoice(invoice_id) if invoice_id is not None else None
        if invoice is None or invoice.status is not InvoiceStatus.PAID:
            return None
        return invoice, await self.receipt_for(invoice)

    async def resend(self, user_id: int, invoice_id: int) -> int:
        """The merchant sends the receipt again to every customer who opened the invoice
        (through the outbox, once per press); how many customers that is."""
        invoice = await self.invoices.invoice_of(user_id, invoice_id)
        if invoice.status is not InvoiceStatus.PAID:
            raise InputError("not_paid")
        messages = await self.repo.messages_for(invoice.id)
        chats = sorted(
            {m.chat_id for m in messages if m.role is MessageRole.CUSTOMER and m.chat_id}
        )
        # Once per press; presses within the same 10 seconds (a double tap) count once.
        stamp = int(self.core.clock().timestamp()) // 10
        await self.core.enqueue(
            [
                NewOutbox(
                    kind=OutboxKind.RECEIPT,
                    event=OutboxEvent.PAID,
                    invoice_id=invoice.id,
                    chat_id=chat,
                    payload={"resent": True},
                    dedupe_key=f"i{invoice.id}:receipt:c{chat}:resend:{stamp}",
                )
                for chat in chats
            ]
        )
        return len(chats)
