"""Figures of the reliability suite (issue 7), printed at the end of every pytest run.

The reliability tests (test_properties, test_faults, test_secrets, test_access, test_crash)
load this module as a plugin (`pytest_plugins = ["tests.reliability_stats"]`) and report
what they did with `record(area, ...)`: inputs tried, faults injected, crashes survived,
payments checked, lost and duplicated. `pytest_terminal_summary` prints one line per area
and a total; docs/RELIABILITY.md quotes the lines of the last run. With
`TILLBOT_RELIABILITY_JSON=<path>` the figures are also written there as JSON. Under
pytest-xdist each worker hands its figures to the controller (tests/conftest.py loads this
plugin there too), which prints them.

PYTEST_DONT_REWRITE (a plugin module without asserts, imported by the tests too).

Also here: the small helpers those tests share (how many Hypothesis examples to run, and
running Hypothesis from a worker thread against a bot living on the test's event loop).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

AREAS = ("properties", "faults", "secrets", "access", "crash", "hostile input")


@dataclass
class Figures:
    tests: int = 0  # tests that reported (passed or not)
    inputs: int = 0  # generated inputs / examples / requests tried
    faults: int = 0  # faults injected (HTTP errors, hangs, locks, Telegram errors)
    crashes: int = 0  # process kills (SIGKILL or failpoint) survived
    payments: int = 0  # payments checked end to end
    lost: int = 0  # payments lost (must be 0)
    duplicated: int = 0  # payments applied twice (must be 0)
    window_duplicates: int = 0  # notices sent twice in the documented crash window
    leaks: int = 0  # secret markers found in an output (must be 0)
    denied: int = 0  # unauthorised actions refused
    notes: list[str] = field(default_factory=list)


STATS: dict[str, Figures] = {}


def record(area: str, *, note: str | None = None, **counts: int) -> None:
    """Add `counts` (fields of Figures) to `area`; counts one test per call with tests=1."""
    figures = STATS.setdefault(area, Figures())
    for name, value in counts.items():
        setattr(figures, name, getattr(figures, name) + int(value))
    if note:
        figures.notes.append(note)


def soak_enabled(config: pytest.Config | None = None) -> bool:
    """True with `pytest --soak` (or TILLBOT_SOAK=1 in the environment)."""
    if os.environ.get("TILLBOT_SOAK", "").lower() in ("1", "true", "yes"):
        return True
    return bool(config is not None and config.getoption("--soak", default=False))


def examples(config: pytest.Config, ci: int, soak: int) -> int:
    """How many Hypothesis examples: `ci` normally, `soak` with --soak."""
    return soak if soak_enabled(config) else ci


def on_loop(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float = 60.0
) -> T:
    """Run `coro` on `loop` (the test's loop, where the bot lives) from a worker thread."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def _line(area: str, f: Figures) -> str:
    parts = [f"tests {f.tests}", f"inputs tried {f.inputs}", f"faults injected {f.faults}"]
    parts.append(f"crashes survived {f.crashes}")
    if f.payments:
        parts.append(f"payments checked {f.payments}")
    if f.denied:
        parts.append(f"unauthorised actions refused {f.denied}")
    if area == "secrets" or f.leaks:
        parts.append(f"secret leaks {f.leaks}")
    parts += [f"payments lost {f.lost}", f"duplicated {f.duplicated}"]
    if f.window_duplicates:
        parts.append(f"notices sent twice in documented windows {f.window_duplicates}")
    return f"{area}: " + ", ".join(parts)


def summary_lines() -> list[str]:
    lines = [_line(area, STATS[area]) for area in AREAS if area in STATS]
    if STATS:
        total = Figures()
        for f in STATS.values():
            for name in ("tests", "inputs", "faults", "crashes", "payments", "lost"):
                setattr(total, name, getattr(total, name) + getattr(f, name))
            total.duplicated += f.duplicated
            total.window_duplicates += f.window_duplicates
            total.leaks += f.leaks
            total.denied += f.denied
        lines.append(
            f"total: tests {total.tests}, inputs tried {total.inputs}, faults injected "
            f"{total.faults}, crashes survived {total.crashes}, payments checked "
            f"{total.payments}, payments lost {total.lost}, duplicated {total.duplicated}, "
            f"secret leaks {total.leaks}, notices sent twice in documented windows "
            f"{total.window_duplicates}"
        )
    return lines


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its figures to the controller, which prints the summary."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["reliability_stats"] = {a: asdict(f) for a, f in STATS.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the xdist controller: add a finished worker's figures to the run's."""
    for area, counts in getattr(node, "workeroutput", {}).get("reliability_stats", {}).items():
        notes = counts.pop("notes", [])
        record(area, **counts)
        STATS[area].notes.extend(notes)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not STATS:
        return
    mode = "soak" if soak_enabled(config) else "ci"
    terminalreporter.write_sep("=", f"reliability figures ({mode} run)")
    for line in summary_lines():
        terminalreporter.write_line(line)
    for area in AREAS:
        for note in STATS.get(area, Figures()).notes:
            terminalreporter.write_line(f"  {area}: {note}")
    target = os.environ.get("TILLBOT_RELIABILITY_JSON")
    if target:
        data = {"mode": mode, "areas": {a: asdict(f) for a, f in STATS.items()}}
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
