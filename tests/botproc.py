"""Kept for test modules written against the old place: the kit's `testkit.botproc`."""

from testkit.botproc import BotProcess, mion_bot_env

__all__ = ["BotProcess", "mion_bot_env"]
