"""`python -m bot` runs the bot; `python -m bot demo` plays a payment against local fakes."""

from __future__ import annotations

import asyncio
import signal
import sys

from telegram.error import InvalidToken, TelegramError

from bot.config import Settings, SettingsError, load_settings
from bot.logsafe import configure_logging, redact
from storage import StorageError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "demo":
        from bot.demo import run_demo

        return asyncio.run(run_demo())
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m bot [demo]   (settings come from the environment; see README)")
        return 0
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"tillbot: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.secrets())
    try:
        asyncio.run(_serve(settings))
    except InvalidToken:
        print("tillbot: TELEGRAM_BOT_TOKEN was rejected by Telegram", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"tillbot: DATABASE_URL: {redact(str(exc))}", file=sys.stderr)
        return 1
    except TelegramError as exc:
        print(f"tillbot: Telegram: {redact(str(exc))}", file=sys.stderr)
        return 1
    return 0


async def _serve(settings: Settings) -> None:
    from bot.app import Runner, build_application  # the demo and errors need none of it

    runner = Runner(build_application(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.run_until(stop)


if __name__ == "__main__":
    sys.exit(main())
