"""Screenshots of the chat as a merchant sees it, rendered from the Bot API emulator's
recorded messages (testkit/telegram/render.py) into docs/img/:

    .venv/bin/python -m tests.chat_screenshots [out_dir]

The real bot (the same Application as in production) runs against the emulator on a
temporary SQLite file with the sandbox gateway; tests/test_e2e_chat.py runs this too, into a
temporary folder, so the pictures cannot drift from what the bot says.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from testkit.telegram import BotApiEmulator
from testkit.telegram.models import EmuUser, MessageRecord
from testkit.telegram.render import render_chat
from tests.conftest import TOKEN, Harness

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


async def _after(harness: Harness, user: EmuUser, text: str) -> list[MessageRecord]:
    """Send `text`, wait for the bot's answer and a moment of quiet."""
    before = len(harness.emu.bot_messages(user))
    await harness.emu.send_message(user, text)
    await harness.emu.wait_for(lambda: len(harness.emu.bot_messages(user)) > before)
    # "⏳ Creating invoice…" becomes the answer in place: wait until it has.
    await harness.emu.wait_for(
        lambda: not any(
            m.content.startswith("⏳") and not m.deleted
            for m in harness.emu.bot_messages(user)[before:]
        )
    )
    await asyncio.sleep(0.3)
    return [m for m in harness.emu.bot_messages(user)[before:] if not m.deleted]


async def make_screenshots(out_dir: Path) -> list[Path]:
    emu = BotApiEmulator(token=TOKEN, bot_username="tillbot_test_bot")
    await emu.start()
    made: list[Path] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            harness = Harness(emu, Path(folder))
            await harness.start()
            try:
                made += await _scenes(harness, out_dir)
            finally:
                await harness.stop()
    finally:
        await emu.stop()
    return made


async def _scenes(h: Harness, out_dir: Path) -> list[Path]:
    emu, maria, max_ = h.emu, h.merchant, h.merchant2
    made: list[Path] = []
    # An English merchant: amounts as written, a bare amount, a currency refused by name.
    await _after(h, maria, "/invoice €4.20 Cappuccino")
    [offer] = await _after(h, maria, "3.50")
    await _after(h, maria, "/invoice 12 BTC Lamp")
    made.append(render_chat(emu.messages(maria), "Tillbot · Maria (merchant)",
                            out_dir / "chat-merchant-en.png"))
    # A German merchant: a bare amount made a counter QR in one tap.
    [offer] = await _after(h, max_, "12,50 €")
    before = len(emu.bot_messages(max_))
    await emu.press_button(max_, offer, "⚡ Kassen-QR")
    # "⏳ Creating invoice…" first, then the QR photo in its place.
    await emu.wait_for(
        lambda: any(m.photo is not None for m in emu.bot_messages(max_)[before:])
    )
    await asyncio.sleep(0.3)
    made.append(render_chat(emu.messages(max_), "Tillbot · Max (Händler)",
                            out_dir / "chat-merchant-de.png"))
    # An admin adds someone by @username; they are told in their language.
    klara = emu.add_user(2003, "Klara", username="klara_kuchen", language_code="de")
    await _after(h, klara, "/start")
    await _after(h, h.admin, "/merchants add @klara_kuchen")
    await _after(h, h.stranger, "/report")
    made.append(render_chat(emu.messages(h.admin), "Tillbot · Ada (admin)",
                            out_dir / "chat-admin-en.png"))
    made.append(render_chat(emu.messages(klara), "Tillbot · Klara",
                            out_dir / "chat-new-merchant-de.png"))
    made.append(render_chat(emu.messages(h.stranger), "Tillbot · Sam",
                            out_dir / "chat-stranger-en.png"))
    return made


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS_IMG
    for path in asyncio.run(make_screenshots(target)):
        print(path)
