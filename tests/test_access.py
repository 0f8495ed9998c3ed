"""Access: strangers cannot create, view, cancel or report invoices; customers see only the
invoice whose link they hold; public tokens cannot be guessed or enumerated.

Everything goes through the Bot API emulator, as Telegram would deliver it. Forged callback
data (what a modified client can send) is hung on a bot message in the attacker's own chat.
"""

from __future__ import annotations

import asyncio
import base64
import string

from bot.domain.drafts import new_public_token, reference_for
from bot.domain.models import Invoice, InvoiceStatus, MessageRole
from bot.i18n import t
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import MERCHANT_ID, STRANGER_ID, Harness
from tests.reliability_stats import record

pytest_plugins = ["tests.reliability_stats"]

NOT_FOUND = t("en", "invoice_not_found")
NOT_ADMIN = t("en", "not_admin_command", command="merchants")
NOT_ADMIN_BUTTON = t("en", "not_admin")


def not_merchant(command: str) -> str:
    """The refusal names the command that was tried (issue 16)."""
    return t("en", "not_merchant_command", command=command)

NOT_YOURS = t("en", "not_yours")


def share_token(message: MessageRecord) -> str:
    link = next(w for w in message.content.split() if "?start=" in w)
    return link.split("?start=", 1)[1]


async def forge(h: Harness, user: EmuUser, data: str) -> dict[str, object]:
    """Press a button with any callback data (a modified client), in the user's own chat;
    return the bot's answerCallbackQuery parameters."""
    carrier = await h.command(user, "/help")
    carrier.reply_markup = {"inline_keyboard": [[{"text": "forged", "callback_data": data}]]}
    query = await h.emu.press_button(user, carrier, "forged")
    return await h.emu.wait_for_callback_answer(query.id)


async def two_invoices(h: Harness) -> tuple[MessageRecord, Invoice, MessageRecord, Invoice]:
    reply_a, a = await h.invoice(h.merchant, "/invoice 12.50 Alpha")
    reply_b, b = await h.invoice(h.merchant, "/invoice 7 Bravo")
    return reply_a, a, reply_b, b


async def _status(h: Harness, invoice_id: int) -> InvoiceStatus:
    stored = await h.services.repo.get_invoice(invoice_id)
    assert stored is not None
    return stored.status


def _texts(h: Harness, user: EmuUser) -> list[str]:
    return [m.content for m in h.emu.bot_messages(user)]


async def test_strangers_cannot_create_list_report_or_administer(tillbot: Harness) -> None:
    h = tillbot
    _, a, _, _ = await two_invoices(h)
    denied = 0
    refusals = {
        "/invoice 12.50 Coffee": not_merchant("invoice"),
        "/invoice sandbox 5": not_merchant("invoice"),
        "/pos 5": not_merchant("pos"),
        "/invoices": not_merchant("invoices"),
        "/report": not_merchant("report"),
        "/report all": not_merchant("report"),
        "/merchants": NOT_ADMIN,
        f"/merchants add {STRANGER_ID}": NOT_ADMIN,
        f"/merchants remove {MERCHANT_ID}": NOT_ADMIN,
    }
    for text, expected in refusals.items():
        reply = await h.command(h.stranger, text)
        assert expected in reply.content, (text, reply.content)
        denied += 1
    # /settings works for anyone, but offers a stranger no gateway (only the language)
    settings = await h.command(h.stranger, "/settings")
    assert not any(b.get("callback_data", "").startswith("set:gw:") for b in settings.buttons)
    # an inline query from a stranger offers nothing
    query = await h.emu.inline_query(h.stranger, "12.50 Coffee")
    answer = await h.emu.wait_for_inline_answer(query)
    assert answer["results"] == []
    denied += 1

    repo = h.services.repo
    assert await repo.count_invoices(STRANGER_ID) == 0
    assert h.sandbox().create_count == 2  # the merchant's two, nothing more
    assert not await h.services.payments.is_merchant(STRANGER_ID)
    assert {m.user_id for m in await repo.list_merchants()} == set()
    assert not [d for d in h.emu.calls("sendDocument")]  # no report went anywhere
    assert not [m for m in _texts(h, h.stranger) if f"#{a.id}" in m]
    record("access", tests=1, inputs=len(refusals) + 2, denied=denied)


