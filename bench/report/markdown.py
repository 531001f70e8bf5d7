"""Markdown pieces of the reports: intervals as text, signed differences, verdict cells, tables.
"""

from __future__ import annotations

import math

from bench.report.stats import Interval
from bench.report.verdicts import Decision


# -- markdown ---------------------------------------------------------------------------------
def _iv(interval: Interval) -> str:
    if not math.isfinite(interval.estimate):
        return "-"
    if not interval.defined:
        return f"{interval.estimate:.3f} (n={interval.n})"
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def _signed(interval: Interval) -> str:
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def _signed_or_estimate(interval: Interval) -> str:
    """A signed interval, or the signed estimate alone where the interval is undefined (one seed)."""
    return _signed(interval) if interval.defined else f"{interval.estimate:+.3f}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _verdict_cell(decision: Decision, bold: bool = True) -> str:
    """A verdict as a table shows it, with what deciding takes when undecided: ``**undecided** (13 seeds to
    exclude 0)``."""
    text = f"**{decision.verdict}**" if bold else decision.verdict
    needs = decision.needs()
    return f"{text} ({needs})" if needs else text
