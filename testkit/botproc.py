"""Run `python -m bot` as a real process (for crash, failover and multi-instance tests).

The emulator and the gateway simulators stay in the test process, on 127.0.0.1; the bot
process reaches them over HTTP exactly as it would reach Telegram and the gateways.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class BotProcess:
    """One bot process; `kill()` is SIGKILL (no cleanup), `stop()` is SIGTERM."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, **extra_env: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILLBOT_CRASH")}
        env.update(self.env)
        env.update(extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.proc.poll() is None:
            if loop.time() > deadline:
                raise TimeoutError("the bot process did not exit")
            await asyncio.sleep(0.05)
        return int(self.proc.returncode)

    async def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                await self.wait_exit(15)
            except TimeoutError:
                self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def mion_bot_env(
    *,
    token: str,
    telegram_url: str,
    database_url: str,
    mion_url: str,
    mion_key: str,
    admins: Iterable[int],
    merchants: Iterable[int],
    **settings: str,
) -> dict[str, str]:
    """The environment of a bot on Mion alone (no sandbox), plus `settings` (names as in
    the environment: POLL_INTERVAL_SECONDS="0.3")."""
    return {
        "TELEGRAM_BOT_TOKEN": token,
        "TELEGRAM_API_URL": telegram_url,
        "DATABASE_URL": database_url,
        "ADMIN_IDS": ",".join(map(str, admins)),
        "MERCHANT_IDS": ",".join(map(str, merchants)),
        "MION_API_URL": mion_url,
        "MION_API_KEY": mion_key,
        "DEFAULT_GATEWAY": "mion",
        "SANDBOX_ENABLED": "false",
        **settings,
    }
