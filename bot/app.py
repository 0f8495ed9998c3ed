"""The one place that wires settings, storage, gateways, the payment service, handlers, jobs.

`build_application(settings)` returns a python-telegram-bot Application whose services are
opened in post_init and closed in post_shutdown; `Runner` starts it in long-polling or
webhook mode and stops it cleanly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from telegram import Update
from telegram.ext import (
    ApplicationBuilder,
    ContextTypes,
)

from bot.config import Settings
from bot.domain.models import utcnow
from bot.domain.polling import PaymentPolicy
from bot.gateways.base import GatewayError
from bot.gateways.registry import build_gateways
from bot.liveness import Liveness
from bot.logsafe import install_redaction
from bot.services.inbox import InboxService
from bot.services.payments import PaymentsService
from bot.services.watcher import Watcher
from bot.storage_watch import WATCH_INTERVAL_SECONDS, StorageWatch
from bot.telegram.budget import SharedBudget
from bot.telegram.context import Services, TillbotApp, TillbotContext
from bot.telegram.handlers import (
    admin,
    books,
    customer,
)
from bot.telegram.handlers.menu import register_commands
from bot.telegram.inbox import (
    RESUME_INTERVAL_SECONDS,
    InboxPoller,
    InboxUpdateProcessor,
    resume_unfinished,
)
from bot.telegram.notifier import Notifier
from bot.telegram.ratelimit import TelegramRateLimiter
from bot.telegram.request import AiohttpRequest
from bot.telegram.routing import register_handlers
from bot.telegram.views import (
    ViewContext,
)
from storage import StorageError, open_repository, parse_sqlite_url

log = logging.getLogger(__name__)

WATCHER_TICK_SECONDS = 0.25


def watcher_tick_seconds(settings: Settings) -> float:
    """How often the watcher claims due invoices: 0.25 s, or a fifth of the counter's poll
    interval when that is shorter (at 0.5 s a poll then waits at most 50 ms past its time,
    which keeps paid-to-edit at a counter under 600 ms)."""
    return min(WATCHER_TICK_SECONDS, settings.pos_poll_interval_seconds / 5)


def policy_from(settings: Settings) -> PaymentPolicy:
    seconds = timedelta(seconds=1)
    return PaymentPolicy(
        default_gateway=settings.default_gateway,
        default_currency=settings.default_currency,
        max_amount=settings.max_amount,
        max_description_length=settings.max_description_length,
        invoice_expiry=settings.invoice_expiry,
        pos_expiry=settings.mion_pos_expiry_seconds * seconds,
        poll_interval=settings.poll_interval_seconds * seconds,
        poll_max_interval=settings.poll_max_interval_seconds * seconds,
        pos_poll_interval=settings.pos_poll_interval_seconds * seconds,
        callback_poll_interval=settings.callback_poll_interval_seconds * seconds,
        late_payment_watch=settings.late_payment_watch_seconds * seconds,
        not_found_give_up_answers=settings.not_found_give_up_answers,
        not_found_give_up_after=settings.not_found_give_up_seconds * seconds,
        renew_before=settings.mion_attempt_renew_before_seconds * seconds,
        admin_ids=frozenset(settings.admin_ids),
        merchant_ids=frozenset(settings.merchant_ids),
        gateway_expiry={
            "mion": settings.mion_online_expiry_seconds * seconds,
            "mixpay": settings.mixpay_expiry_seconds * seconds,
        },
    )


def build_application(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow
) -> TillbotApp:
    """The Application with every handler registered; services open in post_init."""
    # Before building: python-telegram-bot logs the API URL, token included, at DEBUG.
    install_redaction(settings.secrets())
    api = settings.telegram_api_url.rstrip("/")
    timeouts: dict[str, Any] = {
        "connect_timeout": 10.0,
        "read_timeout": 15.0,
        "write_timeout": 15.0,
        "pool_timeout": 10.0,
    }
    # One pace for everything sent to Telegram: handler replies and the outbox.
    limiter = TelegramRateLimiter(
        global_rate=settings.telegram_messages_per_second,
        private_interval=settings.telegram_chat_interval_seconds,
        group_interval=settings.telegram_group_interval_seconds,
    )
    app: TillbotApp = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .context_types(ContextTypes(context=TillbotContext, bot_data=Services))
        .request(AiohttpRequest(connection_pool_size=settings.telegram_connection_pool, **timeouts))
        .get_updates_request(AiohttpRequest(connection_pool_size=2, **timeouts))
        .concurrent_updates(InboxUpdateProcessor(settings.concurrent_updates))
        .rate_limiter(limiter)
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    services = app.bot_data
    services.settings = settings
    services.clock = clock
    limiter.on_retry_after = lambda _seconds: services.metrics.telegram_rate_limited()
    register_handlers(app)
    return app


async def post_init(app: TillbotApp) -> None:
    """Open storage, HTTP, gateways, the service, notifier, watcher and web server."""
    services = app.bot_data
    settings = services.settings
    services.repo = await open_repository(settings.database_url)
    limiter = app.bot.rate_limiter
    assert isinstance(limiter, TelegramRateLimiter), "set in build_application"
    if not settings.database_url.lower().startswith("sqlite"):
        # Several instances may share this database: they share Telegram's budget too.
        limiter.share(
            SharedBudget(
                services.repo, global_rate=limiter.global_rate, monotonic=limiter.monotonic
            )
        )
    if services.repo.created_new:
        log.warning(
            "started on a NEW, EMPTY database (%s): no earlier invoice is known; if this bot"
            " ran before, its database was lost or DATABASE_URL points elsewhere",
            database_label(settings.database_url),
        )
    services.http = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.gateway_timeout_seconds),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        follow_redirects=False,
    )
    sandbox = None
    if settings.sandbox_on:
        from bot.gateways.sandbox import open_sandbox

        username = app.bot.username
        services.sandbox = sandbox = open_sandbox(
            services.repo,
            clock=services.clock,
            checkout_url_for=lambda session_id: (
                f"https://t.me/{username}?start={customer.SANDBOX_CHECKOUT_PREFIX}{session_id}"
            ),
            auto_pay_seconds=settings.sandbox_auto_pay_seconds,
        )
    services.gateways = build_gateways(settings, services.http, sandbox=sandbox)
    webhooks = bool(settings.public_url and settings.http_listen_port is not None)
    zones: dict[int, ZoneInfo] = {}  # each shop's time zone, kept current by the books service
    services.view = ViewContext(
        bot_username=app.bot.username,
        gateway_titles={name: gw.title for name, gw in services.gateways.items()},
        simulatable=frozenset(name for name, gw in services.gateways.items() if gw.can_simulate),
        app_url=f"{settings.public_url}/app/" if webhooks else None,
        zones=zones,
        time_zone=settings.timezone,
    )
    services.payments = PaymentsService(
        services.repo,
        services.gateways,
        policy_from(settings),
        clock=services.clock,
        callback_url=(lambda gw: f"{settings.public_url}/webhooks/{gw}") if webhooks else None,
        on_outbox=lambda: on_outbox(services),
        metrics=services.metrics,
        default_zone=services.view.default_zone,
        zones=zones,
    )
    await services.payments.books.load_zones()
    limiter = app.bot.rate_limiter
    assert isinstance(limiter, TelegramRateLimiter), "set in build_application"
    # Claimed work is owned by this instance's id while it heartbeats (bot/liveness.py).
    services.liveness = liveness = Liveness(
        services.repo,
        work_clock=services.clock,
        name=settings.instance_id,
        named=bool(settings.instance_id),
        interval=timedelta(seconds=settings.heartbeat_seconds),
        stale_beats=settings.heartbeat_stale_beats,
        on_takeover=lambda _freed: services.notifier.kick() if services.notifier else None,
        on_new_id=lambda new_id: services.rename(new_id),
    )
    services.owner = liveness.id
    services.notifier = Notifier(
        app.bot,
        services.repo,
        lambda: services.view,
        language_of=services.language_of_chat,
        clock=services.clock,
        owner=services.owner,
        metrics=services.metrics,
        limiter=limiter,
        fence=liveness.trusted,
        receipt_of=services.payments.receipts.receipt_for,
    )
    services.watcher = Watcher(
        services.payments,
        services.repo,
        clock=services.clock,
        owner=services.owner,
        tick=timedelta(seconds=watcher_tick_seconds(settings)),
    )
    if settings.inbox_enabled:
        services.inbox = InboxService(
            services.repo,
            owner=services.owner,
            clock=services.clock,
            lease=timedelta(seconds=settings.inbox_lease_seconds),
        )
        processor = app.update_processor
        assert isinstance(processor, InboxUpdateProcessor), "set in build_application"
        processor.inbox = services.inbox
    taken = await liveness.start()
    if taken:
        log.info("took over %s claims left by instances that stopped", taken)
    await services.watcher.resume()
    services.notifier.start()
    job_queue = app.job_queue
    assert job_queue is not None, "python-telegram-bot[job-queue] is a dependency"
    job_queue.run_repeating(
        services.watcher.tick,
        interval=watcher_tick_seconds(settings),
        first=0.0,
        name="watcher",
        job_kwargs={"max_instances": 2, "coalesce": True},
    )
    services.storage_watch = StorageWatch(
        services.repo,
        admin_ids=frozenset(settings.admin_ids),
        send=lambda chat_id, text: app.bot.send_message(chat_id, text),
        language_of=services.language_of_chat,
        owner=services.owner,
        clock=services.clock,
    )
    job_queue.run_repeating(
        services.storage_watch.tick,
        interval=WATCH_INTERVAL_SECONDS,
        first=WATCH_INTERVAL_SECONDS,
        name="storage-watch",
    )
    if services.inbox is not None:
        # Updates a dead process had stored but not finished (at once, then every 2 s).
        job_queue.run_repeating(
            resume_unfinished,
            interval=RESUME_INTERVAL_SECONDS,
            first=0.0,
            name="inbox-resume",
            job_kwargs={"max_instances": 1, "coalesce": True},
        )
        inbox = services.inbox
        job_queue.run_repeating(
            lambda _context: inbox.purge(), interval=3600, first=60, name="inbox-purge"
        )
    job_queue.run_daily(admin.daily_summary, time=time(0, 5, tzinfo=UTC), name="daily-summary")
    job_queue.run_repeating(
        books.daily_close,
        interval=books.CLOSE_TICK_SECONDS,
        first=books.CLOSE_TICK_SECONDS / 2,
        name="shift-close",
    )
    # In the background: a gateway that is slow to answer must not delay the start.
    job_queue.run_once(check_gateway_setup, when=0.0, name="gateway-setup")
    await register_commands(app)
    if settings.http_listen_port is not None:
        from bot.web import WebServer

        services.web = WebServer(app, host="0.0.0.0", port=settings.http_listen_port)
        await services.web.start()


def on_outbox(services: Services) -> None:
    """A status change was written: wake the notifier and the Mini App's live streams."""
    if services.notifier is not None:
        services.notifier.kick()
    services.live.kick()


