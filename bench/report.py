"""The results as a markdown table (printed, and written next to the JSON)."""

from __future__ import annotations

import math
from typing import Any

from bench.failover import render as failover_section
from bench.machine import describe

CALLBACK_P99_MS = 250.0
POS_P99_MS = 600.0  # point of sale found by polling (0.5 s cadence)
POS_WEBHOOK_P99_MS = 150.0  # point of sale told by Mion's status webhook
IDLE_CPU_SHARE = 0.05
IDLE_RSS_MB = 150.0
THROUGHPUT_RATIO = 0.5
TELEGRAM_RATE = 25.0  # the notifier's global pace (Telegram allows about 30 a second)


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return ""
    return "✅ met" if ok else "❌ missed"


def _latency_row(label: str, data: dict[str, Any] | None, target: str, ok: bool | None) -> str:
    if not data:
        return f"| {label} | – | – | – | – | {target} | |"
    n = f"{data['n']}" + (f" ({data['missing']} missing)" if data.get("missing") else "")
    return (
        f"| {label} | {n} | {_num(data['p50'])} | {_num(data['p95'])} | {_num(data['p99'])} "
        f"| {_num(data['max'])} | {target} | {_verdict(ok)} |"
    )


def _p99_ok(data: dict[str, Any] | None, limit: float) -> bool | None:
    if not data or data.get("n", 0) == 0:
        return None
    return bool(data["p99"] < limit and not data.get("missing"))


