"""End to end over the Bot API emulator and the gateway simulators (issue 15, points 1-4):
the ledger after a paid, an underpaid and a tipped payment (Mion, MixPay, MiraclePay, as
each reports them), /report's CSV and XLSX parsed back and summed to the cent, /close and
the daily close at the shop's closing hour with its chart, the shop's time zone at a day
boundary, in English and German; bad input answered, nothing changed."""

from __future__ import annotations

import asyncio
import csv
import io
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook
from PIL import Image

from bot.domain.drafts import InvoiceDraft
from bot.domain.ledger import LedgerEntry, LedgerKind, invoice_totals, msat_to_btc
from bot.domain.models import Invoice, InvoiceStatus
from bot.domain.tips import CounterSale, TipKind
from bot.services.exports import COLUMNS
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import Harness
from tests.test_e2e_gateways import Gateways, sim_key, sims

__all__ = ["sims"]  # the fixture, imported for pytest


@pytest.fixture
async def bot(harness: Harness, sims: Gateways) -> Harness:
    await harness.start(**{**sims.settings(), "sandbox_enabled": True})
    return harness


async def ledger_of(
    h: Harness, invoice: Invoice, ready: Callable[[list[LedgerEntry]], bool]
) -> list[LedgerEntry]:
    repo = h.services.repo
    entries: list[LedgerEntry] = []

    async def check() -> bool:
        nonlocal entries
        entries = await repo.ledger_for_invoice(invoice.id)
        return ready(entries)

    for _ in range(200):
        if await check():
            return entries
        await asyncio.sleep(0.05)
    raise AssertionError(f"ledger of invoice {invoice.id}: {entries}")


def documents_since(h: Harness, user: EmuUser, before: int) -> dict[str, bytes]:
    return {
        m.document_filename: m.document
        for m in h.emu.bot_messages(user)[before:]
        if m.document is not None and m.document_filename is not None
    }


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def xlsx_rows(data: bytes) -> list[dict[str, Any]]:
    sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    header = [str(v) for v in values[0]]
    return [dict(zip(header, row, strict=True)) for row in values[1:]]


def cents(value: Any) -> Decimal:
    """A cell as an exact amount: CSV text as written, an XLSX number via its shortest repr."""
    return Decimal(str(value)).quantize(Decimal("0.01"))


async def report(h: Harness, user: EmuUser, text: str) -> dict[str, bytes]:
    before = len(h.emu.bot_messages(user))
    await h.emu.send_message(user, text)

    def done() -> bool:
        """The summary comes last when the period has invoices, else the ledger's XLSX."""
        sent = h.emu.bot_messages(user)[before:]
        names = [m.document_filename or "" for m in sent]
        if any(n.startswith("tillbot-") and "-ledger-" not in n for n in names):
            return any(m.content.startswith("📊") for m in sent)
        return any(n.endswith(".xlsx") for n in names)

    await h.emu.wait_for(done, timeout=10)
    return documents_since(h, user, before)