async def check_gateway_setup(context: TillbotContext) -> None:
    """Ask each gateway whether our settings can work (e.g. MiraclePay's blockchains); log
    each problem in one line and tell the admins."""
    services = context.bot_data
    for name, gateway in services.gateways.items():
        try:
            problems = await gateway.check_setup()
        except GatewayError as exc:
            log.warning("could not check the setup of %s: %s", gateway.title, exc)
            continue
        for problem in problems:
            log.error("%s is not fully set up: %s", gateway.title, problem)
        await services.payments.report_setup(name, problems)


def database_label(database_url: str) -> str:
    """What to call the database in a log line: the file of SQLite, never a password."""
    if database_url.lower().startswith("sqlite"):
        try:
            return str(parse_sqlite_url(database_url)[0])
        except StorageError:
            return "SQLite"
    return "the PostgreSQL database of DATABASE_URL"


async def post_shutdown(app: TillbotApp) -> None:
    """Close what post_init opened, in reverse order."""
    services = app.bot_data
    if services.web is not None:
        await services.web.stop()
    if services.notifier is not None:
        await services.notifier.stop()
    if services.liveness is not None:
        await services.liveness.stop()  # hands back this instance's claims
    if services.sandbox is not None:
        await services.sandbox.aclose()
    if services.http is not None:
        await services.http.aclose()
    if services._repo is not None:
        await services.repo.close()


