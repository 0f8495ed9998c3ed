"""Every update: remember what Telegram says about its user (language_code, name).

Runs in handler group -1, before the handler that answers the update, and never stops it:
notices sent later (receipts, admin notices, the daily summary) follow the user's Telegram
language across restarts, and receipts name the merchant.
"""

from __future__ import annotations

import logging

from telegram import Update

from bot.telegram.context import TillbotContext

log = logging.getLogger(__name__)


async def remember_user(update: Update, context: TillbotContext) -> None:
    """Store the user's language_code and name when they changed (best effort)."""
    user = update.effective_user
    if user is None or user.is_bot:
        return
    try:
        await context.services.note_user(user)
    except Exception as exc:  # storage busy: the answer to the update matters more
        log.warning("could not remember user %s: %s", user.id, type(exc).__name__)