# -- 1 and 4: the ledger, and /report's files summed to the cent -------------------------------
async def test_ledger_of_a_paid_underpaid_and_tipped_payment_and_the_report(
    bot: Harness, sims: Gateways
) -> None:
    emu, repo = bot.emu, bot.services.repo
    maria = bot.merchant

    # Mion, point of sale: the attempt's amountMsat is the crypto sent; the rate it implies.
    photo = await bot.command(maria, "/pos 5 Tea")
    pos = (await repo.list_invoices(maria.id, limit=1))[0]
    msat = int(pos.payment["amount_msat"])
    sims.mion.pay(sim_key(sims.mion, pos))
    await emu.wait_for(lambda: "PAID" in (photo.caption or photo.content), timeout=8)
    [entry] = await ledger_of(bot, pos, lambda e: len(e) == 1)
    assert entry.kind is LedgerKind.PAYMENT and entry.fiat_minor == 500
    assert (entry.crypto_amount, entry.crypto_asset) == (msat_to_btc(msat), "BTC")
    assert entry.rate == (Decimal(5) / msat_to_btc(msat)).quantize(entry.rate)
    assert entry.tip_minor == 0 and entry.fee_minor is None and entry.cashier_id == maria.id

    # Mion online with a tip (the amount includes it; split apart as the counter keeps it).
    reply, tipped = await bot.invoice(maria, "/invoice 12.50 Coffee")
    split = CounterSale(tipped.id, maria.id, 1000, 250, TipKind.PERCENT, "EUR")
    await repo.counter_add_sale(split, datetime.now(UTC))
    sims.mion.pay(sim_key(sims.mion, tipped))
    await emu.wait_for(lambda: "PAID" in reply.content, timeout=8)
    [entry] = await ledger_of(bot, tipped, lambda e: len(e) == 1)
    assert (entry.fiat_minor, entry.tip_minor, entry.crypto_amount) == (1250, 250, None)

    # MixPay: half arrives (underpaid: booked at its share), then the rest (a correction).
    reply, lamp = await bot.invoice(maria, "/invoice mixpay 10 Lamp")
    key = sim_key(sims.mixpay, lamp)
    sims.mixpay.underpay(key)
    await emu.wait_for(lambda: "underpaid" in reply.content, timeout=8)
    [first] = await ledger_of(bot, lamp, lambda e: len(e) == 1)
    session = sims.mixpay.sessions[key]
    assert first.kind is LedgerKind.PAYMENT and 0 < first.fiat_minor < 1000
    reported = sims.mixpay.result_object(session)
    assert first.crypto_amount == Decimal(reported["paymentAmount"])
    assert first.crypto_asset == reported["paymentSymbol"] == "USDT"
    sims.mixpay.pay(key)
    await emu.wait_for(lambda: "PAID" in reply.content, timeout=8)
    entries = await ledger_of(bot, lamp, lambda e: len(e) == 2)
    assert entries[1].kind is LedgerKind.CORRECTION
    held = invoice_totals(entries)
    assert held is not None and held.fiat_minor == 1000  # the quoteAmount, to the cent
    assert held.crypto_amount == sims.mixpay.sessions[key].payment_amount
    result = sims.mixpay.result_object(sims.mixpay.sessions[key])
    assert held.net_amount == Decimal(result["settleAmount"]) and held.net_asset == "USDT"

    # MiraclePay: the chain paid on, the amount with commission, the commission.
    reply, chair = await bot.invoice(maria, "/invoice miraclepay 20.50 USD Chair")
    commission = int(chair.payment["commission_minor"])
    charged = int(chair.payment["checkout_amount_minor"])
    assert commission > 0 and charged == 2050 + commission  # the customer pays it
    sims.miraclepay.pay(sim_key(sims.miraclepay, chair))
    await emu.wait_for(lambda: "PAID" in reply.content, timeout=8)
    [entry] = await ledger_of(bot, chair, lambda e: len(e) == 1)
    assert (entry.fiat_minor, entry.fee_minor, entry.charged_minor) == (2050, commission, charged)
    assert (entry.net_amount, entry.net_asset, entry.crypto_asset) == (
        Decimal("20.50"),
        "USD",
        "btc",
    )

    # A sandbox payment is in the ledger but never in the report's totals.
    payments = bot.services.payments
    toy = await payments.create_invoice(maria.id, InvoiceDraft("3", "Toy", gateway="sandbox"))
    await payments.simulate_payment(toy)
    await ledger_of(bot, toy, lambda e: len(e) == 1)

    files = await report(bot, maria, "/report today")
    stamp = f"{datetime.now(UTC):%Y%m%d}"
    ledger_csv = files.pop(f"tillbot-ledger-today-{stamp}.csv")
    ledger_xlsx = files.pop(f"tillbot-ledger-today-{stamp}.xlsx")
    assert list(files) == [f"tillbot-today-{stamp}.csv"]  # the invoices, as before
    rows_csv, rows_xlsx = csv_rows(ledger_csv), xlsx_rows(ledger_xlsx)
    assert list(rows_csv[0]) == list(COLUMNS) == list(rows_xlsx[0])
    assert len(rows_csv) == len(rows_xlsx) == 5  # one per entry; no sandbox row
    sums: dict[str, dict[str, Decimal]] = {"csv": defaultdict(Decimal), "xlsx": defaultdict(Decimal)}
    for name, rows in (("csv", rows_csv), ("xlsx", rows_xlsx)):
        for row in rows:
            sums[name][str(row["currency"])] += cents(row["amount"])
    paid = {"EUR": Decimal("17.50"), "USD": Decimal("30.50")}  # 5 + 12.50; 10 + 20.50
    assert sums["csv"] == sums["xlsx"] == paid
    by_invoice = {int(r["invoice"]): r for r in rows_csv if r["kind"] == "payment"}
    assert by_invoice[tipped.id]["tip"] == "2.50"
    assert by_invoice[chair.id]["fee"] == f"{Decimal(commission) / 100:.2f}"
    assert by_invoice[pos.id]["crypto_amount"] == format(msat_to_btc(msat), "f")
    assert datetime.fromisoformat(by_invoice[pos.id]["time"]).utcoffset() == timedelta(0)
    # The shift close counts the same, the sandbox payment named apart.
    close = await bot.command(maria, "/close")
    assert "Mion: 2 payments · €17.50" in close.content, close.content
    assert "MixPay: 1 payment · $10.00" in close.content
    assert "Tips: €2.50" in close.content
    assert "1 sandbox payment is not counted." in close.content


