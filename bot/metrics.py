"""Counters and a histogram, rendered in the Prometheus text format for GET /metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.models import Invoice

# Seconds from a payment (paidAt at the gateway) to the edit of the invoice message.
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1


class Metrics:
    """What /metrics shows; everything in memory of this process."""

    def __init__(self) -> None:
        self.gateway_requests: Counter[tuple[str, str, str]] = Counter()
        self.callbacks: Counter[str] = Counter()
        self.callbacks_merged: Counter[str] = Counter()
        self.callbacks_deferred: Counter[str] = Counter()
        self.http_connections_dropped: Counter[str] = Counter()
        self.telegram_429 = 0
        self.telegram_errors: Counter[str] = Counter()
        self.notifications_sent: Counter[str] = Counter()
        self.notification_delay = Histogram(DELAY_BUCKETS)
        self.payments_seen = 0
        self.watcher_ticks = 0
        self.last_tick: datetime | None = None

    def gateway_request(self, gateway: str, operation: str, outcome: str) -> None:
        self.gateway_requests[(gateway, operation, outcome)] += 1

    def callback(self, gateway: str) -> None:
        self.callbacks[gateway] += 1

    def callback_merged(self, gateway: str) -> None:
        self.callbacks_merged[gateway] += 1

    def callback_deferred(self, gateway: str) -> None:
        self.callbacks_deferred[gateway] += 1

    def http_connection_dropped(self, reason: str) -> None:
        self.http_connections_dropped[reason] += 1

    def paid(self, invoice: Invoice) -> None:
        self.payments_seen += 1

    def render(self, invoices_by_status: Mapping[str, int]) -> str:
        lines = [
            "# HELP tillbot_invoices Invoices by status.",
            "# TYPE tillbot_invoices gauge",
        ]
        lines += [
            f'tillbot_invoices{{status="{s}"}} {n}' for s, n in sorted(invoices_by_status.items())
        ]
        lines += [
            "# HELP tillbot_gateway_requests_total Gateway requests by gateway, operation, outcome.",
            "# TYPE tillbot_gateway_requests_total counter",
        ]
        lines += [
            f'tillbot_gateway_requests_total{{gateway="{g}",operation="{o}",outcome="{r}"}} {n}'
            for (g, o, r), n in sorted(self.gateway_requests.items())
        ]
        lines += [
            "# HELP tillbot_gateway_callbacks_total Gateway callbacks accepted.",
            "# TYPE tillbot_gateway_callbacks_total counter",
        ]
        lines += [
            f'tillbot_gateway_callbacks_total{{gateway="{g}"}} {n}'
            for g, n in sorted(self.callbacks.items())
        ]
        lines += [
            "# HELP tillbot_gateway_callbacks_merged_total Callbacks merged into another"
            " re-read.",
            "# TYPE tillbot_gateway_callbacks_merged_total counter",
        ]
        lines += [
            f'tillbot_gateway_callbacks_merged_total{{gateway="{g}"}} {n}'
            for g, n in sorted(self.callbacks_merged.items())
        ]
        lines += [
            "# HELP tillbot_gateway_callbacks_deferred_total Callback re-reads left to the"
            " watcher for want of spare budget.",
            "# TYPE tillbot_gateway_callbacks_deferred_total counter",
        ]
        lines += [
            f'tillbot_gateway_callbacks_deferred_total{{gateway="{g}"}} {n}'
            for g, n in sorted(self.callbacks_deferred.items())
        ]
        lines += [
            "# HELP tillbot_http_connections_dropped_total Connections closed over the cap"
            " (evicted: an idle one made room; refused: every one was busy).",
            "# TYPE tillbot_http_connections_dropped_total counter",
        ]
        lines += [
            f'tillbot_http_connections_dropped_total{{reason="{r}"}} {n}'
            for r, n in sorted(self.http_connections_dropped.items())
        ]
        lines += [
            "# HELP tillbot_telegram_429_total Telegram 429 answers.",
            "# TYPE tillbot_telegram_429_total counter",
            f"tillbot_telegram_429_total {self.telegram_429}",
        ]
        lines += [
            "# HELP tillbot_notifications_sent_total Outbox rows delivered, by kind.",
            "# TYPE tillbot_notifications_sent_total counter",
        ]
        lines += [
            f'tillbot_notifications_sent_total{{kind="{k}"}} {n}'
            for k, n in sorted(self.notifications_sent.items())
        ]
        h = self.notification_delay
        lines += [
            "# HELP tillbot_notification_delay_seconds From paid to the invoice edited.",
            "# TYPE tillbot_notification_delay_seconds histogram",
        ]
        lines += [
            f'tillbot_notification_delay_seconds_bucket{{le="{b}"}} {c}'
            for b, c in zip(h.buckets, h.counts, strict=True)
        ]
        lines += [
            f'tillbot_notification_delay_seconds_bucket{{le="+Inf"}} {h.total}',
            f"tillbot_notification_delay_seconds_sum {h.sum:.6f}",
            f"tillbot_notification_delay_seconds_count {h.total}",
        ]
        lines += [
            "# HELP tillbot_watcher_ticks_total Watcher ticks run.",
            "# TYPE tillbot_watcher_ticks_total counter",
            f"tillbot_watcher_ticks_total {self.watcher_ticks}",
        ]
        return "\n".join(lines) + "\n"
