"""The services handlers reach through a typed context (no raw bot_data dictionaries)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from telegram import User
from telegram.ext import Application, CallbackContext, ExtBot

from bot.domain.models import UserPrefs, utcnow
from bot.i18n import resolve_language
from bot.metrics import Metrics
from bot.telegram.ratelimit import RateLimitArgs
from bot.telegram.views import ViewContext
from bot.webapp.live import LiveHub

if TYPE_CHECKING:
    import httpx

    from bot.config import Settings
    from bot.gateways.base import Gateway
    from bot.gateways.sandbox import SandboxGateway
    from bot.liveness import Liveness
    from bot.services.inbox import InboxService
    from bot.services.payments import PaymentsService
    from bot.services.watcher import Watcher
    from bot.storage_watch import StorageWatch
    from bot.telegram.notifier import Notifier
    from bot.web import WebServer
    from storage.base import Repository


class Services:
    """Opened in post_init, closed in post_shutdown; one per Application."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.clock: Callable[[], datetime] = utcnow
        self.owner = "tillbot"
        self._settings: Settings | None = None
        self._repo: Repository | None = None
        self._payments: PaymentsService | None = None
        self.http: httpx.AsyncClient | None = None
        self.gateways: dict[str, Gateway] = {}
        self.sandbox: SandboxGateway | None = None
        self.notifier: Notifier | None = None
        self.watcher: Watcher | None = None
        self.liveness: Liveness | None = None
        self.storage_watch: StorageWatch | None = None
        self.web: WebServer | None = None
        self.live = LiveHub()  # wakes the Mini App's live status streams
        self.inbox: InboxService | None = None  # None when INBOX_ENABLED=false
        self.view = ViewContext(bot_username="")
        self._prefs: dict[int, UserPrefs] = {}
        self.seen_language: dict[int, str] = {}
        self._usernames: dict[int, str | None] = {}

    def rename(self, owner: str) -> None:
        """This instance claims work under a new id from now on (bot/liveness.py); what
        the notifier held under the old one is dropped."""
        self.owner = owner
        if self.watcher is not None:
            self.watcher.owner = owner
        if self.notifier is not None:
            self.notifier.owner = owner
            self.notifier.drop_held()

    @property
    def settings(self) -> Settings:
        assert self._settings is not None, "settings are set when the application is built"
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self._settings = value

    @property
    def repo(self) -> Repository:
        assert self._repo is not None, "storage is opened in post_init"
        return self._repo

    @repo.setter
    def repo(self, value: Repository) -> None:
        self._repo = value

    @property
    def payments(self) -> PaymentsService:
        assert self._payments is not None, "the payment service is built in post_init"
        return self._payments

    @payments.setter
    def payments(self, value: PaymentsService) -> None:
        self._payments = value

    async def prefs(self, user_id: int) -> UserPrefs:
        cached = self._prefs.get(user_id)
        if cached is None:
            cached = await self.payments.access.prefs(user_id)
            if len(self._prefs) > 10_000:
                self._prefs.clear()
            self._prefs[user_id] = cached
        return cached

    def forget_prefs(self, user_id: int) -> None:
        self._prefs.pop(user_id, None)

    async def language_for(self, user: User | None) -> str:
        """The language a user reads: their /settings choice, else Telegram's language."""
        if user is None:
            return "en"
        prefs = await self.prefs(user.id)
        language = resolve_language(prefs.language, user.language_code)
        self.seen_language[user.id] = language
        return language

    async def language_of_chat(self, chat_id: int) -> str:
        """For notifications to a private chat (its id is the user's id): their /settings
        choice, else the Telegram language seen last (stored, so it survives restarts)."""
        prefs = await self.prefs(chat_id)
        seen = self.seen_language.get(chat_id) or prefs.telegram_language
        return resolve_language(prefs.language, seen)

    async def note_user(self, user: User) -> None:
        """Store what Telegram says about a user (language_code, name, @username) when it
        changed (the username once per process and user, and when it changes)."""
        username = (user.username or "").lower() or None
        if self._usernames.get(user.id, "") != username:  # "" : not yet seen by this process
            await self.payments.access.note_username(user.id, username)
            if len(self._usernames) > 10_000:
                self._usernames.clear()
            self._usernames[user.id] = username
        prefs = await self.prefs(user.id)
        code = (user.language_code or "")[:16] or prefs.telegram_language
        name = user.full_name[:128] or prefs.name
        if (code, name) == (prefs.telegram_language, prefs.name):
            return
        self._prefs[user.id] = await self.payments.access.note_telegram(user.id, code, name)


class TillbotContext(CallbackContext[ExtBot[RateLimitArgs], dict[Any, Any], dict[Any, Any], Services]):
    """CallbackContext whose bot_data is the Services object."""

    @property
    def services(self) -> Services:
        return self.bot_data


TillbotApp = Application[
    ExtBot[RateLimitArgs], TillbotContext, dict[Any, Any], dict[Any, Any], Services, Any
]
