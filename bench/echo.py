"""The baseline: a bare python-telegram-bot echo bot (`python -m bench.echo`).

Configured from the environment: ECHO_TOKEN, ECHO_API_URL (the emulator), and
ECHO_CONCURRENCY ("0": PTB's defaults, updates one at a time; N: N updates at once and an
HTTP pool of 128 connections, as Tillbot's `build_application` does).
"""

from __future__ import annotations

import os

from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters
from telegram.request import HTTPXRequest


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is not None and message.text is not None:
        await context.bot.send_message(message.chat_id, message.text)


def build(token: str, api_url: str, concurrency: int) -> Application:  # type: ignore[type-arg]
    api = api_url.rstrip("/")
    builder = ApplicationBuilder().token(token).base_url(f"{api}/bot").base_file_url(
        f"{api}/file/bot"
    )
    if concurrency > 0:
        builder = builder.concurrent_updates(concurrency).request(
            HTTPXRequest(connection_pool_size=128)
        )
    app = builder.build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    return app


def main() -> None:
    app = build(
        os.environ["ECHO_TOKEN"],
        os.environ["ECHO_API_URL"],
        int(os.environ.get("ECHO_CONCURRENCY", "0")),
    )
    app.run_polling(allowed_updates=Update.ALL_TYPES, timeout=10, poll_interval=0.0)


if __name__ == "__main__":
    main()
