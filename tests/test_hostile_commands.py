"""Hostile input (issue 17): edited commands, ids in Unicode digits or out of range, lengths
counted as Telegram counts them, control characters in descriptions.

The real bot (the python-telegram-bot Application built by `bot.app`) runs against the Bot
API emulator over HTTP; the last test runs `python -m bot` as a process in webhook mode.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings
from bot.domain.models import InvoiceKind, InvoiceStatus, NewInvoice
from bot.ids import parse_invoice_id, parse_page, parse_user_id
from bot.text import strip_controls
from testkit.botproc import BotProcess
from testkit.telegram import BotApiEmulator, EmuUser, MessageRecord
from tests.conftest import ADMIN_ID, MERCHANT_ID, PLACEHOLDERS, TOKEN, Harness
from tests.reliability_stats import record
from tests.test_access import forge

pytest_plugins = ["tests.reliability_stats"]

USAGE = "Write /merchants add 12345"  # a wrong id gets the usage, which shows the digits


async def quiet(emu: BotApiEmulator, seconds: float = 0.6) -> None:
    """Give the bot time to (wrongly) act on an update that should change nothing."""
    await asyncio.sleep(seconds)


# -- 2. edited messages ---------------------------------------------------------------------
async def test_an_edited_invoice_command_is_not_run_again(tillbot: Harness) -> None:
    h, emu = tillbot, tillbot.emu
    before = len(emu.bot_messages(h.merchant))
    sent = await emu.send_message(h.merchant, "/invoice 1250 Sofa")
    await emu.wait_for(  # the placeholder edited into the invoice
        lambda: [m for m in emu.bot_messages(h.merchant)[before:] if "Invoice #" in m.content],
        timeout=10,
    )
    invoices = await h.services.repo.list_invoices(h.merchant.id, limit=10)
    assert len(invoices) == 1
    seen = len(emu.bot_messages(h.merchant))
    await emu.edit_message(h.merchant, sent, "/invoice 12.50 Sofa")
    hint = await emu.wait_for(
        lambda: emu.bot_messages(h.merchant)[seen:] and emu.bot_messages(h.merchant)[seen],
        timeout=10,
    )
    assert "edited" in hint.content and "new message" in hint.content
    await quiet(emu)
    assert len(await h.services.repo.list_invoices(h.merchant.id, limit=10)) == 1
    assert len(emu.bot_messages(h.merchant)) == seen + 1  # the hint, nothing else
    # in German, for a German merchant; an edited plain text is just an edit: no reply
    sent = await emu.send_message(h.merchant2, "/invoices")
    await emu.wait_for(lambda: emu.bot_messages(h.merchant2), timeout=10)
    seen2 = len(emu.bot_messages(h.merchant2))
    await emu.edit_message(h.merchant2, sent, "/invoice 5 Lampe")
    hint = await emu.wait_for(
        lambda: emu.bot_messages(h.merchant2)[seen2:] and emu.bot_messages(h.merchant2)[seen2],
        timeout=10,
    )
    assert "Bearbeitete Befehle" in hint.content
    plain = await emu.send_message(h.customer, "hello")
    await emu.wait_for(lambda: emu.bot_messages(h.customer), timeout=10)  # /help answer
    seen3 = len(emu.bot_messages(h.customer))
    await emu.edit_message(h.customer, plain, "hello again")
    await quiet(emu)
    assert len(emu.bot_messages(h.customer)) == seen3
    assert await h.services.repo.list_invoices(h.merchant2.id, limit=10) == []
    record("hostile input", tests=1, inputs=3)


async def test_an_edited_merchants_add_does_not_re_add_a_removed_merchant(
    tillbot: Harness,
) -> None:
    h, emu = tillbot, tillbot.emu
    repo = h.services.repo
    added = await emu.send_message(h.admin, "/merchants add 5555")
    await emu.wait_for_message(h.admin, lambda m: "5555 is now a merchant" in m.content)
    await emu.send_message(h.admin, "/merchants remove 5555")
    await emu.wait_for_message(h.admin, lambda m: "5555 is no longer" in m.content, timeout=10)
    assert not await repo.is_merchant(5555)
    seen = len(emu.bot_messages(h.admin))
    await emu.edit_message(h.admin, added, "/merchants add 5555")
    await emu.wait_for(lambda: len(emu.bot_messages(h.admin)) > seen, timeout=10)
    await quiet(emu)
    assert "edited" in emu.bot_messages(h.admin)[seen].content
    assert not await repo.is_merchant(5555)
    record("hostile input", tests=1, inputs=3)


# -- 6. ids: ASCII digits within range, or refused plainly ------------------------------------
BAD_IDS = [
    "²",  # superscript two: isdigit() is True, int() raises
    "١٢٣",  # Arabic-Indic 123: int() reads it as 123
    "１２３",  # fullwidth 123
    "𝟏",  # mathematical bold 1
    "9" * 25,  # overflows a 64-bit integer
    str(2**63),  # one past the database's largest integer
    "-1",
    "1e3",
]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_ids_in_commands_are_ascii_digits_within_range(
    tillbot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h, repo = tillbot, tillbot.services.repo
    for text in BAD_IDS:
        answer = await h.command(h.admin, f"/merchants add {text}", timeout=10)
        assert USAGE in answer.content, (text, answer.content)
    assert [m.user_id for m in await repo.list_merchants()] == []
    assert not await repo.is_merchant(123) and not await repo.is_merchant(1)
    # out of Telegram's range (52 bits) is refused; the largest id is taken
    refused = await h.command(h.admin, f"/merchants add {2**52}")
    assert USAGE in refused.content
    taken = await h.command(h.admin, f"/merchants add {2**52 - 1}")
    assert "is now a merchant" in taken.content
    german = await h.command(h.merchant2, "/merchants add ١٢٣")  # not an admin: refused first
    assert "Admin" in german.content
    assert errors_logged(caplog) == []
    record("hostile input", tests=1, inputs=len(BAD_IDS) + 3)


def invoice_messages(h: Harness) -> int:
    return sum("Invoice #" in m.content for m in h.emu.bot_messages(h.merchant))


async def test_ids_in_button_data_are_ascii_digits_within_range(
    tillbot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h, repo = tillbot, tillbot.services.repo
    _, invoice = await h.invoice(h.merchant, "/invoice 12.50 Coffee")
    assert invoice.id == 1
    presses = 0
    for text in [*BAD_IDS, "١"]:  # Arabic-Indic one: invoice #1 must stay untouched
        for user, data in (
            (h.merchant, f"cancel:{text}"),
            (h.merchant, f"show:{text}"),
            (h.merchant, f"page:{text}"),
            (h.admin, f"merch:add:{text}"),
            (h.admin, f"merch:rm:{text}"),
        ):
            shown_before = invoice_messages(h)
            answer = await forge(h, user, data[:64])
            presses += 1
            assert answer.get("text") is None, (data, answer)  # a silent answer, no action
            assert invoice_messages(h) == shown_before, data
    stored = await repo.get_invoice(invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PENDING
    assert [m.user_id for m in await repo.list_merchants()] == []
    assert errors_logged(caplog) == [], errors_logged(caplog)
    record("hostile input", tests=1, inputs=presses)


async def test_amounts_in_unicode_digits_are_refused_never_misread(tillbot: Harness) -> None:
    h = tillbot
    tried = ["١٢", "²", "１２", "12.٥٠", "𝟏𝟐", "1٢", "٫5", "12,٥"]
    for amount in tried:
        before = len(h.emu.bot_messages(h.merchant))
        await h.emu.send_message(h.merchant, f"/invoice {amount} Tea")
        await h.emu.wait_for(lambda n=before + 1: len(h.emu.bot_messages(h.merchant)) >= n)
        answer = h.emu.bot_messages(h.merchant)[before]
        assert "is not an amount I understand" in answer.content, (amount, answer.content)
        assert "\nWrite it like this" in answer.content  # one reply per mistake
    assert await h.services.repo.list_invoices(h.merchant.id, limit=5) == []
    record("hostile input", tests=1, inputs=len(tried))


def test_the_one_id_parser_and_the_id_settings() -> None:
    for text in [*BAD_IDS, "", " 1", "1 ", "1\n", "+1", "0x1", "1_000", "0"]:
        assert parse_user_id(text) is None and parse_invoice_id(text) is None, text
    assert parse_user_id("4503599627370495") == 2**52 - 1
    assert parse_user_id("4503599627370496") is None
    assert parse_invoice_id(str(2**63 - 1)) == 2**63 - 1
    assert parse_page("0") == 0 and parse_page("1000001") is None
    with pytest.raises(SettingsError, match="ADMIN_IDS"):
        load_settings(telegram_bot_token=TOKEN, admin_ids="١٢٣", _env_file=None)
    assert load_settings(telegram_bot_token=TOKEN, admin_ids="12, 34", _env_file=None).admin_ids \
        == [12, 34]


# -- 7. lengths are Telegram's: UTF-16 code units after entity parsing ------------------------
def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def new_replies(h: Harness, user: EmuUser, text: str, count: int = 1) -> list[MessageRecord]:
    before = len(h.emu.bot_messages(user))
    await h.emu.send_message(user, text)

    def settled() -> list[MessageRecord]:  # what "Creating invoice…" became
        return [
            m for m in h.emu.bot_messages(user)[before:]
            if not m.deleted and m.content not in PLACEHOLDERS
        ]

    await h.emu.wait_for(lambda: len(settled()) >= count, timeout=10)
    await quiet(h.emu, 0.3)
    return settled()


async def test_long_descriptions_fit_telegrams_limits_and_are_cut_as_plain_text(
    harness: Harness,
) -> None:
    h = harness
    await h.start(max_description_length=1000)
    repo = h.services.repo
    cases = [
        ("/pos 5 " + "😀" * 1000, "photo"),  # 1000 code points, 2000 UTF-16 units
        ("/pos 6 " + "&" * 1000, "photo"),  # escaped to 1000 `&amp;`
        ("/pos 7 " + "👨‍👩‍👧‍👦" * 140, "photo"),  # 980 code points, 1540 units
        ("/invoice 8 " + "😀" * 1000, "text"),  # 2000 units: fits a message whole
        ("/invoice 9 " + "&<b>" * 250, "text"),
    ]
    for command, kind in cases:
        [shown] = await new_replies(h, h.merchant, command)
        assert "Invoice #" in shown.content, (command[:12], shown.content[:200])
        assert (shown.photo_file is not None) == (kind == "photo")
        assert units(shown.content) <= (1024 if kind == "photo" else 4096)
        [invoice] = await repo.list_invoices(h.merchant.id, limit=1)
        described = shown.content.split("\n")[2].strip("“”")
        if kind == "photo":  # cut at a character boundary of the plain text, marked with …
            assert described.endswith("…") and invoice.description.startswith(described[:-1])
            assert units(described) > 400  # the room was used, not thrown away
        else:
            assert described == invoice.description
    h.emu.assert_no_violations()
    record("hostile input", tests=1, inputs=len(cases))


async def test_an_invoice_whose_message_fails_is_reported_as_created(
    tillbot: Harness,
) -> None:
    h = tillbot
    # The placeholder went out; editing it into the invoice is refused.
    h.emu.fail_next(
        1, 400, method="editMessageText", description="Bad Request: message is too long"
    )
    replies = await new_replies(h, h.merchant, "/invoice 12.50 Sofa")
    [invoice] = await h.services.repo.list_invoices(h.merchant.id, limit=5)
    assert invoice.status is InvoiceStatus.PENDING  # live at the gateway
    texts = [m.content for m in replies]
    assert not any("Nothing was charged" in text for text in texts), texts
    assert any(f"Invoice #{invoice.id} was created" in text and "/invoices" in text
               for text in texts), texts
    h.emu.violations.clear()  # the injected refusal
    record("hostile input", tests=1, inputs=1, faults=1)


# -- 9. control characters and terminal escapes never stored ----------------------------------
HOSTILE_DESCRIPTIONS = {
    "Tea\x00 cup": "Tea cup",  # NUL
    "\x1b[2J\x1b[31mRED\x1b[0m alert": "RED alert",  # clear screen, colours (CSI)
    "\x1b]0;pwned\x07Lamp": "Lamp",  # OSC: set the terminal title
    "Sofa\x9b2J\x9d0;x\x9c ok": "Sofa ok",  # the one-byte C1 forms
    "Chair\x1bc\x7f\x08\x08X": "ChairX",  # reset terminal, DEL, backspaces
    "Two\nlines\tand\r\ntabs": "Two lines and tabs",  # whitespace: one line
    "Café 👨‍👩‍👧 ok": "Café 👨‍👩‍👧 ok",  # letters and emoji (ZWJ) stay
}


def has_controls(text: str) -> bool:
    return any((ord(c) < 0x20 and c not in "\r\n") or 0x7F <= ord(c) <= 0x9F for c in text)


async def test_control_characters_are_stripped_before_storing(
    tillbot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h, repo = tillbot, tillbot.services.repo
    for raw, expected in HOSTILE_DESCRIPTIONS.items():
        [shown] = await new_replies(h, h.merchant, f"/invoice 5 {raw}")
        [invoice] = await repo.list_invoices(h.merchant.id, limit=1)
        assert invoice.description == expected, (raw, invoice.description)
        assert expected in shown.content
    # a row stored before this check (an older version) is cleaned on the way out too
    now = h.services.clock()
    await repo.create_invoice(
        NewInvoice(
            public_token="old-row-token-0123456789",
            merchant_id=h.merchant.id,
            amount_minor=100,
            currency="EUR",
            description="=old\x1b[2J\x00row",
            gateway="mixpay",  # a real gateway's: sandbox tests are not in reports
            kind=InvoiceKind.CHECKOUT,
            created_at=now,
            expires_at=now + timedelta(hours=1),
            next_poll_at=now + timedelta(hours=1),
        )
    )
    replies = await new_replies(h, h.merchant, "/report all", count=2)
    [csv_file] = [m for m in replies if m.document_file is not None]
    csv_text = csv_file.document_file.data.decode("utf-8")
    assert not has_controls(csv_text), repr(csv_text)
    assert "'=oldrow" in csv_text
    logged = [f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    assert not [line for line in logged if "\x1b" in line or "\x00" in line or "\x9b" in line]
    record("hostile input", tests=1, inputs=len(HOSTILE_DESCRIPTIONS) + 1)


def test_strip_controls_removes_whole_escape_sequences() -> None:
    assert strip_controls("a\x1b[38;5;196mb\x1b[0m") == "ab"  # no `[38;5;196m` left behind
    assert strip_controls("\x1bP1$r\x1b\\x") == "x"  # DCS string up to ST
    assert strip_controls("end\x1b") == "end" and strip_controls("\x1b[") == ""
    assert strip_controls("  spaced \n\n out ") == "spaced out"
    assert strip_controls("١٢٣ Straße – ok") == "١٢٣ Straße – ok"


# -- the same findings against a real `python -m bot` process ---------------------------------
async def test_hostile_input_against_a_real_bot_process(
    emulator: BotApiEmulator, tmp_path: Path
) -> None:
    """Points 2, 6, 7 and 9 as they were found: a real process (long polling, DEBUG logs)."""
    emu = emulator
    merchant = emu.add_user(MERCHANT_ID, "Maria", language_code="en")
    admin = emu.add_user(ADMIN_ID, "Ada", language_code="en")
    bot = BotProcess(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": emu.url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'hostile.db'}",
            "ADMIN_IDS": str(ADMIN_ID),
            "MERCHANT_IDS": str(MERCHANT_ID),
            "MAX_DESCRIPTION_LENGTH": "1000",
            "LOG_LEVEL": "DEBUG",
        },
        tmp_path / "bot.log",
    )

    async def say(user: EmuUser, text: str, count: int = 1) -> list[MessageRecord]:
        before = len(emu.bot_messages(user))
        await emu.send_message(user, text)

        def settled() -> list[MessageRecord]:  # what "Creating invoice…" became
            return [
                m for m in emu.bot_messages(user)[before:]
                if not m.deleted and m.content not in PLACEHOLDERS
            ]

        await emu.wait_for(lambda: len(settled()) >= count, timeout=20)
        await asyncio.sleep(0.3)
        return settled()

    inputs = 0
    try:
        bot.start()
        await emu.wait_for(lambda: emu.polls_started > 0, timeout=30)
        # 2: an edited /invoice does not create a second invoice
        first = await say(merchant, "/invoice 1250 Sofa")
        assert "Invoice #1" in first[0].content
        sent = [m for m in emu.messages(MERCHANT_ID) if not m.from_bot][-1]
        before = len(emu.bot_messages(merchant))
        await emu.edit_message(merchant, sent, "/invoice 12.50 Sofa")
        await emu.wait_for(lambda: len(emu.bot_messages(merchant)) > before, timeout=20)
        await asyncio.sleep(0.5)
        [hint] = emu.bot_messages(merchant)[before:]
        assert "edited commands" in hint.content
        inputs += 2
        # 6: ids in Unicode digits or out of range, as arguments and as button data
        for text in ("١٢٣", "²", "9" * 25):
            [answer] = await say(admin, f"/merchants add {text}")
            assert USAGE in answer.content, answer.content
            inputs += 1
        invoice_message = first[0]
        for data in ("cancel:²", "cancel:١", "show:" + "9" * 25, "page:²"):
            invoice_message.reply_markup = {
                "inline_keyboard": [[{"text": "forged", "callback_data": data}]]
            }
            query = await emu.press_button(merchant, invoice_message, "forged")
            assert (await emu.wait_for_callback_answer(query.id, timeout=20)).get("text") is None
            inputs += 1
        # 7: a long emoji description in a caption; 9: escapes in a description
        [photo] = await say(merchant, "/pos 5 " + "😀" * 1000)
        assert photo.photo_file is not None and "Invoice #2" in photo.content
        assert len(photo.content.encode("utf-16-le")) // 2 <= 1024
        [clean] = await say(merchant, "/invoice 3 Tea\x00\x1b[2J\x1b]0;x\x07 cup")
        assert "“Tea cup”" in clean.content
        inputs += 2
    finally:
        await bot.stop()
        bot.kill()
    output = bot.output()
    assert "Processing update" in output  # DEBUG really logged
    assert "handling an update failed" not in output and "Traceback" not in output
    assert "\x1b" not in output and "\x00" not in output
    assert "Something went wrong" not in " ".join(m.content for m in emu.bot_messages(merchant))
    assert emu.message(MERCHANT_ID, 1) is not None
    record("hostile input", tests=1, inputs=inputs)
