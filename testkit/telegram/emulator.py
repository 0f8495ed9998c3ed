"""`BotApiEmulator`: the Bot API emulator put together, and its standalone runner.

The layers, each one job, each on top of the one before:
`state.ChatState` (users, chats, messages, files, pending updates) <- `checks.ApiChecks`
(what Telegram refuses) <- `messaging.MessageMethods` and `methods.BotApiMethods` (the Bot
API methods) <- `server.EmulatorServer` (aiohttp) <- `webhook.WebhookDelivery` <-
`driver.EmulatorDriver` (what tests do and read) <- `control.ControlApi` (the driver as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable

from testkit.signals import until_stop_signal
from testkit.telegram.control import ControlApi
from testkit.telegram.models import RateLimits
from testkit.telegram.spec import ApiSpec, load_spec
from testkit.telegram.state import EmulatorConfig


class BotApiEmulator(ControlApi):
    """In-process fake of the Telegram Bot API server plus a driver for tests."""

    def __init__(
        self,
        token: str = "123:ABC",  # noqa: S107
        bot_username: str = "tillbot_test_bot",
        *,
        enforce_limits: bool = False,
        bot_first_name: str = "Tillbot",
        limits: RateLimits | None = None,
        privacy_mode: bool = True,
        strict_images: bool = True,
        spec: ApiSpec | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            EmulatorConfig(
                token=token,
                bot_username=bot_username,
                bot_first_name=bot_first_name,
                enforce_limits=enforce_limits,
                limits=limits or RateLimits(),
                privacy_mode=privacy_mode,
                strict_images=strict_images,
                spec=spec or load_spec(),
                clock=clock,
            )
        )


# ===================================================================== runner


async def _serve(args: argparse.Namespace) -> None:
    emu = BotApiEmulator(
        token=args.token,
        bot_username=args.bot_username,
        enforce_limits=args.enforce_limits,
        privacy_mode=not args.no_privacy,
    )
    await emu.start(host=args.host, port=args.port)
    print(f"Telegram Bot API emulator listening on {emu.url}", flush=True)
    try:
        await until_stop_signal()
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testkit.telegram",
        description="Local Telegram Bot API emulator (controls under /_emu/).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123:ABC")
    parser.add_argument("--bot-username", default="tillbot_test_bot")
    parser.add_argument("--enforce-limits", action="store_true")
    parser.add_argument("--no-privacy", action="store_true", help="bot sees all group messages")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
