"""Standalone runs of the test kit's servers end on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal


async def until_stop_signal() -> None:
    """Return when the process gets SIGTERM or SIGINT (the server then stops itself)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
