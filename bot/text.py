"""Text from people, made safe to store: no control characters, no terminal escapes.

A description is shown in Telegram, written to CSV reports and (at DEBUG) to logs that
someone reads in a terminal: NUL bytes break tools, and escape sequences (`ESC [ 2 J`,
`ESC ] 0 ; title BEL`, their one-byte C1 forms) would clear a terminal, retitle it, or fake
log lines. They are removed whole, not just their ESC byte, so no `[31m` remains.
"""

from __future__ import annotations

import re

# ESC sequences (ECMA-48): CSI `ESC [ params intermediates final`, OSC/DCS/SOS/PM/APC strings
# up to BEL or ST, two-character escapes; and the one-byte C1 forms of CSI and the strings.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# What remains of C0 and C1 controls and DEL; tabs and newlines become spaces.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """`text` without escape sequences and control characters; whitespace runs (newlines,
    tabs) collapsed to one space, as a one-line description."""
    text = _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))
    return " ".join(text.split())
