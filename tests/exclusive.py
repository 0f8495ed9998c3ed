"""Tests that must have the machine to themselves while pytest-xdist runs the others.

A test marked `exclusive` (real bot processes, timings, a browser) runs while no other
test runs on any worker; the others run side by side. It is a readers-writer lock over
two lock files in the run's shared temporary folder: every test passes a turnstile
(`gate`) and then holds `room` shared, an exclusive test holds the turnstile and `room`
alone, so tests that arrive while it waits queue behind it rather than starve it.
Without xdist (one process) the lock is never contended and costs nothing.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _locked(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing drops the lock


@contextmanager
def machine_share(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the machine for a test: alone when `exclusive`, else beside other tests."""
    gate, room = folder / "exclusive.gate", folder / "exclusive.room"
    if exclusive:
        with _locked(gate, fcntl.LOCK_EX), _locked(room, fcntl.LOCK_EX):
            yield
        return
    with _locked(gate, fcntl.LOCK_EX):
        fd = os.open(room, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        yield
    finally:
        os.close(fd)
