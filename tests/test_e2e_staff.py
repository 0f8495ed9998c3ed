"""Staff end to end over the Bot API emulator (issue 15, point 5): the owner invites a
cashier and a manager with one-time links; invites used twice, expired, unknown, with a
wrong role word, opened by the owner or by someone of another shop are refused; what each
role may do and may not (every refusal a reply that changes nothing); a cashier's sale is
the shop's, attributed to the cashier in the ledger, in /close and in /report; roles
changed and people removed with the buttons; operators see any shop's books."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.models import Invoice, InvoiceStatus
from bot.domain.staff import Role
from bot.i18n import format_amount, t
from testkit.telegram.models import EmuUser, MessageRecord
from tests.conftest import ADMIN_ID, MERCHANT2_ID, MERCHANT_ID, Harness
from tests.counter_kit import auth, counter_bot
from tests.test_access import forge
from tests.test_e2e_books import ledger_of, report
from tests.test_e2e_gateways import Gateways, sim_key, sims

__all__ = ["sims"]  # the fixture, imported for pytest

CASHIER_ID, MANAGER_ID = 5005, 6006
LINK_START = "https://t.me/tillbot_test_bot?start=join_"


def refused(command: str, role: str, lang: str = "en") -> str:
    return t(lang, "not_in_role_command", command=command, role=t(lang, f"role_{role}"))


def not_merchant(command: str) -> str:
    return t("en", "not_merchant_command", command=command)


def err(key: str, lang: str = "en", **params: object) -> str:
    return t(lang, f"err_{key}", **params)


def invite_token(message: MessageRecord) -> str:
    link = next(w for w in message.content.split() if w.startswith(LINK_START))
    return link.removeprefix(LINK_START)


class Staff:
    """The shop of Maria (a merchant from settings) with a cashier and a manager."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.owner = h.merchant
        self.cashier = h.emu.add_user(CASHIER_ID, "Carl", username="carl_cash", language_code="en")
        self.manager = h.emu.add_user(MANAGER_ID, "Mona", username="mona_mgr", language_code="de")

    async def invite(self, role: str) -> str:
        reply = await self.h.command(self.owner, f"/staff invite {role}")
        assert LINK_START in reply.content, reply.content
        return invite_token(reply)

    async def join(self, user: EmuUser, token: str) -> MessageRecord:
        return await self.h.command(user, f"/start join_{token}")

    async def hire(self) -> None:
        joined = await self.join(self.cashier, await self.invite("cashier"))
        assert t("en", "staff_joined", role="cashier", owner="Maria") in joined.content
        await self.owner_told("Carl")
        joined = await self.join(self.manager, await self.invite("manager"))
        assert t("de", "staff_joined", role="Leitung", owner="Maria") in joined.content
        await self.owner_told("Mona")

    async def owner_told(self, name: str) -> None:
        await self.h.emu.wait_for_message(
            self.owner, lambda m: m.content.startswith(f"👥 {name}") and "joined" in m.content
        )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until an outside state (storage) is as expected."""
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


def csv_of(files: dict[str, bytes], ledger: bool) -> list[dict[str, str]]:
    name = next(n for n in files if n.endswith(".csv") and ("-ledger-" in n) == ledger)
    return list(csv.DictReader(io.StringIO(files[name].decode("utf-8"))))


async def status_of(h: Harness, invoice: Invoice) -> InvoiceStatus:
    stored = await h.services.repo.get_invoice(invoice.id)
    assert stored is not None
    return stored.status


async def seat_role(h: Harness, user_id: int) -> Role | None:
    seat = await h.services.payments.access.seat(user_id)
    return None if seat is None else seat.role


async def sale_of(h: Harness, user: EmuUser, text: str) -> tuple[MessageRecord, Invoice]:
    """A sale by command; the newest invoice the user made (of whichever shop)."""
    reply = await h.command(user, text)
    [invoice] = await h.services.repo.list_invoices(MERCHANT_ID, limit=1, created_by=user.id)
    return reply, invoice


async def test_invites_are_one_time_and_every_refusal_changes_nothing(tillbot: Harness) -> None:
    h = tillbot
    staff = Staff(h)
    token = await staff.invite("cashier")
    assert len(token) == 22
    # the owner's own link: they own a shop already; the link stays good for the cashier
    assert err("staff_join_in_a_shop") in (await staff.join(staff.owner, token)).content
    # the owner of another shop (Max reads German)
    other = await staff.join(h.merchant2, token)
    assert err("staff_join_in_a_shop", "de") in other.content
    joined = await staff.join(staff.cashier, token)
    assert t("en", "staff_joined", role="cashier", owner="Maria") in joined.content
    assert t("en", "staff_can_cashier") in joined.content
    await h.emu.wait_for_message(
        staff.owner, lambda m: "Carl" in m.content and "joined your shop as cashier" in m.content
    )
    # used twice: a stranger gets nothing
    assert err("staff_join_used") in (await staff.join(h.stranger, token)).content
    # unknown, and payloads no invite made
    for guess in ("AAAAAAAAAAAAAAAAAAAAAA", token[:-1], token + "x", "%27--", "x" * 60):
        assert err("staff_join_unknown") in (await staff.join(h.customer, guess)).content
    # a wrong role word: no link, nothing stored
    for word in ("owner", "chef", "Kassierer"):
        reply = await h.command(staff.owner, f"/staff invite {word}")
        assert LINK_START not in reply.content and "/staff invite cashier" in reply.content
    assert await seat_role(h, CASHIER_ID) is Role.CASHIER
    for nobody in (h.stranger.id, h.customer.id):
        assert await seat_role(h, nobody) is None
    assert await seat_role(h, MERCHANT2_ID) is Role.OWNER
    assert [m.user_id for m in await h.services.repo.staff_of(MERCHANT_ID)] == [CASHIER_ID]
    # a cashier cannot hop to another shop without being removed first
    max_token = invite_token(await h.command(h.merchant2, "/staff invite manager"))
    assert err("staff_join_in_a_shop") in (await staff.join(staff.cashier, max_token)).content
    assert (await h.services.payments.access.seat(CASHIER_ID)).shop_id == MERCHANT_ID  # type: ignore[union-attr]


async def test_an_invite_expires_after_24_hours(harness: Harness) -> None:
    offset = [timedelta(0)]
    harness.clock = lambda: datetime.now(UTC) + offset[0]
    await harness.start()
    staff = Staff(harness)
    token = await staff.invite("manager")
    early = await staff.invite("cashier")
    offset[0] = timedelta(hours=23, minutes=59)
    assert "Willkommen" in (await staff.join(staff.manager, token)).content
    offset[0] = timedelta(hours=24, seconds=1)
    assert err("staff_join_expired") in (await staff.join(staff.cashier, early)).content
    assert await seat_role(harness, CASHIER_ID) is None
    assert await seat_role(harness, MANAGER_ID) is Role.MANAGER


@pytest.fixture
async def bot(harness: Harness, sims: Gateways) -> Harness:
    await harness.start(**{**sims.settings(), "sandbox_enabled": True})
    return harness


async def test_each_role_does_its_work_and_is_refused_the_rest(
    bot: Harness, sims: Gateways
) -> None:
    h = bot
    repo = h.services.repo
    staff = Staff(h)
    await staff.hire()
    carl, mona, maria = staff.cashier, staff.manager, staff.owner

    # the cashier sells for the shop: the invoice is Maria's shop's, made by Carl
    photo, pos = await sale_of(h, carl, "/pos 4.20 Espresso")
    assert (pos.merchant_id, pos.created_by, pos.kind.value) == (MERCHANT_ID, CASHIER_ID, "lightning")
    _, own = await sale_of(h, maria, "/invoice 7 Tea")
    _, carls = await sale_of(h, carl, "/invoice 3 Water")
    assert carls.merchant_id == MERCHANT_ID and own.seller_id == MERCHANT_ID

    # /invoices: Carl sees his two, Mona and Maria all three
    listed = await h.command(carl, "/invoices")
    shown = {b["callback_data"] for b in listed.buttons}
    assert shown == {f"show:{pos.id}", f"show:{carls.id}"}, listed.buttons
    for boss in (mona, maria):
        listed = await h.command(boss, "/invoices")
        assert {f"show:{i.id}" for i in (pos, own, carls)} <= {
            b["callback_data"] for b in listed.buttons
        }
    # ... and cannot show or cancel the owner's (forged buttons), but may cancel his own
    for data in (f"show:{own.id}", f"cancel:{own.id}", f"cxl:{own.id}:y"):
        answer = await forge(h, carl, data)
        assert t("en", "not_yours") in str(answer.get("text")), (data, answer)
    await forge(h, carl, f"rcpt:{own.id}")
    assert await status_of(h, own) is InvoiceStatus.PENDING
    assert not [m for m in h.emu.bot_messages(carl) if "Tea" in m.content]
    await forge(h, carl, f"cxl:{carls.id}:y")

    async def cancelled() -> bool:
        return await status_of(h, carls) is InvoiceStatus.CANCELLED

    await eventually(cancelled)

    # refusals: each names the command and the role, and changes nothing
    settings_before = await repo.get_shop_settings(MERCHANT_ID)
    tips_before = await repo.tip_percents(MERCHANT_ID)
    gateway_before = (await repo.get_prefs(MERCHANT_ID)).gateway
    for text, command in {
        "/report": "report",
        "/report all": "report",
        "/close": "close",
        "/staff": "staff",
        "/staff invite cashier": "staff",
        f"/staff remove {MANAGER_ID}": "staff",
        "/link 5 Cake": "link",
        "/link": "link",
        "/settings timezone Asia/Tokyo": "settings",
        "/settings closing 3": "settings",
        "/settings tips 1 2 3": "settings",
    }.items():
        reply = await h.command(carl, text)
        assert refused(command, "cashier") in reply.content, (text, reply.content)
    for text, command in {
        "/staff": "staff",
        "/staff invite cashier": "staff",
        "/settings timezone Asia/Tokyo": "settings",
        "/settings tips 1 2 3": "settings",
    }.items():
        reply = await h.command(mona, text)
        assert refused(command, "manager", "de") in reply.content, (text, reply.content)
    # the cashier's /settings offers no gateway; choosing a gateway by a forged button is ignored
    settings = await h.command(carl, "/settings")
    assert not any(b.get("callback_data", "").startswith("set:gw:") for b in settings.buttons)
    await forge(h, carl, "set:gw:mixpay")
    await forge(h, mona, "set:gw:mixpay")
    assert await repo.get_shop_settings(MERCHANT_ID) == settings_before
    assert await repo.tip_percents(MERCHANT_ID) == tips_before
    assert (await repo.get_prefs(MERCHANT_ID)).gateway == gateway_before
    assert (await repo.get_prefs(CASHIER_ID)).gateway is None
    # ... but their own language is theirs to choose
    await forge(h, carl, "set:lang:es")

    async def spanish() -> bool:
        return (await repo.get_prefs(CASHIER_ID)).language == "es"

    await eventually(spanish)
    await forge(h, carl, "set:lang:en")
    # strangers and customers: "for merchants only"
    for user in (h.stranger, h.customer):
        for text, command in {"/staff": "staff", "/invoice 5": "invoice", "/close": "close"}.items():
            assert not_merchant(command) in (await h.command(user, text)).content
    # forged staff buttons from anyone but the owner change nothing
    for user in (carl, mona, h.stranger, h.merchant2):
        for data in (f"stf:rm:{CASHIER_ID}", f"stf:role:{CASHIER_ID}:manager"):
            answer = await forge(h, user, data)
            lang = await h.services.language_of_chat(user.id)
            expected = (
                t(lang, "err_staff_not_member", id=CASHIER_ID)  # Max owns another shop
                if user is h.merchant2
                else t(lang, "staff_owner_only")
            )
            assert answer.get("text") == expected, (user.id, data, answer)
    for data in ("stf:rm:abc", "stf:role:5005:owner", "stf:role:5005", "stf:rm:5005:x", "stf:x:1"):
        await forge(h, maria, data)
    assert await seat_role(h, CASHIER_ID) is Role.CASHIER
    assert await seat_role(h, MANAGER_ID) is Role.MANAGER

    # the menus: each role's own
    def menu(user_id: int) -> set[str]:
        scope = {"type": "chat", "chat_id": user_id}
        return {c["command"] for c in h.emu.commands_for(scope)}

    await h.emu.wait_for(lambda: "invoice" in menu(CASHIER_ID) and "report" in menu(MANAGER_ID))
    assert not {"report", "close", "staff", "link"} & menu(CASHIER_ID)
    helped = await h.command(carl, "/help")
    assert t("en", "staff_can_cashier") in helped.content and "/report" not in helped.content
    assert "staff" not in menu(MANAGER_ID) and "staff" in menu(MERCHANT_ID)

    # Carl's sale is paid: Carl and Maria each hear of it once; the ledger names Carl
    sims.mion.pay(sim_key(sims.mion, pos))
    await h.emu.wait_for(lambda: "PAID" in (photo.caption or photo.content), timeout=8)
    [entry] = await ledger_of(h, pos, lambda e: len(e) == 1)
    assert (entry.merchant_id, entry.cashier_id, entry.fiat_minor) == (MERCHANT_ID, CASHIER_ID, 420)
    ping = "€4.20 received"

    def pinged(user: EmuUser) -> int:
        return sum(ping in m.content for m in h.emu.bot_messages(user))

    await h.emu.wait_for(lambda: pinged(carl) and pinged(maria), timeout=8)
    await asyncio.sleep(1.5)  # a second ping would have come by now
    assert (pinged(carl), pinged(maria), pinged(mona)) == (1, 1, 0)

    # the manager's /close has a line for Carl; so has the owner's
    for boss, lang in ((mona, "de"), (maria, "en")):
        close = await h.command(boss, "/close")
        total = format_amount(420, "EUR", lang)
        expected = t(lang, "close_line", name="Carl (5005)", count=1, total=total)
        assert expected in close.content, close.content
    # /report: the manager gets the files, each invoice with its cashier
    files = await report(h, mona, "/report today")
    assert {(r["number"], r["cashier"]) for r in csv_of(files, ledger=False)} == {
        (str(pos.number), str(CASHIER_ID)),
        (str(own.number), str(MERCHANT_ID)),
        (str(carls.number), str(CASHIER_ID)),
    }
    ledger_rows = csv_of(files, ledger=True)
    assert [(r["cashier"], r["cashier_name"]) for r in ledger_rows] == [(str(CASHIER_ID), "Carl")]


async def test_the_owner_changes_roles_and_removes_people(tillbot: Harness) -> None:
    h = tillbot
    staff = Staff(h)
    await staff.hire()
    carl, maria = staff.cashier, staff.owner
    listing = await h.command(maria, "/staff")
    assert "Carl" in listing.content and "Mona" in listing.content and "owner" in listing.content
    await h.emu.press_button(maria, listing, "⬆️ Carl: manager")

    async def told(text: str) -> None:
        await h.emu.wait_for_message(carl, lambda m: text in m.content)

    await told(t("en", "staff_your_role", role="manager", owner="Maria"))
    assert await seat_role(h, CASHIER_ID) is Role.MANAGER
    # now a manager, Carl sees the shop's books
    assert "Shift close" in (await h.command(carl, "/close")).content
    # by command, with the @username; the owner cannot demote or remove themselves
    reply = await h.command(maria, "/staff role @carl_cash cashier")
    assert "Carl" in reply.content
    assert await seat_role(h, CASHIER_ID) is Role.CASHIER
    for text in ("/staff remove @maria", f"/staff role {MERCHANT_ID} cashier"):
        assert err("staff_not_yourself") in (await h.command(maria, text)).content
    assert err("staff_not_member", id=ADMIN_ID) in (
        await h.command(maria, f"/staff remove {ADMIN_ID}")
    ).content
    unknown = await h.command(maria, "/staff remove @nobody_here")
    assert "I do not know @nobody_here" in unknown.content
    # hostile or half-written: a reply each, nothing changed
    usage = "/staff invite cashier"
    for text in (
        "/staff invite",
        "/staff role @carl_cash",
        "/staff role @carl_cash owner",
        "/staff remove",
        "/staff fire @carl_cash",
        "/staff remove 99999999999999999999999",
        "/staff remove ١٢٣",
        "/staff remove <b>x</b>",
    ):
        reply = await h.command(maria, text)
        assert usage in reply.content or "I do not know" in reply.content, (text, reply.content)
    assert await seat_role(h, CASHIER_ID) is Role.CASHIER
    assert await seat_role(h, MERCHANT_ID) is Role.OWNER
    # removed with the button: Carl is told and sells no more
    listing = await h.command(maria, "/staff")
    await h.emu.press_button(maria, listing, "✖️ Remove Carl")
    await told(t("en", "staff_you_were_removed", owner="Maria"))
    assert await seat_role(h, CASHIER_ID) is None
    assert not_merchant("invoice") in (await h.command(carl, "/invoice 5")).content
    assert await h.services.repo.count_invoices(MERCHANT_ID) == 0


async def test_a_member_leaves_the_shop_and_the_owner_is_told(tillbot: Harness) -> None:
    h = tillbot
    staff = Staff(h)
    await staff.hire()
    mona, maria = staff.manager, staff.owner
    left = await h.command(mona, "/staff leave")
    assert t("de", "staff_left", owner="Maria") in left.content
    await h.emu.wait_for_message(
        maria, lambda m: m.content == f"👋 Mona ({MANAGER_ID}) left your shop."
    )
    assert await seat_role(h, MANAGER_ID) is None
    assert await seat_role(h, CASHIER_ID) is Role.CASHIER
    # gone: the shop's books are closed to her; leaving twice, the owner, a stranger: refused
    gone = t("de", "not_merchant_command", command="report")
    assert gone in (await h.command(mona, "/report")).content
    assert err("staff_not_in_shop", "de") in (await h.command(mona, "/staff leave")).content
    assert err("staff_owner_cannot_leave") in (await h.command(maria, "/staff leave")).content
    assert err("staff_not_in_shop") in (await h.command(h.stranger, "/staff leave")).content
    assert await seat_role(h, MERCHANT_ID) is Role.OWNER


async def test_operators_create_shops_and_see_any_shops_books(bot: Harness) -> None:
    h = bot
    staff = Staff(h)
    await staff.hire()
    # an operator cannot make a member of one shop the owner of another
    blocked = await h.command(h.admin, f"/merchants add {CASHIER_ID}")
    assert t("en", "merchant_works_elsewhere", id=CASHIER_ID) in blocked.content
    assert await seat_role(h, CASHIER_ID) is Role.CASHIER
    # a new shop: its owner may invite at once
    await h.command(h.stranger, "/start")
    added = await h.command(h.admin, f"/merchants add {h.stranger.id}")
    assert t("en", "merchant_added", id=h.stranger.id) in added.content
    assert LINK_START in (await h.command(h.stranger, "/staff invite cashier")).content
    listing = await h.command(h.admin, "/merchants")
    assert "3 people" in listing.content and "1 person" in listing.content, listing.content
    # any shop's close, by id or @name; members of a shop cannot look at another
    close = await h.command(h.admin, "/close shop @maria")
    assert "Shift close" in close.content
    _, water = await sale_of(h, staff.cashier, "/invoice 3 Water")
    files = await report(h, h.admin, f"/report shop {MERCHANT_ID} all")
    assert [(r["number"], r["cashier"]) for r in csv_of(files, ledger=False)] == [
        (str(water.number), str(CASHIER_ID))
    ]
    nothing = await h.command(h.admin, "/close shop 424242")
    assert "There is no shop of 424242" in nothing.content
    # for anyone else "shop" is no period: nothing of Max's shop is sent
    documents = len(h.emu.calls("sendDocument"))
    wrong = await h.command(staff.manager, f"/report shop {MERCHANT2_ID}")
    assert "/report today" in wrong.content
    assert len(h.emu.calls("sendDocument")) == documents


async def test_a_cashiers_counter_sells_for_the_shop(harness: Harness, sims: Gateways) -> None:
    """The Mini App over HTTP: a cashier's counter sale is the shop's, in the cashier's
    name; the cashier's `today` counts their own sales, the owner's the shop's; /close has
    a line per cashier with their tips; a cashier cancels their own sale, not the owner's."""
    async with counter_bot(harness, **{**sims.settings(), "sandbox_enabled": True}) as counter:
        h, client = harness, counter.client
        staff = Staff(h)
        await staff.hire()
        carl, maria = staff.cashier, staff.owner
        me = (await client.get("/app/api/me", headers=auth(carl))).json()
        assert me["role"] == "merchant"
        setup = (await client.get("/app/api/setup", headers=auth(carl))).json()
        assert setup["tip_percents"] == list(await h.services.repo.tip_percents(MERCHANT_ID))

        async def sell(user: EmuUser, amount: str, percent: int = 0) -> Invoice:
            tip = {"kind": "percent", "percent": percent} if percent else {"kind": "none"}
            body = {"amount": amount, "tip": tip, "option": "mion:checkout"}
            r = await client.post("/app/api/sales", json=body, headers=auth(user))
            assert r.status_code == 201, r.text
            invoice = await h.services.repo.get_invoice_by_token(r.json()["token"])
            assert invoice is not None
            return invoice

        carls, marias = await sell(carl, "20", 10), await sell(maria, "9")
        spare = await sell(carl, "1")
        assert (carls.merchant_id, carls.created_by) == (MERCHANT_ID, CASHIER_ID)
        assert (marias.merchant_id, marias.created_by) == (MERCHANT_ID, MERCHANT_ID)
        split = await h.services.repo.counter_sale(carls.id)
        assert split is not None and split.merchant_id == MERCHANT_ID
        for invoice in (carls, marias):
            sims.mion.pay(sim_key(sims.mion, invoice))

        async def counted(user: EmuUser) -> int:
            r = await client.get("/app/api/today", headers=auth(user))
            return int(r.json()["count"])

        async def both_paid() -> bool:
            return await counted(maria) == 2

        await eventually(both_paid, timeout=10)
        assert await counted(carl) == 1  # his own sale only
        # /close: a line per cashier, with their tips (Carl's 10 % of €20.00)
        await h.emu.send_message(maria, "/close")  # the payments' pings may come between
        close = await h.emu.wait_for_message(maria, lambda m: "Shift close" in m.content)
        for name, total, tips in (("Carl (5005)", 2200, 200), ("Maria (1001)", 900, 0)):
            line = t("en", "close_line", name=name, count=1, total=format_amount(total, "EUR", "en"))
            line += " · " + t("en", "close_tips", tips=format_amount(tips, "EUR", "en"))
            assert line in close.content, close.content
        # a cashier cancels his own open sale, not the owner's
        owners = await client.post(f"/app/api/invoices/{marias.public_token}/cancel", headers=auth(carl))
        assert owners.status_code == 403
        own = await client.post(f"/app/api/invoices/{spare.public_token}/cancel", headers=auth(carl))
        assert own.status_code == 200 and own.json()["status"] == "cancelled"
        assert await status_of(h, marias) is InvoiceStatus.PAID
