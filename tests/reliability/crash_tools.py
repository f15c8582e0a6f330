"""The tools of the crash trials: every execution appends a line to a side-effect file.

The file is `LOOPWRIGHT_CRASH_EFFECTS` (set per trial); a line is `<tool> <call id>`, the call
id being passed as the `token` argument by the trial's scripted model. A SIGKILL cannot split
a line: each is one `write` of a file opened for appending. Sync tools: they run on a worker
thread, so their sleeps never block the loop (the kill may land in any of them).
"""

from __future__ import annotations

import os
import time

from loopwright.adapters.tools.python import tool

__all__ = ["charge", "lookup"]


def _effect(tool_name: str, token: str) -> None:
    with open(os.environ["LOOPWRIGHT_CRASH_EFFECTS"], "a", encoding="utf-8") as effects:
        effects.write(f"{tool_name} {token}\n")


def charge(token: str, before_ms: int = 0, after_ms: int = 0) -> str:
    """Charge a card: not idempotent, so it runs at most once per call, crashes included.

    Args:
        token: The call's id (one side effect per call id).
        before_ms: Work before the side effect.
        after_ms: Work after it (a kill here loses a result whose effect happened).
    """
    time.sleep(before_ms / 1000)
    _effect("charge", token)
    time.sleep(after_ms / 1000)
    return f"charged {token}"


@tool(idempotent=True)
def lookup(token: str, before_ms: int = 0, after_ms: int = 0) -> str:
    """Look something up: idempotent, so a crash may run it again.

    Args:
        token: The call's id.
        before_ms: Work before the side effect.
        after_ms: Work after it.
    """
    time.sleep(before_ms / 1000)
    _effect("lookup", token)
    time.sleep(after_ms / 1000)
    return f"found {token}"
