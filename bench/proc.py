"""The bot under test as a separate process, and what it costs (from /proc)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_seconds: float  # utime + stime of every thread of the process
    rss_kib: int  # VmRSS
    hwm_kib: int  # VmHWM: the peak resident size so far


def sample(pid: int) -> ProcSample:
    """CPU time and resident memory of `pid`, read from /proc/<pid>/stat and status."""
    at = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may contain spaces) start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return ProcSample(at, (utime + stime) / CLOCK_TICKS, rss, hwm)


def cpu_share(first: ProcSample, last: ProcSample) -> float:
    """CPU used between two samples as a share of one core (0.05 = 5 %)."""
    wall = last.at - first.at
    return (last.cpu_seconds - first.cpu_seconds) / wall if wall > 0 else 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChildProcess:
    """`python -m <module>` with an environment of our own, logs to a file, stopped by
    SIGTERM (then SIGKILL after `grace` seconds)."""

    def __init__(
        self, module: str, env: Mapping[str, str], cwd: Path, log_path: Path, *args: str
    ) -> None:
        self.module = module
        self.args = args
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self._log: int | None = None

    def make_dirs(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self._log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            *self.args,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )

    async def stop(self, grace: float = 15.0) -> int | None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log is not None:
            os.close(self._log)
            self._log = None
        return proc.returncode if proc is not None else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def child_env(extra: Mapping[str, str], drop: set[str]) -> dict[str, str]:
    """The current environment without `drop` (upper-case names), plus `extra`, with the
    repository on PYTHONPATH so `python -m bot` runs this checkout."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in drop}
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
