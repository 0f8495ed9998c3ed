"""Refunds (bot/domain/refunds.py): a manager marks them, the customer names an address,
the manager records them made (with the ledger entry) or cancels them.

Every action of the shop's side goes through `AccessService.require(user, Action.REFUND)`
and acts only on the seat's shop; the customer's side needs the refund's token (the deep
link), which is the secret.
"""

from __future__ import annotations

from datetime import timedelta

from bot.domain.drafts import InputError, NotAllowed
from bot.domain.models import Invoice, MessageRole
from bot.domain.money import AmountError, normalize_amount, parse_amount, split_currency
from bot.domain.refunds import (
    OPEN_STATES,
    NewRefund,
    Refund,
    RefundState,
    check_amount,
    clean_address,
    clean_reason,
    clean_tx_ref,
    new_refund_token,
    paid_minor,
    refundable_minor,
)
from bot.domain.staff import Action, Seat
from bot.ids import INVOICE_ID_MAX, parse_id
from bot.services.access import AccessService
from bot.services.core import ServiceCore

# After opening the link, the customer's next message is taken as the address this long.
ADDRESS_WAIT = timedelta(hours=1)
LIST_LIMIT = 20


def parse_number(text: str, prefix: str = "#") -> int | None:
    """`12`, `#12` (an invoice) or `R7`, `r7` (a refund) as a number; None otherwise."""
    cleaned = text.strip()
    for mark in (prefix, prefix.lower()):
        cleaned = cleaned.removeprefix(mark)
    return parse_id(cleaned, INVOICE_ID_MAX)