async def test_forged_buttons_do_nothing_for_strangers(tillbot: Harness) -> None:
    h = tillbot
    _, a, _, b = await two_invoices(h)
    before_messages = len(h.emu.bot_messages(h.stranger))
    forged: dict[str, str | None] = {
        f"cancel:{a.id}": NOT_YOURS,
        f"cancel:{b.id}": NOT_YOURS,
        f"show:{a.id}": NOT_YOURS,
        "show:999999": NOT_YOURS,
        "page:0": None,
        "page:99999999999999999999": None,
        f"merch:add:{STRANGER_ID}": NOT_ADMIN_BUTTON,
        f"merch:rm:{MERCHANT_ID}": NOT_ADMIN_BUTTON,
        "set:gw:sandbox": None,
        f"sim:{new_public_token()}": None,
        f"sim:{a.id}": None,
        f"chk:{new_public_token()}": None,
        "cancel:-1": None,
        "cancel:1:2": None,
        "show:abc": None,
        "noop:x": None,
        "totally:unknown": None,
    }
    for data, expected in forged.items():
        answer = await forge(h, h.stranger, data)
        if expected is not None:
            assert expected in str(answer.get("text")), (data, answer)
    assert await _status(h, a.id) is InvoiceStatus.PENDING
    assert await _status(h, b.id) is InvoiceStatus.PENDING
    assert not await h.services.payments.is_merchant(STRANGER_ID)
    prefs = await h.services.repo.get_prefs(STRANGER_ID)
    assert prefs.gateway is None
    new = h.emu.bot_messages(h.stranger)[before_messages:]
    assert not [m for m in new if "Invoice #" in m.content], [m.content for m in new]
    assert not [m for m in (await h.sandbox().sessions()).values() if m.status != "created"]
    record("access", tests=1, inputs=len(forged), denied=len(forged))


async def test_another_merchant_sees_and_cancels_nothing_of_mine(tillbot: Harness) -> None:
    h = tillbot
    _, a, _, _ = await two_invoices(h)
    reply = await h.command(h.merchant2, "/invoices")
    assert "#" not in reply.content or f"#{a.id}" not in reply.content
    assert not any(str(a.id) == b.get("callback_data", "").partition(":")[2]
                   for b in reply.buttons)
    report = await h.command(h.merchant2, "/report all")
    assert f"{a.amount_minor}" not in report.content
    denied = 0
    for data in (f"cancel:{a.id}", f"show:{a.id}"):
        answer = await forge(h, h.merchant2, data)
        assert t("de", "not_yours") in str(answer.get("text")), answer  # Max reads German
        denied += 1
    assert await _status(h, a.id) is InvoiceStatus.PENDING
    assert not [m for m in _texts(h, h.merchant2) if f"#{a.id}" in m]
    # the admin may look at any invoice (the positive control of the same button)
    await forge(h, h.admin, f"show:{a.id}")
    await h.emu.wait_for_message(h.admin, lambda m: f"#{a.id}" in m.content)
    record("access", tests=1, inputs=4, denied=denied)


async def test_a_customer_sees_only_the_invoice_whose_link_they_hold(tillbot: Harness) -> None:
    h = tillbot
    reply_a, a, _, b = await two_invoices(h)
    shown = await h.command(h.customer, f"/start {share_token(reply_a)}")
    assert f"#{a.id}" in shown.content and "€12.50" in shown.content
    assert f"#{b.id}" not in shown.content
    # a customer's copy has no merchant buttons, and the share link is not in it
    assert not any(b_.get("callback_data", "").startswith("cancel:") for b_ in shown.buttons)
    assert "?start=" not in shown.content
    denied = 0
    for text, expected in {"/invoices": not_merchant("invoices"), "/report": not_merchant("report")}.items():
        assert expected in (await h.command(h.customer, text)).content
        denied += 1
    for data in (f"cancel:{a.id}", f"show:{b.id}", f"show:{a.id}"):
        answer = await forge(h, h.customer, data)
        assert NOT_YOURS in str(answer.get("text")), (data, answer)
        denied += 1
    assert await _status(h, a.id) is InvoiceStatus.PENDING
    texts = _texts(h, h.customer)
    assert not [m for m in texts if f"#{b.id}" in m]
    messages = await h.services.repo.messages_for(b.id)
    assert all(m.role is MessageRole.MERCHANT for m in messages)
    record("access", tests=1, inputs=6, denied=denied)


