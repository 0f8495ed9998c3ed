"""Named crash points for the restart tests: `TILLBOT_CRASH_AT=<point>` makes the process
die there at once (like SIGKILL: no cleanup, no flush), to prove nothing is lost.

Points around a payment:
    before_transition   the gateway said paid; nothing stored yet
    after_transition    the status and its outbox rows are stored; nothing sent
    after_send          Telegram accepted a notification; not yet marked sent (the one
                        window in which a new message can be sent twice)
Points of handling a command through the inbox (bot/telegram/handlers/creating.py):
    after_update_stored     the update is in the inbox; Telegram not yet told
    after_placeholder_sent  "Creating invoice…" accepted by Telegram, its id not stored (the
                            one window in which a command's reply is sent twice)
    after_session_created   the gateway created the session; not yet attached
    after_reply_sent        the placeholder edited into the invoice; not yet remembered
    after_reply_stored      the invoice message remembered; the update not yet done
`TILLBOT_CRASH_AFTER=N` lets the point pass N times before it fires.
"""

from __future__ import annotations

import os

_point = os.environ.get("TILLBOT_CRASH_AT", "")
_remaining = int(os.environ.get("TILLBOT_CRASH_AFTER", "0") or 0)


def crash_point(name: str) -> None:
    """Die here if this is the configured point (a no-op in normal runs)."""
    global _remaining
    if not _point or name != _point:
        return
    if _remaining > 0:
        _remaining -= 1
        return
    os._exit(137)
