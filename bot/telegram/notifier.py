"""The outbox sender: turns outbox rows into Telegram edits and messages, within limits.

Delivery is at least once with one narrow exception, by design:
- Edits are idempotent: the message is re-rendered from the stored invoice, and Telegram's
  "message is not modified" counts as done. An edit can repeat harmlessly.
- New messages (receipts, admin and merchant notices) are marked sent right after Telegram
  accepts them. The one crash window: the process dies after Telegram accepted the message
  and before the row is marked sent (one local database write, well under a millisecond on
  SQLite). Then the message is sent again after restart. Nothing else sends twice.

Telegram's limits are kept by the bot's rate limiter (`bot/telegram/ratelimit.py`), for the outbox
and the handlers' replies alike; the outbox sends with `rate_limit_args=OUTBOX`, so replies
to users go first. A 429 the limiter could not retry away puts the row back for later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from telegram import InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import ExtBot

from bot.domain.links import Receipt
from bot.domain.models import (
    Invoice,
    InvoiceMessage,
    InvoiceStatus,
    OutboxEvent,
    OutboxItem,
    OutboxKind,
)
from bot.failpoints import crash_point
from bot.metrics import Metrics
from bot.telegram.notice_texts import notice_text
from bot.telegram.ratelimit import OUTBOX, RateLimitArgs, TelegramRateLimiter, retry_after_seconds
from bot.telegram.receipts import send_receipt
from bot.telegram.views import (
    ViewContext,
    has_qr,
    invoice_keyboard,
    invoice_text,
    render_qr,
)
from storage.base import Repository

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
LanguageOf = Callable[[int], Awaitable[str]]
ReceiptOf = Callable[[Invoice], Awaitable[Receipt]]

_NOT_MODIFIED = "message is not modified"
_GONE = (
    "message to edit not found",
    "message can't be edited",
    "message_id_invalid",
    "message not found",
    "there is no text in the message to edit",
    "there is no caption in the message to edit",
)


@dataclass(slots=True)
class SendResult:
    done: bool
    retry_in: float = 0.0
    error: str = ""


class Notifier:
    """Delivers the outbox; `kick()` wakes it at once, otherwise it looks every second."""

    def __init__(
        self,
        bot: ExtBot[RateLimitArgs],
        repo: Repository,
        view: Callable[[], ViewContext],
        *,
        language_of: LanguageOf,
        clock: Clock,
        owner: str,
        metrics: Metrics,
        limiter: TelegramRateLimiter | None = None,
        batch: int = 200,
        idle_wait: float = 1.0,
        lease: timedelta = timedelta(minutes=2),
        max_held: int | None = None,
        fence: Callable[[], bool] = lambda: True,
        receipt_of: ReceiptOf | None = None,
    ) -> None:
        self.bot = bot
        self.repo = repo
        # The receipt of a paid invoice (an image); without it receipts are text only.
        self.receipt_of = receipt_of
        self.view = view
        self.language_of = language_of
        self.clock = clock
        self.owner = owner
        self.metrics = metrics
        # The bot's own limiter: its figures size what may wait here.
        self.limiter = limiter or TelegramRateLimiter()
        self.batch = batch
        self.idle_wait = idle_wait
        self.lease = lease
        # Claimed rows waiting in memory, at most: what goes out at the global pace within
        # most of the lease (2,400 at 25 a second), so none outlives its lease unsent.
        self.max_held = max_held or max(
            batch, int(lease.total_seconds() * 0.8 / self.limiter.global_interval)
        )
        # False while another instance may take this one for dead (bot/liveness.py): then
        # nothing is claimed and nothing sent until it is True again.
        self.fence = fence
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._queues: dict[int | None, deque[OutboxItem]] = {}
        self._senders: dict[int | None, asyncio.Task[None]] = {}
        self._held: set[int] = set()

    def kick(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tillbot-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        senders = list(self._senders.values())
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        self._senders.clear()
        self._queues.clear()
        self._held.clear()  # unsent rows: their leases lapse and they are claimed again

    def drop_held(self) -> None:
        """Forget the claimed rows waiting here, unsent: this instance may have been taken
        for dead, so another may send them (a send under way still finishes)."""
        for queue in self._queues.values():
            queue.clear()
        self._held.clear()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            try:
                await self.dispatch()
            except asyncio.CancelledError:
                raise
            except Exception:  # storage hiccup: keep the loop alive, try again shortly
                log.exception("outbox delivery failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.idle_wait)
            self._wake.clear()

    async def dispatch(self) -> int:
        """Claim the rows that are due and queue each on its chat's sender (one task per
        chat, in order); return how many were queued. Does not wait for the sends.

        Each chat waits out only its own spacing (one message a second in a private chat),
        so a chat with many rows (an admin told of every payment) never holds up the
        others: their rows are claimed and sent meanwhile."""
        queued = 0
        while len(self._held) < self.max_held and self.fence():
            limit = min(self.batch, self.max_held - len(self._held))
            items = await self.repo.claim_outbox(
                now=self.clock(), owner=self.owner, lease=self.lease, limit=limit
            )
            for item in items:
                if item.id in self._held:
                    continue  # queued here already (its lease ran out while it waited)
                queue = self._queues.setdefault(item.chat_id, deque())
                if len(queue) >= self._chat_capacity(item.chat_id):
                    # It could not go before its lease ends: leave it to that claim.
                    continue
                queue.append(item)
                self._held.add(item.id)
                queued += 1
                if item.chat_id not in self._senders:
                    self._senders[item.chat_id] = asyncio.create_task(
                        self._send_chat(item.chat_id), name=f"tillbot-outbox-{item.chat_id}"
                    )
            if len(items) < limit:
                break
        return queued

    def _chat_capacity(self, chat_id: int | None) -> int:
        """How many rows of one chat may wait in memory: what goes out at the chat's pace
        within most of the lease."""
        if chat_id is None:
            return self.max_held
        seconds = self.lease.total_seconds() * 0.8
        return max(1, int(seconds / self.limiter.spacing(chat_id)))

    async def _send_chat(self, chat_id: int | None) -> None:
        queue = self._queues[chat_id]
        try:
            while queue:
                item = queue[0]
                if not self.fence():
                    # Paused while this instance may be taken for dead; if it is, drop_held
                    # empties the queue (the rows are someone else's now).
                    await asyncio.sleep(0.1)
                    continue
                try:
                    await self._deliver_row(item)
                except asyncio.CancelledError:
                    raise
                except Exception:  # storage hiccup: the lease lapses, it is claimed again
                    log.exception("outbox %s: delivery failed", item.id)
                finally:
                    if queue and queue[0] is item:  # (drop_held may have emptied it)
                        queue.popleft()
                    self._held.discard(item.id)
        finally:
            if self._queues.get(chat_id) is queue:
                del self._queues[chat_id]
            self._senders.pop(chat_id, None)
            self.kick()  # rows may have waited for room

    async def _deliver_row(self, item: OutboxItem) -> None:
        result = await self._deliver(item)
        if result.done and item.kind is not OutboxKind.EDIT:
            crash_point("after_send")
        now = self.clock()
        if result.done:
            await self.repo.complete_outbox(item.id, now=now)
            self.metrics.notification_sent(item.kind.value)
            return
        retry = max(result.retry_in, _backoff(item.attempts))
        await self.repo.retry_outbox(
            item.id,
            next_attempt_at=now + timedelta(seconds=retry),
            error=result.error[:300],
            now=now,
        )

    async def _deliver(self, item: OutboxItem) -> SendResult:
        try:
            if item.kind is OutboxKind.EDIT:
                return await self._edit(item)
            return await self._send_notice(item)
        except RetryAfter as exc:  # counted and paused by the limiter, which tried again
            return SendResult(done=False, retry_in=retry_after_seconds(exc), error="429")
        except Forbidden as exc:  # blocked by the user or kicked: nothing more can be done
            log.info("outbox %s: chat unreachable: %s", item.id, exc.message)
            return SendResult(done=True)
        except BadRequest as exc:
            if item.attempts >= 5:
                log.warning(
                    "outbox %s: giving up after %s tries: %s", item.id, item.attempts, exc.message
                )
                return SendResult(done=True)
            return SendResult(done=False, error=exc.message)
        except (NetworkError, TelegramError) as exc:
            self.metrics.telegram_error(type(exc).__name__)
            return SendResult(done=False, error=type(exc).__name__)

    # -- edits -----------------------------------------------------------------------------
    async def _edit(self, item: OutboxItem) -> SendResult:
        if item.message_row_id is None or item.invoice_id is None:
            return SendResult(done=True)
        message = await self.repo.get_message(item.message_row_id)
        invoice = await self.repo.get_invoice(item.invoice_id)
        if message is None or invoice is None:
            return SendResult(done=True)
        language = message.language or "en"
        view = self.view()
        text = invoice_text(invoice, language, message.role, view)
        keyboard = invoice_keyboard(invoice, language, message.role, view)
        try:
            if message.inline_message_id is not None:
                await self.bot.edit_message_text(
                    inline_message_id=message.inline_message_id,
                    text=text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard,
                    link_preview_options=None,
                    rate_limit_args=OUTBOX,
                )
            elif message.is_photo and item.event is OutboxEvent.RENEWED and has_qr(invoice):
                await self.bot.edit_message_media(
                    chat_id=message.chat_id,
                    message_id=message.message_id,
                    media=InputMediaPhoto(
                        await render_qr(invoice), caption=text, parse_mode=ParseMode.HTML
                    ),
                    reply_markup=keyboard,
                    rate_limit_args=OUTBOX,
                )
            elif message.is_photo:
                await self.bot.edit_message_caption(
                    chat_id=message.chat_id,
                    message_id=message.message_id,
                    caption=text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard,
                    rate_limit_args=OUTBOX,
                )
            else:
                await self.bot.edit_message_text(
                    chat_id=message.chat_id,
                    message_id=message.message_id,
                    text=text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard,
                    rate_limit_args=OUTBOX,
                )
        except BadRequest as exc:
            lowered = exc.message.lower()
            if _NOT_MODIFIED in lowered:
                return SendResult(done=True)
            if any(g in lowered for g in _GONE) and message.inline_message_id is None:
                await self._resend(message, invoice, text, keyboard)
                self._observe_delay(invoice, item)
                return SendResult(done=True)
            raise
        self._observe_delay(invoice, item)
        return SendResult(done=True)

    async def _resend(
        self,
        message: InvoiceMessage,
        invoice: Invoice,
        text: str,
        keyboard: InlineKeyboardMarkup | None,
    ) -> None:
        """The old message is gone or frozen: show the invoice in a new message instead."""
        assert message.chat_id is not None and message.id is not None
        sent: Message
        if invoice.status is InvoiceStatus.PENDING and message.is_photo and has_qr(invoice):
            sent = await self.bot.send_photo(
                message.chat_id,
                await render_qr(invoice),
                caption=text,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard,
                rate_limit_args=OUTBOX,
            )
        else:
            sent = await self.bot.send_message(
                message.chat_id,
                text,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard,
                rate_limit_args=OUTBOX,
            )
        await self.repo.replace_message(
            message.id, chat_id=sent.chat_id, message_id=sent.message_id
        )

    def _observe_delay(self, invoice: Invoice, item: OutboxItem) -> None:
        if item.event in (OutboxEvent.PAID, OutboxEvent.LATE_PAID) and invoice.paid_at:
            delay = (self.clock() - invoice.paid_at).total_seconds()
            if 0 <= delay < 86_400:
                self.metrics.notification_delay(delay)

    # -- new messages ----------------------------------------------------------------------
    async def _send_notice(self, item: OutboxItem) -> SendResult:
        if item.chat_id is None:
            return SendResult(done=True)
        language = await self.language_of(item.chat_id)
        invoice = await self.repo.get_invoice(item.invoice_id) if item.invoice_id else None
        merchant = await self._merchant_name(invoice.merchant_id) if invoice else None
        if (
            self.receipt_of is not None
            and invoice is not None
            and item.kind is OutboxKind.RECEIPT
            and item.event in (OutboxEvent.PAID, OutboxEvent.LATE_PAID)
            and invoice.status is InvoiceStatus.PAID
        ):
            receipt = await self.receipt_of(invoice)
            await send_receipt(
                self.bot, item.chat_id, self.view(), invoice, receipt, language, OUTBOX
            )
            return SendResult(done=True)
        text = notice_text(self.view(), item, invoice, language, merchant)
        if text is None:
            return SendResult(done=True)
        await self.bot.send_message(
            item.chat_id, text, parse_mode=ParseMode.HTML, rate_limit_args=OUTBOX
        )
        return SendResult(done=True)

    async def _merchant_name(self, merchant_id: int) -> str | None:
        """The merchant's name as Telegram last showed it to the bot (stored with their prefs)."""
        return (await self.repo.get_prefs(merchant_id)).name


def _backoff(attempts: int) -> float:
    return float(min(2 ** min(attempts, 8), 300))