def render(results: dict[str, Any]) -> str:
    sizes = results["sizes"]
    lines: list[str] = []
    add = lines.append
    mode = "quick" if results.get("quick") else "full"
    add(f"# Tillbot benchmark ({mode} run)")
    add("")
    add(f"Machine: {describe(results['machine'])}.  ")
    add(f"Run time: {results['duration_s']:.0f} s.")
    add("")

    lat = results.get("latency", {})
    add(f"## 1. Paid-to-edit delay (ms), {sizes['pending']:,} other invoices pending")
    add("")
    add("| Path | n | p50 | p95 | p99 | max | Target (p99) | |")
    add("|---|---:|---:|---:|---:|---:|---|---|")
    cb = lat.get("callback")
    pos = lat.get("pos")
    online = lat.get("online_polling")
    pos_hook = lat.get("pos_webhook")
    cadence = pos.get("cadence_s", 0.5) if pos else 0.5
    add(_latency_row("(a) callback (Mion webhook)", cb, f"< {CALLBACK_P99_MS:.0f}",
                     _p99_ok(cb, CALLBACK_P99_MS)))
    add(_latency_row(f"(b) point-of-sale polling, {cadence:g} s cadence (Mion)", pos,
                     f"< {POS_P99_MS:.0f}", _p99_ok(pos, POS_P99_MS)))
    add(_latency_row("(b2) point of sale, Mion status webhook", pos_hook,
                     f"< {POS_WEBHOOK_P99_MS:.0f}", _p99_ok(pos_hook, POS_WEBHOOK_P99_MS)))
    add(_latency_row("(c) online checkout polling, 5 s cadence (MiraclePay)", online, "–", None))
    add("")
    parts = [(k, d["parts"]) for k, d in (("(a)", cb), ("(b)", pos), ("(b2)", pos_hook),
                                          ("(c)", online))
             if d and d.get("parts")]
    if parts:
        add("Where it goes (ms; from the simulators' request logs):")
        add("")
        add("| Path | paid → status request that saw it, p50 / p99 "
            "| that request → edit, p50 / p99 | spacing of polls before, p50 / max |")
        add("|---|---:|---:|---:|")
        for key, part in parts:
            wait = part["until_status_request_ms"]
            rest = part["status_request_to_edit_ms"]
            gaps = part["poll_spacing_ms"]
            spacing = (f"{_num(gaps['p50'])} / {_num(gaps['max'])}" if gaps["n"] else "–")
            add(f"| {key} | {_num(wait['p50'])} / {_num(wait['p99'])} "
                f"| {_num(rest['p50'])} / {_num(rest['p99'])} | {spacing} |")
        add("")

    idle = results.get("idle")
    add("## 2. Idle cost")
    add("")
    if idle:
        startup = results.get("startup_s")
        add(f"{sizes['pending']:,} pending online invoices, nothing due, webhook mode, "
            f"{_num(idle['seconds'], 0)} s window"
            + (f"; start-up with that backlog took {_num(startup, 1)} s" if startup else "")
            + ".")
        add("")
        add("| Figure | Value | Target | |")
        add("|---|---:|---|---|")
        cpu_ok = idle["cpu_share"] < IDLE_CPU_SHARE
        rss_mb = idle["rss_mib"] * 1.048576
        add(f"| CPU (share of one core) | {idle['cpu_share'] * 100:.2f} % | < 5 % "
            f"| {_verdict(cpu_ok)} |")
        add(f"| Resident memory (VmRSS) | {rss_mb:.0f} MB | < 150 MB "
            f"| {_verdict(rss_mb < IDLE_RSS_MB)} |")
        add(f"| Telegram requests | {_num(idle['telegram_requests_per_minute'], 1)} /min | | |")
        for name, gw in idle["gateways"].items():
            budget = gw["budget_per_minute"]
            budget_text = f"budget {budget} /min" if budget else "no published limit"
            add(f"| {name} requests | {_num(gw['requests_per_minute'], 1)} /min "
                f"| {budget_text} | |")
        polling = results.get("idle_polling")
        if polling:
            add(f"| CPU, long-polling mode (no webhook) | {polling['cpu_share'] * 100:.2f} % "
                f"| < 5 % | {_verdict(polling['cpu_share'] < IDLE_CPU_SHARE)} |")
    add("")

    thr = results.get("throughput")
    add("## 3. Throughput: commands handled per second, end to end")
    add("")
    if thr:
        tb = thr["tillbot"]
        add(f"{tb['commands']:,} users each send one command at the same moment "
            "(long polling; replies counted at the emulator).")
        add("")
        add("| Bot | replied | per second | reply p50 (ms) | reply p99 (ms) | bot CPU "
            "| emulator+simulators CPU |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        rows = [("Tillbot `/invoice` (Mion checkout), Telegram's pace (25 messages/s)", tb)]
        if thr.get("tillbot_unpaced"):
            rows.append(("Tillbot `/invoice`, pace lifted (1,000/s, no emulator limits)",
                         thr["tillbot_unpaced"]))
        for key, label in (
            ("echo", "bare PTB echo bot (PTB defaults: one update at a time)"),
            ("echo_tillbot_settings",
             "PTB echo bot with Tillbot's PTB settings (64 updates at once, pool of 128)"),
        ):
            if thr.get(key):
                rows.append((label, thr[key]))
        for label, data in rows:
            driver = data.get("driver_cpu_share")
            add(f"| {label} | {data['replied']:,} | {_num(data['per_second'], 1)} "
                f"| {_num(data['reply_ms']['p50'])} | {_num(data['reply_ms']['p99'])} "
                f"| {data['bot_cpu_share'] * 100:.0f} % "
                f"| {'–' if driver is None else f'{driver * 100:.0f} %'} |")
        ratio = thr.get("ratio")
        if ratio is not None:
            add("")
            add(f"Ratio Tillbot (pace lifted) / bare echo bot: **{ratio:.2f}** (target ≥ {THROUGHPUT_RATIO}) "
                f"{_verdict(ratio >= THROUGHPUT_RATIO)}")
            same = thr.get("ratio_same_settings")
            if same is not None:
                add(f"(Tillbot / echo bot with the same PTB settings: {same:.2f}.)")
    add("")

    burst = results.get("burst")
    add("## 4. Burst: invoices paid at the same moment, Telegram's limits enforced")
    add("")
    if burst:
        rate = burst.get("edits_per_second")
        took = burst.get("seconds_to_all_edited")
        ok = (
            burst["finished"]
            and burst["telegram_429"] == 0
            and took is not None
            and took <= burst["expected_seconds"] * 1.1
        )
        add("| Figure | Value |")
        add("|---|---:|")
        add(f"| Invoices paid at once (one merchant chat each) | {burst['invoices']:,} |")
        add(f"| Time until every message was edited | "
            f"{_num(burst['seconds_to_all_edited'], 1)} s"
            + ("" if burst["finished"] else f" (not all within {burst['waited_seconds']} s: "
               f"{burst['edited']:,} edited)") + " |")
        add(f"| At the pace, after one poll interval to notice them | "
            f"{_num(burst['expected_seconds'], 1)} s |")
        add(f"| First edit after | {_num(burst['first_edit_after_s'], 2)} s |")
        add(f"| Edit rate | {_num(rate, 1)} /s (pace {TELEGRAM_RATE:.0f} /s) |")
        add(f"| 429 answers (target 0) | {burst['telegram_429']} |")
        add(f"| Admin notices sent meanwhile (one admin; they queue behind the edits) | "
            f"{burst['admin_notices_sent']:,} |")
        add("")
        add(f"Delivered at the rate limit with no 429: {_verdict(ok)}")
    add("")

    qr = results.get("qr")
    add("## 5. QR")
    add("")
    if qr:
        add(f"Lightning QR photo (`bot.telegram.views.qr_for`, {qr['bolt11_chars']}-character BOLT11, "
            f"{qr['png_bytes']:,}-byte PNG): median **{qr['median_ms']:.1f} ms**, "
            f"p95 {qr['p95_ms']:.1f} ms over {qr['rounds']} renders.")
    books = results.get("books")
    if books:
        add(f"Ledger of {books['entries']:,} entries: CSV **{books['csv_ms']:.0f} ms** "
            f"({books['csv_bytes']:,} bytes), XLSX **{books['xlsx_ms']:.0f} ms** "
            f"({books['xlsx_bytes']:,} bytes); shift-close chart **{books['chart_ms']:.0f} ms** "
            f"({books['png_bytes']:,}-byte PNG); medians of {books['rounds']}.")
    add("")
    inbox = results.get("inbox")
    if inbox:
        add("## 6. The inbox's cost")
        add("")
        add("`/invoice` from every merchant at once (long polling, Mion simulator), with every"
            " update stored before `getUpdates` confirms it (INBOX_ENABLED=true) and without"
            " (false); reply = the placeholder edited into the invoice. Median of the rounds.")
        add("")
        add("| database, inbox | commands | /invoice per s | reply p50 | reply p99"
            " (worst round) | bot CPU |")
        add("|---|---|---|---|---|---|")
        for label, row in inbox.items():
            add(f"| {label} | {row['replied']}/{row['commands']} | {_num(row['per_second'], 1)}"
                f" | {_num(row['p50_ms'])} ms | {_num(row['p99_ms'])} ms"
                f" ({_num(row['p99_ms_worst'])} ms) | {_num(row['bot_cpu_share'] * 100)} % |")
        add("")
    if "failover" in results:
        lines += failover_section(results["failover"])
    backends = results.get("idle_backends")
    if backends:
        add("## 7. Idle with a large backlog, per database")
        add("")
        add("One instance in webhook mode, nothing due (each backlog invoice's next poll "
            "minutes away).")
        add("")
        add("| Database | pending | CPU (share of a core) | RSS | Telegram /min "
            "| gateway requests /min | |")
        add("|---|---:|---:|---:|---:|---|---|")
        for name, idle_data in backends.items():
            if "skipped" in idle_data:
                add(f"| {name} | – | – | – | – | {idle_data['skipped']} | |")
                continue
            rss_mb = idle_data["rss_mib"] * 1.048576
            gw_text = ", ".join(
                f"{gw} {_num(v['requests_per_minute'], 1)}"
                + (f" (budget {v['budget_per_minute']})" if v["budget_per_minute"] else "")
                for gw, v in idle_data["gateways"].items()
            )
            ok = idle_data["cpu_share"] < IDLE_CPU_SHARE and rss_mb < 300
            add(f"| {name} | {idle_data['pending']:,} | {idle_data['cpu_share'] * 100:.2f} % "
                f"| {rss_mb:.0f} MB | {_num(idle_data['telegram_requests_per_minute'], 1)} "
                f"| {gw_text} | {_verdict(ok)} |")
        add("")
        add("Targets: < 5 % of a core, < 300 MB, gateway requests within each budget.")
        add("")

    cluster = results.get("cluster_burst")
    if cluster:
        add("## 8. Burst across instances: one Telegram budget in PostgreSQL")
        add("")
        if "skipped" in cluster:
            add(f"Not run: {cluster['skipped']}.")
        else:
            took = cluster.get("seconds_to_all_edited")
            rate = cluster.get("edits_per_second")
            ok = cluster["finished"] and cluster["telegram_429"] == 0 and (rate or 0) >= 25
            add("| Figure | Value | Target |")
            add("|---|---:|---|")
            add(f"| Instances (processes on one PostgreSQL) | {cluster['instances']} | |")
            add(f"| Invoices paid at once (one chat each) | {cluster['invoices']:,} | |")
            add(f"| Time until every message was edited | {_num(took, 1)} s"
                + ("" if cluster["finished"] else f" (only {cluster['edited']:,} edited)")
                + " | |")
            add(f"| Overall edit rate (TELEGRAM_MESSAGES_PER_SECOND={cluster.get('pace')}) "
                f"| {_num(rate, 1)} /s | ≥ 25 /s |")
            add(f"| Most paced requests in one second | {cluster['busiest_second']} | |")
            add(f"| 429 answers | {cluster['telegram_429']} | 0 |")
            add(f"| Admin messages (digests) for {cluster['invoices']:,} payments | "
                f"{cluster['admin_messages']} | |")
            add(f"| Payments named twice in them | {cluster['admin_payments_named_twice']} | 0 |")
            add("")
            add(f"One budget for all instances: {_verdict(ok)}")
        add("")

    violations = results.get("emulator_violations", 0)
    add(f"Bot API violations seen by the emulator: {violations}.")
    add("")
    add("Method: the bot runs as its own process (`python -m bot`, SQLite on disk, one admin, "
        "Mion, MixPay and MiraclePay configured); the Bot API emulator and the gateway "
        "simulators run in the benchmark's process, so the simulator's \"paid\" moment and "
        "the emulator's arrival time of the edit are readings of one monotonic clock. "
        "Each sample is a different merchant chat. CPU and memory come from "
        "/proc/<pid>/stat and /proc/<pid>/status. `python -m bench --quick` runs the same "
        "with smaller sizes.")
    return "\n".join(lines) + "\n"
