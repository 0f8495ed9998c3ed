"""Shared fixtures: the Bot API emulator and the real bot running against it over HTTP.

`tillbot` is a Harness: the emulator, users in each role, and the python-telegram-bot
Application built by `bot.app.build_application` on a real SQLite file, which can be
stopped, restarted (same database) and reconfigured. At teardown the emulator must have
seen no request that breaks the Bot API description.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runner, build_application
from bot.config import Settings
from bot.domain.models import Invoice
from bot.i18n import LANGUAGES, t
from bot.telegram.context import Services
from testkit.telegram import BotApiEmulator
from testkit.telegram.models import EmuUser, MessageRecord
from tests.exclusive import machine_share
from tests.sandbox_kit import BotSandbox

# The reliability figures: loaded here too, so that pytest-xdist's controller (which runs
# no test module) gathers and prints its workers' figures.
pytest_plugins = ["tests.reliability_stats"]

PLACEHOLDERS = frozenset(t(lang, "creating_invoice") for lang in LANGUAGES)
# A marker token: any test output or log line containing it fails the secrets checks.
TOKEN = "987654:MARKERtokenSECRETvalue0123456789abcdef"
MERCHANT_ID, CUSTOMER_ID, ADMIN_ID, STRANGER_ID, MERCHANT2_ID = 1001, 2002, 9009, 3003, 1002
# The harness's bot paces a private chat at 20 messages a second, not Telegram's one (the
# emulator enforces no limits unless asked): a test of what the bot says need not wait a
# second per message. Tests of the pacing itself start the bot with REAL_CHAT_INTERVAL.
TEST_CHAT_INTERVAL = 0.05
REAL_CHAT_INTERVAL = float(Settings.model_fields["telegram_chat_interval_seconds"].default)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long soak tests")


# Modules whose tests run alone under pytest-xdist (tests/exclusive.py): several real bot
# processes or a browser (they would load the machine under the other tests' timeouts), or
# timings of their own (paces, deadlines) that other tests' load would skew.
EXCLUSIVE_MODULES = frozenset({
    "test_bench_smoke",
    "test_cluster_budget",
    "test_counter_browser",
    "test_crash",
    "test_failover",
    "test_failpoints",
    "test_hostile",
    "test_inbox_crash",
    "test_multi_instance",
    "test_ratelimit",
    "test_shared_budget",
    "test_watcher_scale",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    exclusive = pytest.mark.exclusive
    for item in items:
        if item.path.stem in EXCLUSIVE_MODULES:
            item.add_marker(exclusive)
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="long soak: run with --soak")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _machine_share(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under pytest-xdist an `exclusive` test runs alone (tests/exclusive.py)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # Each worker's base folder is <the run's folder>/popen-gwN: the parent is shared.
    folder = tmp_path_factory.getbasetemp().parent
    exclusive = request.node.get_closest_marker("exclusive") is not None
    with machine_share(folder, exclusive=exclusive):
        yield


@dataclass
class Harness:
    emu: BotApiEmulator
    tmp_path: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    runner: Runner | None = None
    clock: Callable[[], Any] | None = None
    _sandbox: BotSandbox | None = None

    def __post_init__(self) -> None:
        self.merchant = self.emu.add_user(MERCHANT_ID, "Maria", username="maria", language_code="en")
        self.merchant2 = self.emu.add_user(MERCHANT2_ID, "Max", username="max", language_code="de")
        self.customer = self.emu.add_user(CUSTOMER_ID, "Chris", language_code="en")
        self.admin = self.emu.add_user(ADMIN_ID, "Ada", language_code="en")
        self.stranger = self.emu.add_user(STRANGER_ID, "Sam", language_code="en")

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "telegram_bot_token": TOKEN,
            "telegram_api_url": self.emu.url,
            "database_url": f"sqlite:///{self.tmp_path / 'tillbot.db'}",
            "admin_ids": [ADMIN_ID],
            "merchant_ids": [MERCHANT_ID, MERCHANT2_ID],
            "poll_interval_seconds": 0.5,
            "pos_poll_interval_seconds": 0.5,
            "telegram_chat_interval_seconds": TEST_CHAT_INTERVAL,
            "_env_file": None,
        }
        values.update(self.overrides)
        values.update(overrides)
        return Settings(**values)

    async def start(self, **overrides: Any) -> Services:
        if overrides:
            self.overrides.update(overrides)
        kwargs: dict[str, Any] = {"clock": self.clock} if self.clock else {}
        self.runner = Runner(build_application(self.settings(), **kwargs))
        await self.runner.start()
        gateway = self.services.sandbox
        self._sandbox = BotSandbox(gateway) if gateway is not None else None
        return self.services

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None

    async def restart(self, **overrides: Any) -> Services:
        await self.stop()
        return await self.start(**overrides)

    @property
    def services(self) -> Services:
        assert self.runner is not None, "the bot is not running"
        return self.runner.app.bot_data

    async def command(self, user: EmuUser, text: str, *, timeout: float = 5.0) -> MessageRecord:
        """Send `text` and wait for the bot's next new message in that chat."""
        before = len(self.emu.bot_messages(user))
        older = max((m.message_id for m in self.emu.messages(user)), default=0)
        await self.emu.send_message(user, text)

        def reply() -> MessageRecord | None:
            # "Creating invoice…" is a placeholder: the reply is what it becomes (edited
            # into the invoice or an error, or deleted for the QR photo sent after it). A
            # payment ping answers an earlier invoice's message, not this command.
            for message in self.emu.bot_messages(user)[before:]:
                ping = message.reply_to_message_id is not None and (
                    message.reply_to_message_id <= older
                )
                if not message.deleted and message.content not in PLACEHOLDERS and not ping:
                    return message
            return None

        return await self.emu.wait_for(reply, timeout=timeout)

    async def invoice(self, user: EmuUser, text: str) -> tuple[MessageRecord, Invoice]:
        """Create an invoice by command; return the reply and the stored invoice."""
        reply = await self.command(user, text)
        invoices = await self.services.repo.list_invoices(user.id, limit=1)
        assert invoices, f"no invoice stored; the bot said: {reply.content}"
        return reply, invoices[0]

    def sandbox(self) -> BotSandbox:
        """The running bot's sandbox: controls, and what its client sent since the start."""
        assert self._sandbox is not None and self.runner is not None, "no sandbox running"
        return self._sandbox


@pytest.fixture
async def emulator() -> AsyncIterator[BotApiEmulator]:
    emu = BotApiEmulator(token=TOKEN, bot_username="tillbot_test_bot")
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()
    emu.assert_no_violations()


@pytest.fixture
async def harness(emulator: BotApiEmulator, tmp_path: Path) -> AsyncIterator[Harness]:
    """The emulator and users; the bot is not started yet (call `await harness.start()`)."""
    h = Harness(emulator, tmp_path)
    try:
        yield h
    finally:
        await h.stop()


@pytest.fixture
async def tillbot(harness: Harness) -> Harness:
    """The bot running on the sandbox gateway."""
    await harness.start()
    return harness


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
