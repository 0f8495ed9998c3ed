"""Where the figures come from: CPU, cores, memory, Python, disk sync latency, commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def fsync_ms(directory: Path, rounds: int = 50) -> float:
    """Median time of a small write + fsync in `directory` (what a SQLite commit with
    synchronous=FULL costs there)."""
    times: list[float] = []
    fd, name = tempfile.mkstemp(dir=directory, prefix=".fsync-probe-")
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            os.write(fd, b"x" * 128)
            os.fsync(fd)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        os.unlink(name)
    times.sort()
    return round(times[len(times) // 2], 3)


def git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_info(work_dir: Path, repo: Path) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "memory_gib": memory_gib(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "db_fsync_ms": fsync_ms(work_dir),
        "commit": git_commit(repo),
        "load_before": load_average(),
    }


def describe(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, {machine['os']}; SQLite on a disk with "
        f"{machine['db_fsync_ms']} ms per fsync; {machine['date']}"
        + (f", commit {machine['commit']}" if machine.get("commit") else "")
        + (
            f"; load average {machine['load_before']:.1f} before the run"
            + (f", {machine['load_after']:.1f} after" if "load_after" in machine else "")
            if "load_before" in machine
            else ""
        )
    )