# -- 3: /close with its chart, in German ---------------------------------------------------------
async def test_close_in_german_with_its_chart(bot: Harness, sims: Gateways) -> None:
    emu, repo = bot.emu, bot.services.repo
    max_ = bot.merchant2
    reply, paid = await bot.invoice(max_, "/invoice 20 Kaffee")
    sims.mion.pay(sim_key(sims.mion, paid))
    await emu.wait_for(lambda: "BEZAHLT" in reply.content, timeout=8)
    await ledger_of(bot, paid, lambda e: len(e) == 1)
    _, gone = await bot.invoice(max_, "/invoice 7 Tee")
    sims.mion.expire(sim_key(sims.mion, gone))
    for _ in range(100):
        invoice = await repo.get_invoice(gone.id)
        if invoice is not None and invoice.status is InvoiceStatus.EXPIRED:
            break
        await asyncio.sleep(0.1)

    before = len(emu.bot_messages(max_))
    await emu.send_message(max_, "/close")
    photo = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(max_)[before:] if m.photo), None), timeout=20
    )
    text = emu.bot_messages(max_)[before]
    assert text.content.startswith("🧾 Kassenabschluss · ")
    assert "(UTC)" in text.content
    assert "Mion: 1 Zahlung · 20,00 €" in text.content
    # each cashier by name (as Telegram last gave it) and id, with their tips
    assert f"Max ({max_.id}): 1 Zahlung · 20,00 € · Trinkgeld: 0,00 €" in text.content
    assert "Abgelaufen: 1 · storniert: 0" in text.content
    assert "Trinkgeld: 0,00 €" in text.content
    assert photo.caption is not None and photo.caption.startswith("📈 Umsatz")
    assert photo.photo is not None
    image = Image.open(io.BytesIO(photo.photo))
    image.load()  # the PNG decodes
    assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 300

    # Nothing on a stranger's request; nothing for a shop without sales but the empty close.
    refused = await bot.command(bot.stranger, "/close")
    assert "for merchants only" in refused.content and refused.photo is None
    empty = await bot.command(bot.merchant, "/close")
    assert "No payments on this day." in empty.content


# -- 2: the time zone at a day boundary -------------------------------------------------------
async def test_time_zone_decides_the_day_of_a_payment(bot: Harness, sims: Gateways) -> None:
    emu = bot.emu
    max_ = bot.merchant2
    saved = await bot.command(max_, "/settings timezone Europe/Berlin")
    assert saved.content.startswith("Zeitzone: Europe/Berlin. Dort ist es jetzt ")
    late_utc = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: still Nov 30
    after_midnight = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # 00:30 Dec 1 in Berlin
    shown: list[MessageRecord] = []
    for at in (late_utc, after_midnight):
        reply, invoice = await bot.invoice(max_, "/invoice 10 Wein")
        sims.mion.pay(sim_key(sims.mion, invoice), at=at, force=True)
        await emu.wait_for(lambda r=reply: "BEZAHLT" in r.content, timeout=8)  # type: ignore[misc]
        await ledger_of(bot, invoice, lambda e: len(e) == 1)
        shown.append(reply)
    # Times shown are the shop's: the paid time in Berlin, zone named.
    assert "2026-11-30 23:30 Europe/Berlin" in shown[0].content, shown[0].content
    assert "2026-12-01 00:30 Europe/Berlin" in shown[1].content

    files = await report(bot, max_, "/report 2026-11-30")
    [rows] = [csv_rows(v) for k, v in files.items() if k == "tillbot-ledger-range-20261130.csv"]
    assert [r["time"] for r in rows] == ["2026-11-30T23:30:00+01:00"]
    files = await report(bot, max_, "/report 2026-12-01 2026-12-01")
    [rows] = [csv_rows(v) for k, v in files.items() if k.endswith(".csv") and "ledger" in k]
    assert [r["day"] for r in rows] == ["2026-12-01"]
    # In UTC both are on Nov 30.
    await bot.command(max_, "/settings timezone UTC")
    files = await report(bot, max_, "/report 2026-11-30")
    [rows] = [csv_rows(v) for k, v in files.items() if k.endswith(".csv") and "ledger" in k]
    assert [r["time"] for r in rows] == ["2026-11-30T22:30:00+00:00", "2026-11-30T23:30:00+00:00"]
    assert sum(cents(r["amount"]) for r in rows) == Decimal("20.00")


