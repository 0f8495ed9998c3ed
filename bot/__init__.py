"""Tillbot: a Telegram bot that is a payment frontend for crypto payment gateways."""

import os

# python-telegram-bot 22 warns that RetryAfter.retry_after becomes a timedelta; opt in now
# (bot/telegram/notifier.py reads both forms).
os.environ.setdefault("PTB_TIMEDELTA", "1")
