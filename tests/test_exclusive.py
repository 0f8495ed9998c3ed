"""The xdist lock (tests/exclusive.py): an exclusive test runs alone, the others together,
and one waiting for the machine is not overtaken by tests that arrive after it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.exclusive import machine_share


def hold(folder: Path, exclusive: bool, seconds: float, log: list[str], name: str) -> None:
    with machine_share(folder, exclusive=exclusive):
        log.append(f"{name}+")
        time.sleep(seconds)
        log.append(f"{name}-")


def run(*threads: threading.Thread, gap: float = 0.3) -> None:
    for thread in threads:
        thread.start()
        time.sleep(gap)
    for thread in threads:
        thread.join(10)


def test_shared_tests_overlap_and_an_exclusive_one_waits_for_them(tmp_path: Path) -> None:
    log: list[str] = []
    run(
        threading.Thread(target=hold, args=(tmp_path, False, 1.0, log, "a")),
        threading.Thread(target=hold, args=(tmp_path, False, 1.0, log, "b")),
        threading.Thread(target=hold, args=(tmp_path, True, 0.2, log, "x")),
    )
    assert log[:2] == ["a+", "b+"]  # side by side
    assert log.index("x+") > max(log.index("a-"), log.index("b-"))  # alone


def test_a_waiting_exclusive_test_goes_before_later_arrivals(tmp_path: Path) -> None:
    log: list[str] = []
    run(
        threading.Thread(target=hold, args=(tmp_path, False, 1.0, log, "a")),
        threading.Thread(target=hold, args=(tmp_path, True, 0.2, log, "x")),
        threading.Thread(target=hold, args=(tmp_path, False, 0.1, log, "late")),
    )
    assert log == ["a+", "a-", "x+", "x-", "late+", "late-"]
