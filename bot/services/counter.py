"""The counter (the Mini App's point of sale): what a merchant's keypad offers, a sale with
its tip booked apart, the invoice a token names, and the day's paid sales."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.drafts import InputError, InvoiceDraft, NotAllowed
from bot.domain.models import Invoice, InvoiceKind
from bot.domain.money import AmountError, exponent, parse_amount, plain_decimal
from bot.domain.staff import Action
from bot.domain.tips import CounterSale, DaySales, TipError, choose_tip, parse_percents
from bot.services.access import AccessService
from bot.services.core import ServiceCore
from bot.services.invoices import InvoiceService

# The kinds a counter can show: a Lightning QR first (paid in seconds), then checkout links.
COUNTER_KINDS = (InvoiceKind.LIGHTNING, InvoiceKind.CHECKOUT)
MAX_TZ_OFFSET_MINUTES = 14 * 60


@dataclass(frozen=True, slots=True)
class CounterOption:
    """One way to be paid at the counter: a gateway and the kind of invoice it makes."""

    gateway: str
    kind: InvoiceKind
    title: str

    @property
    def key(self) -> str:
        return f"{self.gateway}:{self.kind.value}"


@dataclass(frozen=True, slots=True)
class CounterSetup:
    currency: str
    decimals: int
    options: tuple[CounterOption, ...]
    tip_percents: tuple[int, int, int]


class CounterService:
    """The counter for merchants; one invoice by its public token for anyone holding it."""

    def __init__(self, core: ServiceCore, access: AccessService, invoices: InvoiceService) -> None:
        self.core = core
        self.repo = core.repo
        self.access = access
        self.invoices = invoices

    async def role(self, user_id: int) -> str:
        return "merchant" if await self.access.is_merchant(user_id) else "customer"

    async def setup(self, user_id: int) -> CounterSetup:
        """The merchant's keypad: currency, the ways to be paid in it, the tip percentages."""
        seat = await self.access.require(user_id, Action.SELL)
        preferred = await self.invoices.merchant_gateway(user_id)
        gateways = self.core.gateways
        own = gateways.get(preferred) or next(iter(gateways.values()), None)
        if own is None:
            raise InputError("gateway_unavailable", gateway=preferred, available="")
        currency = self.invoices.default_currency_for(own)
        names = [preferred, *(name for name in gateways if name != preferred)]
        options = tuple(
            CounterOption(name, kind, gateways[name].title)
            for kind in COUNTER_KINDS
            for name in names
            if name in gateways
            and kind in gateways[name].kinds
            and gateways[name].accepts_currency(currency)
        )
        percents = await self.repo.tip_percents(seat.shop_id)
        return CounterSetup(currency, exponent(currency), options, percents)

    async def create_sale(
        self,
        user_id: int,
        *,
        amount_text: str,
        note: str,
        option_key: str | None,
        tip_kind: str,
        tip_percent: object,
    ) -> tuple[Invoice, CounterSale]:
        """An invoice for amount + tip at the chosen gateway, its split stored apart.
        Raises NotAllowed, InputError (nothing stored) or GatewayError (stored as failed)."""
        setup = await self.setup(user_id)
        if not setup.options:
            raise InputError("counter_no_gateway")
        chosen = next((o for o in setup.options if o.key == option_key), None)
        if option_key and chosen is None:
            raise InputError("counter_no_gateway")
        option = chosen or setup.options[0]
        currency = setup.currency
        try:
            amount = parse_amount(amount_text, currency, self.core.policy.max_amount)
        except AmountError as exc:
            raise InputError(f"amount_{exc.code}", **exc.params) from None
        try:
            tip = choose_tip(amount, currency, tip_kind, tip_percent, setup.tip_percents)
        except TipError:
            raise InputError("counter_bad_tip") from None
        draft = InvoiceDraft(
            amount_text=plain_decimal(amount + tip.minor, currency),
            description=note,
            currency=currency,
            gateway=option.gateway,
            kind=option.kind,
        )
        invoice = await self.invoices.create_invoice(user_id, draft)
        sale = CounterSale(
            invoice_id=invoice.id,
            merchant_id=invoice.merchant_id,
            amount_minor=amount,
            tip_minor=tip.minor,
            tip_kind=tip.kind,
            currency=currency,
        )
        await self.repo.counter_add_sale(sale, self.core.clock())
        return invoice, sale

    async def invoice_by_token(
        self, user_id: int, token: str
    ) -> tuple[Invoice, CounterSale | None, bool]:
        """(invoice, its counter split, whether the caller is its merchant) for whoever holds
        the invoice's public token; NotAllowed for any other token."""
        invoice = await self.invoices.invoice_for_customer(token)
        if invoice is None:
            raise NotAllowed("no such invoice")
        seat = await self.access.seat(user_id)
        mine = self.core.is_admin(user_id) or (
            seat is not None
            and seat.shop_id == invoice.merchant_id
            and (seat.may(Action.SEE_SHOP) or invoice.seller_id == user_id)
        )
        return invoice, await self.repo.counter_sale(invoice.id), mine

    async def reread(self, invoice: Invoice) -> Invoice:
        """The stored invoice as it is now (for the live status)."""
        return await self.repo.get_invoice(invoice.id) or invoice

    async def today(self, user_id: int, tz_offset_minutes: int) -> list[DaySales]:
        """The merchant's paid sales since midnight of the caller's local day (their device's
        offset from UTC, in minutes east)."""
        seat = await self.access.require(user_id, Action.SELL)
        offset = timedelta(
            minutes=max(-MAX_TZ_OFFSET_MINUTES, min(MAX_TZ_OFFSET_MINUTES, tz_offset_minutes))
        )
        start = day_start(self.core.clock(), offset)
        mine = None if seat.may(Action.SEE_SHOP) else user_id  # a cashier: their own sales
        return await self.repo.counter_day(
            seat.shop_id, start, start + timedelta(days=1), created_by=mine
        )

    async def tip_percents(self, user_id: int) -> tuple[int, int, int]:
        """The tip percentages of the user's shop."""
        return await self.repo.tip_percents(await self.access.shop_of(user_id) or user_id)

    async def set_tip_percents(self, user_id: int, words: list[str]) -> tuple[int, int, int]:
        """`/settings tips 5 10 15`: InputError for anything but three whole percentages."""
        seat = await self.access.require(user_id, Action.SHOP_SETTINGS)
        try:
            percents = parse_percents(words)
        except TipError:
            raise InputError("counter_tips_invalid") from None
        await self.repo.set_tip_percents(seat.shop_id, percents)
        return percents


def day_start(now: datetime, offset: timedelta) -> datetime:
    """Midnight of the local day (UTC + offset) that `now` falls in, as UTC."""
    return (now + offset).replace(hour=0, minute=0, second=0, microsecond=0) - offset
