"""/metrics through prometheus-client: every metric collected is exported, one registry per app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_every_collected_metric_is_exported() -> None:
    metrics = Metrics()
    metrics.gateway_request("mion", "create", "ok")
    metrics.callback("mixpay")
    metrics.telegram_rate_limited()
    metrics.telegram_error("NetworkError")
    metrics.notification_sent("edit")
    metrics.notification_delay(0.3)
    metrics.watcher_tick()
    metrics.watcher_tick()
    samples = _samples(metrics.render({"pending": 2, "paid": 1}))
    expected = {
        ("tillbot_invoices", (("status", "pending"),)): 2,
        ("tillbot_invoices", (("status", "paid"),)): 1,
        (
            "tillbot_gateway_requests_total",
            (("gateway", "mion"), ("operation", "create"), ("outcome", "ok")),
        ): 1,
        ("tillbot_gateway_callbacks_total", (("gateway", "mixpay"),)): 1,
        ("tillbot_telegram_429_total", ()): 1,
        ("tillbot_telegram_errors_total", (("error", "NetworkError"),)): 1,
        ("tillbot_notifications_sent_total", (("kind", "edit"),)): 1,
        ("tillbot_notification_delay_seconds_bucket", (("le", "0.25"),)): 0,
        ("tillbot_notification_delay_seconds_bucket", (("le", "0.5"),)): 1,
        ("tillbot_notification_delay_seconds_count", ()): 1,
        ("tillbot_watcher_ticks_total", ()): 2,
        ("tillbot_payments_paid_total", ()): 0,
    }
    for key, value in expected.items():
        assert samples.get(key) == value, key
    assert metrics.telegram_429 == 1


def test_invoice_counts_are_the_last_scrape_only() -> None:
    metrics = Metrics()
    metrics.render({"pending": 3})
    samples = _samples(metrics.render({"paid": 1}))
    assert ("tillbot_invoices", (("status", "pending"),)) not in samples
    assert samples[("tillbot_invoices", (("status", "paid"),))] == 1


def test_each_application_counts_on_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.telegram_rate_limited()
    assert (first.telegram_429, second.telegram_429) == (1, 0)
    assert b"tillbot_telegram_429_total 0.0" in second.render({})
