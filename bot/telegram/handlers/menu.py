"""The commands menu: registered at start per scope and language, matching /help.

Customers see the default scope (one menu per language, Telegram picks it by the user's
language_code). Merchants and admins get a menu of their own chat (`BotCommandScopeChat`, set
by a job right after the start, and again when their role or /settings language changes):
English without a language code plus one per other language, or, when they chose a
language in /settings, that language only. `/help` lists exactly the same commands.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum

from telegram import Bot, BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from telegram.error import TelegramError

from bot.domain.models import InvoiceKind
from bot.domain.staff import Role as StaffRole
from bot.i18n import DEFAULT_LANGUAGE, LANGUAGES, t
from bot.telegram.context import Services, TillbotApp, TillbotContext
from bot.telegram.handlers.counter import set_menu_button

log = logging.getLogger(__name__)


class Role(StrEnum):
    """Whose menu: a customer's, a shop's cashier's, manager's or owner's (MERCHANT), an
    operator's (ADMIN: an owner who also manages the shops)."""

    CUSTOMER = "customer"
    CASHIER = "cashier"
    MANAGER = "manager"
    MERCHANT = "merchant"
    ADMIN = "admin"


CASHIER_COMMANDS = (
    "invoice", "pos", "counter", "onchain", "invoices", "settings", "help", "start",
)  # fmt: skip
MANAGER_COMMANDS = (
    "invoice", "pos", "counter", "onchain", "link", "invoices", "report", "close", "settings",
    "help", "start",
)  # fmt: skip
MERCHANT_COMMANDS = (
    "invoice", "pos", "counter", "onchain", "link", "invoices", "report", "close", "staff",
    "settings", "help", "start",
)  # fmt: skip
COMMANDS: dict[Role, tuple[str, ...]] = {
    Role.CUSTOMER: ("start", "help", "settings"),
    Role.CASHIER: CASHIER_COMMANDS,
    Role.MANAGER: MANAGER_COMMANDS,
    Role.MERCHANT: MERCHANT_COMMANDS,
    Role.ADMIN: (*MERCHANT_COMMANDS, "merchants"),
}
# A cashier's and a manager's /settings choose their language only.
LANGUAGE_ONLY_SETTINGS = (Role.CUSTOMER, Role.CASHIER, Role.MANAGER)
OTHER_LANGUAGES = tuple(code for code in LANGUAGES if code != DEFAULT_LANGUAGE)
MAX_SCOPED_CHATS = 200  # per-chat menus beyond this cost too many calls at start


def description(role: Role, name: str, language: str) -> str:
    """What the menu (and /help) says about a command, for that role."""
    own_language = name == "settings" and role in LANGUAGE_ONLY_SETTINGS
    key = "cmd_settings_customer" if own_language else f"cmd_{name}"
    return t(language, key)[:256]


# Commands only a gateway of that kind can serve: in the menu only when one is configured.
NEEDS_KIND = {"pos": InvoiceKind.LIGHTNING, "onchain": InvoiceKind.ONCHAIN}


def available(services: Services, role: Role) -> tuple[str, ...]:
    """The role's commands that work here: /pos and /onchain only with a gateway for them."""
    payments = services.payments
    return tuple(
        name
        for name in COMMANDS[role]
        if name not in NEEDS_KIND or payments.gateway_for_kind(NEEDS_KIND[name]) is not None
    )


def commands_for(role: Role, language: str, names: Sequence[str] | None = None) -> list[BotCommand]:
    return [
        BotCommand(name, description(role, name, language))
        for name in (COMMANDS[role] if names is None else names)
    ]


def help_lines(role: Role, language: str, names: Sequence[str] | None = None) -> str:
    """The commands of the role's menu (`names`, else all), one a line, for /help."""
    return "\n".join(
        t(
            language,
            "help_command_line",
            command=name,
            description=description(role, name, language),
        )
        for name in (COMMANDS[role] if names is None else names)
    )


async def role_of(services: Services, user_id: int) -> Role:
    """Checked on the server, from the user id of the update."""
    payments = services.payments
    if payments.is_admin(user_id):
        return Role.ADMIN
    seat = await payments.access.seat(user_id)
    if seat is None:
        return Role.CUSTOMER
    return {
        StaffRole.OWNER: Role.MERCHANT,
        StaffRole.MANAGER: Role.MANAGER,
        StaffRole.CASHIER: Role.CASHIER,
    }[seat.role]


async def register_commands(app: TillbotApp) -> None:
    """The default menu per language now; the menus of each admin's and merchant's chat in
    a job once the bot runs (many chats, two calls each, must not hold up the start)."""
    bot = app.bot
    try:
        for language in LANGUAGES:
            await bot.set_my_commands(
                commands_for(Role.CUSTOMER, language),
                scope=BotCommandScopeDefault(),
                language_code=None if language == DEFAULT_LANGUAGE else language,
            )
    except TelegramError as exc:  # a menu is a convenience: never block the start on it
        log.warning("registering the commands menu failed: %s", exc)
    if app.job_queue is not None:
        app.job_queue.run_once(register_chat_menus, 0, name="commands-menu")


async def register_chat_menus(context: TillbotContext) -> None:
    """Set the menu of each admin's and merchant's private chat (a job after the start)."""
    services = context.services
    settings = services.settings
    stored = await services.payments.access.stored_merchant_ids()
    if stored is None:
        log.warning("the merchants' menus were not set")
        return
    chats = [
        uid
        for uid in dict.fromkeys([*settings.admin_ids, *settings.merchant_ids, *stored])
        if uid > 0
    ]
    for user_id in chats[:MAX_SCOPED_CHATS]:
        await refresh_menu(context.bot, services, user_id)


async def refresh_menu(bot: Bot, services: Services, user_id: int) -> None:
    """Set (or remove) the menu of one user's private chat for their role and language."""
    role = await role_of(services, user_id)
    names = available(services, role)
    chosen = (await services.prefs(user_id)).language
    scope = BotCommandScopeChat(user_id)
    try:
        if chosen in LANGUAGES:  # their /settings choice wins over Telegram's language
            await bot.set_my_commands(commands_for(role, chosen, names), scope=scope)
            for code in OTHER_LANGUAGES:
                await bot.delete_my_commands(scope=scope, language_code=code)
        elif role is Role.CUSTOMER:  # the default menu fits them
            await bot.delete_my_commands(scope=scope)
            for code in OTHER_LANGUAGES:
                await bot.delete_my_commands(scope=scope, language_code=code)
        else:
            await bot.set_my_commands(commands_for(role, DEFAULT_LANGUAGE, names), scope=scope)
            for code in OTHER_LANGUAGES:
                await bot.set_my_commands(
                    commands_for(role, code, names), scope=scope, language_code=code
                )
    except TelegramError as exc:  # e.g. a merchant who never opened the bot
        log.warning("the commands menu of chat %s was not set: %s", user_id, exc)
    await set_menu_button(bot, services, user_id, merchant=role is not Role.CUSTOMER)
