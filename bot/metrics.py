"""What GET /metrics shows, kept with prometheus-client.

Each Application has its own `CollectorRegistry` (several bots run in one test process), never
the library's global one. Invoices by status are read from storage at each scrape: they are
the database's, not this process's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from bot.domain.models import Invoice

# Seconds from a payment (paidAt at the gateway) to the edit of the invoice message.
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """This process's counters (in memory) and the invoice gauge filled at each scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._invoices = Gauge(
            "tillbot_invoices", "Invoices by status.", ["status"], registry=registry
        )
        self._gateway_requests = Counter(
            "tillbot_gateway_requests",
            "Gateway requests by gateway, operation, outcome.",
            ["gateway", "operation", "outcome"],
            registry=registry,
        )
        self._callbacks = Counter(
            "tillbot_gateway_callbacks", "Gateway callbacks accepted.", ["gateway"],
            registry=registry,
        )
        self._callbacks_merged = Counter(
            "tillbot_gateway_callbacks_merged",
            "Callbacks merged into another re-read.",
            ["gateway"],
            registry=registry,
        )
        self._callbacks_deferred = Counter(
            "tillbot_gateway_callbacks_deferred",
            "Callback re-reads left to the watcher for want of spare budget.",
            ["gateway"],
            registry=registry,
        )
        self._http_connections_dropped = Counter(
            "tillbot_http_connections_dropped",
            "Connections closed over the cap (evicted: an idle one made room; refused: every"
            " one was busy).",
            ["reason"],
            registry=registry,
        )
        self._telegram_429 = Counter(
            "tillbot_telegram_429", "Telegram 429 answers.", registry=registry
        )
        self._telegram_errors = Counter(
            "tillbot_telegram_errors",
            "Telegram requests of the outbox that failed (network or API), by error type.",
            ["error"],
            registry=registry,
        )
        self._notifications_sent = Counter(
            "tillbot_notifications_sent", "Outbox rows delivered, by kind.", ["kind"],
            registry=registry,
        )
        self._notification_delay = Histogram(
            "tillbot_notification_delay_seconds",
            "From paid to the invoice edited.",
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self._payments = Counter(
            "tillbot_payments_paid",
            "Invoices this process saw become paid (late payments included; sandbox tests,"
            " never money, not counted).",
            registry=registry,
        )
        self._watcher_ticks = Counter(
            "tillbot_watcher_ticks", "Watcher ticks run.", registry=registry
        )

    # -- recording -------------------------------------------------------------------------
    def gateway_request(self, gateway: str, operation: str, outcome: str) -> None:
        self._gateway_requests.labels(gateway, operation, outcome).inc()

    def callback(self, gateway: str) -> None:
        self._callbacks.labels(gateway).inc()

    def callback_merged(self, gateway: str) -> None:
        self._callbacks_merged.labels(gateway).inc()

    def callback_deferred(self, gateway: str) -> None:
        self._callbacks_deferred.labels(gateway).inc()

    def http_connection_dropped(self, reason: str) -> None:
        self._http_connections_dropped.labels(reason).inc()

    def paid(self, invoice: Invoice) -> None:
        if not invoice.is_sandbox:
            self._payments.inc()

    def telegram_rate_limited(self) -> None:
        self._telegram_429.inc()

    def telegram_error(self, error: str) -> None:
        self._telegram_errors.labels(error).inc()

    def notification_sent(self, kind: str) -> None:
        self._notifications_sent.labels(kind).inc()

    def notification_delay(self, seconds: float) -> None:
        self._notification_delay.observe(seconds)

    def watcher_tick(self) -> None:
        self._watcher_ticks.inc()

    # -- reading ---------------------------------------------------------------------------
    @property
    def telegram_429(self) -> int:
        """Telegram 429 answers so far (tests and the bench read it)."""
        return int(self.value("tillbot_telegram_429_total") or 0)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's value by its exposed name (e.g. `tillbot_watcher_ticks_total`)."""
        return self.registry.get_sample_value(name, dict(labels or {}))

    def render(self, invoices_by_status: Mapping[str, int]) -> bytes:
        """The Prometheus text exposition, with the invoice counts just read from storage."""
        self._invoices.clear()
        for status, count in invoices_by_status.items():
            self._invoices.labels(status).set(count)
        return generate_latest(self.registry)