def _variants(invoice: Invoice) -> list[str]:
    """Guesses an attacker could derive from an invoice they know of (or from nothing)."""
    token = invoice.public_token
    swapped = token.swapcase() if token.swapcase() != token else token + "A"
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    guesses = [
        str(invoice.id),
        f"{invoice.id:05d}",
        f"tillbot-{invoice.id}",
        reference_for(invoice),
        token[:-1],
        token[:11],
        token[:16],
        token[1:],
        token + "x",
        swapped,
        flipped,
        token[:-1] + "/",  # the standard base64 alphabet
        "%",
        "_" * 22,
        "%" + token[2:-2] + "%",
        "' OR '1'='1",
        f"{token}' --",
        "sbx-",
        "sbx-%",
        f"sbx-{invoice.id}",
        f"sbx-{token}",
    ]
    return [g for g in guesses if g != token]


async def test_public_tokens_cannot_be_guessed_or_enumerated(tillbot: Harness) -> None:
    h = tillbot
    _, a, _, b = await two_invoices(h)
    payments = h.services.payments

    # 128 bits from the OS's CSPRNG: 22 URL-safe characters decoding to 16 bytes, no repeats
    tokens = {new_public_token() for _ in range(20_000)}
    assert len(tokens) == 20_000
    alphabet = set(string.ascii_letters + string.digits + "-_")
    for token in list(tokens)[:2_000]:
        assert len(token) == 22 and set(token) <= alphabet
        assert len(base64.urlsafe_b64decode(token + "==")) == 16
    assert len(a.public_token) == 22 and a.public_token != b.public_token

    # direct lookups: every derived guess and every small id misses
    guesses = [g for inv in (a, b) for g in _variants(inv)]
    guesses += [str(i) for i in range(0, 300)]
    guesses += list(tokens)[:2_000]
    for guess in guesses:
        assert await payments.invoice_for_customer(guess) is None, guess
    # ... and the real ones still hit
    assert (await payments.invoice_for_customer(a.public_token)) == await h.services.repo.get_invoice(a.id)

    # over Telegram: deep links with guesses get "not found" and show nothing
    over_telegram = [*_variants(a)[:12], "1", "2", str(b.id)]
    for guess in over_telegram:
        reply = await h.command(h.stranger, f"/start {guess}")
        assert NOT_FOUND in reply.content, (guess, reply.content)
    assert not [m for m in _texts(h, h.stranger) if "Invoice #" in m]
    for inv in (a, b):
        assert all(m.role is MessageRole.MERCHANT for m in await h.services.repo.messages_for(inv.id))
    record("access", tests=1, inputs=len(guesses) + len(over_telegram),
           denied=len(guesses) + len(over_telegram),
           note=f"{len(tokens)} fresh public tokens: 128 bits each, no repeats; "
           f"{len(guesses) + len(over_telegram)} guessed or derived tokens: none resolved")


async def test_refusals_are_fast_and_touch_no_gateway(tillbot: Harness) -> None:
    """A flood of refused requests costs no gateway request and stores nothing."""
    h = tillbot
    sim = h.sandbox()
    before = len(sim.requests)
    await asyncio.gather(
        *(h.emu.send_message(h.stranger, f"/invoice {n} Spam") for n in range(1, 31)),
        *(h.emu.send_message(h.customer, f"/pos {n}") for n in range(1, 31)),
    )
    await h.emu.wait_for(
        lambda: sum(not_merchant("invoice") in m for m in _texts(h, h.stranger)) == 30
        and sum(not_merchant("pos") in m for m in _texts(h, h.customer)) == 30,
        # Replies keep the chat's pace (Telegram's one a second would make 30 refusals to one
        # user take about 29 s; the harness paces faster).
        timeout=60,
    )
    assert len(sim.requests) == before
    assert await h.services.repo.count_invoices(STRANGER_ID) == 0
    record("access", tests=1, inputs=60, denied=60)
