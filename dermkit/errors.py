"""User-facing errors.

A :class:`DermkitError` is bad input the user can fix (a missing file, a misspelt key, an unknown
class). Entry points print its message without a traceback and exit with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DermkitError(Exception):
    """An error in the user's input, with a message that says what to do."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` of ``choices`` closest to ``name`` (case-insensitive)."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean: a, b?' suffix for an error message, or '' when nothing is close."""
    hits = closest(name, choices)
    return f" Did you mean: {', '.join(hits)}?" if hits else ""