# -- bad input: a friendly reply, nothing changed -------------------------------------------------
@pytest.mark.parametrize(
    ("who", "text", "expected"),
    [
        ("en", "/report 2026-13-01", "That date does not exist"),
        ("en", "/report 2026-11-30 2026-11-01", "The first date must not be after the second."),
        ("en", "/report 2000-01-01 2030-01-01", "at most 3,660 days"),
        ("en", "/report yesterday", "/report 2026-11-01 2026-11-30"),
        ("de", "/report gestern", "Schreib /report today, week, month, all oder zwei Daten"),
        ("de", "/report 2026-11-31", "Dieses Datum gibt es nicht"),
        ("en", "/settings timezone Mars/Olympus", "I do not know the time zone Mars/Olympus"),
        ("de", "/settings timezone ../../etc/passwd", "Die Zeitzone ../../etc/passwd kenne ich nicht"),
        ("en", "/settings closing 25", "25 is not an hour"),
        ("de", "/settings closing abends", "abends ist keine Stunde"),
        ("en", "/settings colour blue", "Write /settings timezone Europe/Berlin"),
    ],
)
async def test_bad_input_gets_a_friendly_reply_and_changes_nothing(
    bot: Harness, who: str, text: str, expected: str
) -> None:
    user = bot.merchant if who == "en" else bot.merchant2
    before = await bot.services.repo.get_shop_settings(user.id)
    reply = await bot.command(user, text)
    assert expected in reply.content, reply.content
    assert reply.document is None
    assert await bot.services.repo.get_shop_settings(user.id) == before
    assert [m for m in bot.emu.bot_messages(user) if m.document is not None] == []


# -- 3: the daily close at the shop's closing hour -------------------------------------------------
async def test_daily_close_is_sent_once_at_the_closing_hour(
    harness: Harness, sims: Gateways
) -> None:
    offset = [timedelta(0)]
    harness.clock = lambda: datetime.now(UTC) + offset[0]
    h = harness
    await h.start(**sims.settings())
    maria = h.merchant
    await h.command(maria, "/settings timezone America/New_York")
    local = datetime.now(UTC).astimezone(h.services.view.zones[maria.id])
    # Ten minutes before 22:00 in New York, today or tomorrow.
    target = local.replace(hour=21, minute=50, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    offset[0] = target - local
    reply = await h.command(maria, "/settings closing 22")
    assert reply.content.startswith("The shift close is sent every day at 22:00 (America/New_York)")
    job = h.services.payments.books  # the job's service; the job itself runs below
    assert await job.due_closes() == []  # not yet
    offset[0] += timedelta(minutes=11)
    app = h.runner.app if h.runner else None
    assert app is not None and app.job_queue is not None
    [close_job] = app.job_queue.get_jobs_by_name("shift-close")
    before = len(h.emu.bot_messages(maria))
    await close_job.run(app)
    photo_or_text = await h.emu.wait_for(
        lambda: len(h.emu.bot_messages(maria)) > before and h.emu.bot_messages(maria)[before],
        timeout=10,
    )
    assert photo_or_text.content.startswith("🧾 Shift close · ")
    assert "(America/New_York)" in photo_or_text.content
    await close_job.run(app)  # once a day: the second tick sends nothing
    assert len([m for m in h.emu.bot_messages(maria)[before:] if "Shift close" in m.content]) == 1
    settings = await h.services.repo.get_shop_settings(maria.id)
    assert settings.closing_hour == 22 and settings.last_closed_on == target.date()
    off = await h.command(maria, "/settings closing off")
    assert off.content == "No daily shift close; /close still shows it."