class Runner:
    """Starts the Application (post_init included) in polling or webhook mode; stops it."""

    def __init__(self, app: TillbotApp) -> None:
        self.app = app
        self.settings = app.bot_data.settings
        self.poller: InboxPoller | None = None

    @property
    def webhook_mode(self) -> bool:
        return bool(self.settings.public_url and self.settings.http_listen_port is not None)

    async def start(self) -> None:
        app = self.app
        await app.initialize()
        try:
            if app.post_init is not None:
                await app.post_init(app)
            if self.webhook_mode:
                await app.bot.set_webhook(
                    url=f"{self.settings.public_url}/telegram",
                    secret_token=self.settings.webhook_secret,
                    allowed_updates=Update.ALL_TYPES,
                )
                await app.start()
            elif app.bot_data.inbox is not None:
                await app.start()
                # Our own long polling: an update is stored before the offset confirms it.
                self.poller = InboxPoller(app)
                await self.poller.start()
            else:
                assert app.updater is not None
                await app.updater.start_polling(
                    allowed_updates=Update.ALL_TYPES, timeout=10, poll_interval=0.0
                )
                await app.start()
        except BaseException:
            await self._close()
            raise

    async def stop(self) -> None:
        app = self.app
        if self.poller is not None:
            await self.poller.stop()
            self.poller = None
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await self._close()

    async def _close(self) -> None:
        app = self.app
        if app.post_shutdown is not None:
            await app.post_shutdown(app)
        await app.shutdown()

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