class RefundService:
    """Marks, lists, settles and cancels refunds; takes the customer's address."""

    def __init__(self, core: ServiceCore, access: AccessService) -> None:
        self.core = core
        self.repo = core.repo
        self.access = access

    async def seat(self, user_id: int) -> Seat:
        """The user's seat when they may refund; NotAllowed otherwise."""
        return await self.access.require(user_id, Action.REFUND)

    # -- the shop's side ----------------------------------------------------------------------
    async def mark(
        self,
        user_id: int,
        number_text: str,
        amount_text: str | None,
        reason_text: str,
        *,
        group: str = ",",
    ) -> tuple[Refund, Invoice]:
        """Mark the shop's invoice #N for refund: the amount (None: all that is left) in the
        invoice's currency, and a reason. Raises NotAllowed or InputError."""
        seat = await self.seat(user_id)
        number = parse_number(number_text)
        if number is None:
            raise InputError("refund_usage")
        invoice = await self.repo.invoice_by_number(seat.shop_id, number)
        if invoice is None or invoice.merchant_id != seat.shop_id:
            raise InputError("refund_no_invoice", number=number)
        reason = clean_reason(reason_text)
        entries = await self.repo.ledger_for_invoice(invoice.id)
        if paid_minor(entries) <= 0:
            raise InputError("refund_not_paid", number=number)
        refunds = await self.repo.refunds_of_invoice(invoice.id)
        refundable = refundable_minor(entries, refunds)
        amount = refundable if amount_text is None else self._amount(amount_text, invoice, group)
        check_amount(amount, refundable, invoice.currency)
        refund = await self.repo.refund_create(
            NewRefund(
                invoice_id=invoice.id,
                shop_id=seat.shop_id,
                amount_minor=amount,
                currency=invoice.currency,
                reason=reason,
                token=new_refund_token(),
                requested_by=user_id,
                created_at=self.core.clock(),
            )
        )
        if refund is None:  # another refund of the invoice came first: say what is left now
            refunds = await self.repo.refunds_of_invoice(invoice.id)
            check_amount(amount, refundable_minor(entries, refunds), invoice.currency)
            raise InputError("refund_nothing_left")
        return refund, invoice

    def _amount(self, text: str, invoice: Invoice, group: str) -> int:
        """An amount as people write it (`3.50`, `3,50`, `€3.50`) in the invoice's currency."""
        number, currency = split_currency(text.strip())
        if currency is not None and currency != invoice.currency:
            raise InputError("refund_currency", currency=currency, expected=invoice.currency)
        try:
            return parse_amount(
                normalize_amount(number, group), invoice.currency, self.core.policy.max_amount
            )
        except AmountError as exc:
            raise InputError(f"amount_{exc.code}", **exc.params) from None

    async def _own(self, seat: Seat, id_text: str) -> Refund:
        refund_id = parse_number(id_text, "R")
        refund = None if refund_id is None else await self.repo.refund_get(refund_id)
        if refund is None or refund.shop_id != seat.shop_id:
            raise InputError("refund_not_found", id=id_text.strip()[:20])
        return refund

    async def settle(self, user_id: int, id_text: str, tx_text: str) -> Refund:
        """Record the refund made, with its transaction reference (and its ledger entry)."""
        seat = await self.seat(user_id)
        refund = await self._own(seat, id_text)
        tx_ref = clean_tx_ref(tx_text)
        if not refund.is_open:
            raise InputError("refund_not_open", id=refund.id, state=refund.state.value)
        invoice = await self.repo.get_invoice(refund.invoice_id)
        assert invoice is not None, "a refund's invoice is never deleted"
        done = await self.repo.refund_settle(
            refund.id, tx_ref, user_id, invoice.gateway, self.core.clock()
        )
        return done or await self._closed(refund.id)

    async def cancel(self, user_id: int, id_text: str) -> Refund:
        seat = await self.seat(user_id)
        refund = await self._own(seat, id_text)
        if not refund.is_open:
            raise InputError("refund_not_open", id=refund.id, state=refund.state.value)
        done = await self.repo.refund_cancel(refund.id, user_id, self.core.clock())
        return done or await self._closed(refund.id)

    async def _closed(self, refund_id: int) -> Refund:
        """Someone else moved it first: say what it is now."""
        now = await self.repo.refund_get(refund_id)
        state = now.state.value if now is not None else RefundState.CANCELLED.value
        raise InputError("refund_not_open", id=refund_id, state=state)

    async def open_refunds(self, user_id: int) -> list[Refund]:
        seat = await self.seat(user_id)
        return await self.repo.refunds_of_shop(seat.shop_id, OPEN_STATES, limit=LIST_LIMIT)

    async def refund_of(self, user_id: int, refund_id: int) -> Refund:
        seat = await self.seat(user_id)
        refund = await self.repo.refund_get(refund_id)
        if refund is None or refund.shop_id != seat.shop_id:
            raise NotAllowed("not this shop's refund")
        return refund

    async def customers_of(self, invoice_id: int) -> list[int]:
        """The customers who opened the invoice in their chat (to be asked directly)."""
        messages = await self.repo.messages_for(invoice_id)
        return list(
            dict.fromkeys(
                m.user_id
                for m in messages
                if m.role is MessageRole.CUSTOMER and m.user_id is not None and m.user_id > 0
            )
        )

    # -- the customer's side ------------------------------------------------------------------
    async def open_link(self, token: str, customer_id: int) -> Refund | None:
        """The refund of a deep link; while it is open, the customer's next message is
        taken as the address (for an hour)."""
        refund = await self.repo.refund_by_token(token)
        if refund is None or not refund.is_open:
            return refund
        if customer_id in (refund.shop_id, refund.requested_by):
            return refund  # the shop looking at its own link: its messages stay its own
        now = self.core.clock()
        waiting = await self.repo.refund_await_address(
            refund.id, customer_id, now + ADDRESS_WAIT, now
        )
        return waiting or await self.repo.refund_get(refund.id)

    async def awaiting(self, customer_id: int) -> Refund | None:
        return await self.repo.refund_awaiting(customer_id, self.core.clock())

    async def give_address(self, refund: Refund, customer_id: int, text: str) -> Refund:
        """Store the customer's address; InputError when it is none or the refund closed."""
        address = clean_address(text)
        done = await self.repo.refund_set_address(
            refund.id, address, customer_id, self.core.clock()
        )
        if done is None:
            raise InputError("refund_closed")
        return done

    async def by_token(self, token: str) -> Refund | None:
        return await self.repo.refund_by_token(token)


__all__ = ["ADDRESS_WAIT", "RefundService", "parse_number"]
