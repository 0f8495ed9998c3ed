"""The commands menu: registered at start per scope and language, matching /help."""

from __future__ import annotations

import logging

from telegram import BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from telegram.error import TelegramError

from bot.context import TillbotApp
from bot.i18n import LANGUAGES, t

log = logging.getLogger(__name__)

CUSTOMER_COMMANDS = ("start", "help")
MERCHANT_COMMANDS = ("invoice", "pos", "invoices", "report", "settings", "help", "start")
ADMIN_COMMANDS = (*MERCHANT_COMMANDS, "merchants")
MAX_SCOPED_CHATS = 200  # per-chat menus beyond this cost too many calls at start


def commands_for(names: tuple[str, ...], language: str) -> list[BotCommand]:
    return [BotCommand(name, t(language, f"cmd_{name}")[:256]) for name in names]


async def register_commands(app: TillbotApp) -> None:
    """Customers see start/help; merchants and admins see theirs in their own chats."""
    services = app.bot_data
    settings = services.settings
    bot = app.bot
    try:
        for language in LANGUAGES:
            code = None if language == "en" else language
            await bot.set_my_commands(
                commands_for(CUSTOMER_COMMANDS, language),
                scope=BotCommandScopeDefault(),
                language_code=code,
            )
        admins = list(dict.fromkeys(settings.admin_ids))
        merchants = [
            uid
            for uid in dict.fromkeys(
                [*settings.merchant_ids, *(m.user_id for m in await services.repo.list_merchants())]
            )
            if uid not in admins
        ]
        for chat_id, names in [
            *((a, ADMIN_COMMANDS) for a in admins),
            *((m, MERCHANT_COMMANDS) for m in merchants),
        ][:MAX_SCOPED_CHATS]:
            if chat_id <= 0:
                continue
            language = services.seen_language.get(chat_id, "en")
            await bot.set_my_commands(
                commands_for(names, language), scope=BotCommandScopeChat(chat_id)
            )
    except TelegramError as exc:  # a menu is a convenience: never block the start on it
        log.warning("registering the commands menu failed: %s", exc)
