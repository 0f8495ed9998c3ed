"""`python -m bot demo`: the whole payment loop on this machine, no token, no network.

Starts the Bot API emulator, runs the real bot against it with the sandbox gateway, plays
a merchant creating an invoice and a customer paying it, and prints the conversation.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the test kit is imported only when the demo runs (see run_demo)
    from testkit.telegram import BotApiEmulator
    from testkit.telegram.models import EmuUser, MessageRecord

DEMO_TOKEN = "424242:demo-token-not-secret"  # noqa: S105
MERCHANT, CUSTOMER, ADMIN = 1001, 2002, 9009


class Transcript:
    """Prints each new or edited message of the watched chats once."""

    def __init__(self, emu: BotApiEmulator, names: dict[int, str], out: Callable[[str], None]):
        self.emu = emu
        self.names = names
        self.out = out
        self.seen: dict[tuple[int, int], int] = {}

    def flush(self) -> None:
        for chat_id, name in self.names.items():
            for m in self.emu.messages(chat_id):
                key = (chat_id, m.message_id)
                if self.seen.get(key) == m.edits:
                    continue
                edited = key in self.seen
                self.seen[key] = m.edits
                self.out(self._render(m, name, edited))

    def _render(self, m: MessageRecord, name: str, edited: bool) -> str:
        if not m.from_bot:
            return f"\n[{name} → bot] {m.text}"
        arrow = "✎ edited for" if edited else "→"
        body = m.text if m.text is not None else f"[QR photo] {m.caption or ''}"
        lines = [f"\n[bot {arrow} {name}]", *("    " + line for line in (body or "").splitlines())]
        for row in (m.reply_markup or {}).get("inline_keyboard", []):
            lines.append("    " + "  ".join(f"[{b['text']}]" for b in row))
        return "\n".join(lines)


async def run_demo(out: Callable[[str], None] = print, limit: float = 25.0) -> int:
    from bot.app import Runner, build_application
    from bot.config import Settings
    from testkit.telegram import BotApiEmulator

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    emu = BotApiEmulator(token=DEMO_TOKEN, bot_username="tillbot_demo_bot")
    await emu.start()
    merchant = emu.add_user(MERCHANT, "Maria", username="maria_cafe")
    customer = emu.add_user(CUSTOMER, "Chris")
    admin = emu.add_user(ADMIN, "Ada")
    transcript = Transcript(
        emu, {MERCHANT: "Maria (merchant)", CUSTOMER: "Chris (customer)", ADMIN: "Ada (admin)"}, out
    )
    with tempfile.TemporaryDirectory(prefix="tillbot-demo-") as tmp:
        settings = Settings(
            telegram_bot_token=DEMO_TOKEN,  # type: ignore[arg-type]
            telegram_api_url=emu.url,
            database_url=f"sqlite:///{Path(tmp) / 'demo.db'}",
            admin_ids=[ADMIN],
            merchant_ids=[MERCHANT],
            poll_interval_seconds=1.0,
            _env_file=None,  # type: ignore[call-arg]
        )
        runner = Runner(build_application(settings))
        out("Tillbot demo: a merchant invoices, a customer pays (sandbox gateway, local fakes).")
        await runner.start()
        try:
            await asyncio.wait_for(_play(emu, transcript, merchant, customer, admin), limit)
        finally:
            await runner.stop()
            await emu.stop()
    emu.assert_no_violations()
    out(
        "\nDemo complete: invoice created, paid, every message edited, receipt and admin notice sent."
    )
    return 0


async def _play(
    emu: BotApiEmulator,
    transcript: Transcript,
    merchant: EmuUser,
    customer: EmuUser,
    admin: EmuUser,
) -> None:
    await emu.send_message(merchant, "/invoice 12.50 Coffee")
    invoice = await emu.wait_for_message(merchant, lambda m: bool(m.reply_markup), timeout=10)
    transcript.flush()
    link = next(word for word in (invoice.text or "").split() if "?start=" in word)
    await emu.send_message(customer, f"/start {link.split('?start=')[1]}")
    shown = await emu.wait_for_message(customer, lambda m: bool(m.reply_markup), timeout=10)
    transcript.flush()
    await emu.press_button(customer, shown, "🧪 Simulate payment")
    await emu.wait_for(lambda: "PAID" in invoice.content, timeout=10)
    await emu.wait_for_message(customer, lambda m: "Receipt" in m.content, timeout=10)
    await emu.wait_for_message(admin, lambda m: "paid" in (m.text or ""), timeout=10)
    transcript.flush()
