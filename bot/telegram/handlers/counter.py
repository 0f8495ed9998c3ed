"""/counter (the Mini App for merchants), its menu button, and `/settings tips 5 10 15`."""

from __future__ import annotations

import logging

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MenuButtonDefault,
    MenuButtonWebApp,
    Update,
    WebAppInfo,
)
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot.domain.drafts import InputError, NotAllowed
from bot.i18n import t
from bot.telegram.context import Services, TillbotContext
from bot.telegram.handlers.common import (
    is_admin,
    is_merchant,
    language,
    refuse_role,
    reply,
    reply_input_error,
)

log = logging.getLogger(__name__)


async def counter_command(update: Update, context: TillbotContext) -> None:
    """/counter: a button opening the counter Mini App (private chats only: Telegram allows
    `web_app` buttons there); without PUBLIC_URL, says plainly that it is not set up."""
    chat = update.effective_chat
    if chat is None or update.effective_user is None:
        return
    if not await is_merchant(update, context):
        await reply(update, context, "not_merchant")
        return
    services = context.services
    app_url = services.view.app_url
    if app_url is None:
        key = "counter_not_set_up_admin" if is_admin(update, context) else "counter_not_set_up"
        await reply(update, context, key)
        return
    lang = await language(update, context)
    if chat.type != "private":
        button = InlineKeyboardButton(
            t(lang, "button_open_counter"), url=f"https://t.me/{services.view.bot_username}"
        )
        text = t(lang, "counter_private_only")
    else:
        button = InlineKeyboardButton(t(lang, "button_open_counter"), web_app=WebAppInfo(app_url))
        text = t(lang, "counter_open")
    await context.bot.send_message(
        chat.id, text, parse_mode=ParseMode.HTML, reply_markup=InlineKeyboardMarkup([[button]])
    )


async def tips_setting(update: Update, context: TillbotContext, words: list[str]) -> None:
    """`/settings tips 5 10 15`: the three tip percentages the counter offers."""
    user = update.effective_user
    if user is None:
        return
    try:
        percents = await context.services.payments.counter.set_tip_percents(user.id, words)
    except NotAllowed:
        seat = await context.services.payments.access.seat(user.id)
        await refuse_role(update, context, "settings", seat)
        return
    except InputError as exc:
        await reply_input_error(update, context, exc)
        return
    await reply(update, context, "settings_tips_saved", tips=tips_text(percents))


async def tips_line(services: Services, user_id: int, lang: str) -> str:
    """The /settings line naming the merchant's tip percentages and how to change them."""
    percents = await services.payments.counter.tip_percents(user_id)
    return t(lang, "settings_tips", tips=tips_text(percents))


def tips_text(percents: tuple[int, ...]) -> str:
    return " · ".join(f"{p} %" for p in percents)


async def set_menu_button(bot: Bot, services: Services, user_id: int, merchant: bool) -> None:
    """The chat menu button: the counter for merchants (when it is served), the default
    (the commands) for everyone else."""
    app_url = services.view.app_url
    if app_url is None:
        return
    lang = await services.language_of_chat(user_id)
    button = (
        MenuButtonWebApp(t(lang, "button_counter_menu"), WebAppInfo(app_url))
        if merchant
        else MenuButtonDefault()
    )
    try:
        await bot.set_chat_menu_button(chat_id=user_id, menu_button=button)
    except TelegramError as exc:  # e.g. a merchant who never opened the bot
        log.warning("the menu button of chat %s was not set: %s", user_id, exc)
