"""A local Telegram Bot API emulator for end-to-end tests, the demo and benchmarks.

The real python-telegram-bot ``Application`` talks to it over HTTP::

    emu = BotApiEmulator(token="123:ABC", bot_username="tillbot_test_bot")
    await emu.start()
    app = (ApplicationBuilder().token("123:ABC")
           .base_url(f"{emu.url}/bot").base_file_url(f"{emu.url}/file/bot").build())

Every request is validated against the Bot API description (``telegram_api.json``);
wrong requests are answered like Telegram would and recorded in ``emu.violations``.
Tests drive users through ``send_message``, ``press_button``, ``inline_query`` ...
and inspect what the bot did through ``messages()``, ``requests`` and ``stats``.

Standalone (for a bot in another process)::

    python -m testkit.telegram --port 8081 --token 123:ABC

which also exposes the driver controls as JSON under ``{url}/_emu/...``.
"""

from testkit.telegram.emulator import BotApiEmulator, main
from testkit.telegram.models import (
    ApiError,
    CallbackQueryRecord,
    EmuChat,
    EmulatorStats,
    EmuUser,
    InlineQueryRecord,
    MessageRecord,
    RateLimits,
    RecordedRequest,
    StoredFile,
)

__all__ = [
    "ApiError",
    "BotApiEmulator",
    "CallbackQueryRecord",
    "EmuChat",
    "EmuUser",
    "EmulatorStats",
    "InlineQueryRecord",
    "MessageRecord",
    "RateLimits",
    "RecordedRequest",
    "StoredFile",
    "main",
]
