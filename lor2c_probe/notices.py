"""Notices: things a user must know that are not errors (a lock taken over, an output moved aside, a
checkpoint skipped). One line each on stderr, so they never mix with a command's results on stdout."""

from __future__ import annotations

import sys


def notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr, flush=True)
