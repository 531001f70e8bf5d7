"""A seed plan: the comparisons registered before their seeds run, and the seeds each needs.

``python -m bench.seed_plan`` (a grid's folder) and ``python -m bench.compare_cells --plan-out``
(two sets of cells) write one from finished cells; commit it before running the seeds. The grid's
report (``report.plan``) and ``bench.compare_cells --plan`` read it back and mark the comparisons it
registered as planned: the others are exploratory. This module holds the records and the files
only; it computes nothing (:mod:`bench.report.stats` does).

``plan.json`` (the record read back) and ``plan.md`` (the same for people) are written side by side.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dermkit.errors import DermkitError
from bench.report.stats import Interval
from bench.report.verdicts import DELTAS, MAX_SEEDS, Decision

PLAN_FORMAT = "dermkit-seed-plan/1"
PLAN_SUFFIX = ".json"
# The seed counts plan.md summarises: how many comparisons would decide with at most this many seeds.
SEED_BUDGETS = (5, 10, 20, 50, 100)


@dataclass(frozen=True)
class ComparisonKey:
    """What identifies a comparison across a plan and a report.

    Attributes:
        metric: ``recall``, ``auroc`` or ``balanced_accuracy`` (a key of :data:`bench.report.verdicts.DELTAS`).
        klass: the class (empty for balanced accuracy).
        arm: the side compared (an arm, an initialisation, or ``bench.compare_cells``' first name).
        against: its baseline.
        scope: the conditions pooled (``all``, ``fraction 0.1``...).
    """

    metric: str
    klass: str
    arm: str
    against: str
    scope: str = "all"


@dataclass(frozen=True)
class PlannedComparison:
    """One comparison of a plan, with what its cells showed when the plan was made.

    Attributes:
        key: the comparison.
        seeds: seeds behind the per-seed differences.
        estimate: mean paired difference.
        low: lower end of the bootstrap interval (seeds and test images).
        high: its upper end.
        seed_low: lower end of the t-interval of the per-seed differences (NaN with one seed).
        seed_high: its upper end.
        spread: standard deviation of the per-seed differences (NaN with one seed).
        verdict: the verdict in words (:attr:`bench.report.verdicts.Decision.verdict`).
        goal: undecided only: what more seeds must achieve (exclude 0, or lie within ±δ).
        half_width: the t-interval half-width that achieves it.
        seeds_needed: the seeds the spread says it takes (None: decided, or one seed);
            :data:`bench.report.stats.MAX_SEEDS` means at least that many.
    """

    key: ComparisonKey
    seeds: int
    estimate: float
    low: float
    high: float
    seed_low: float
    seed_high: float
    spread: float
    verdict: str
    goal: str
    half_width: float
    seeds_needed: int | None


@dataclass(frozen=True)
class SeedPlan:
    """A seed plan (see the module docstring).

    Attributes:
        command: the command that made it.
        created: when (local time, ``YYYY-MM-DD HH:MM``).
        source: what it was made from (a grid folder, or the two sides' cell folders).
        seeds: the seeds its cells had.
        level: confidence level of every interval.
        deltas: δ per metric (:data:`bench.report.verdicts.DELTAS` when it was made).
        comparisons: the comparisons it registers.
    """

    command: str
    created: str
    source: str
    seeds: tuple[int, ...]
    level: float
    deltas: dict[str, float]
    comparisons: tuple[PlannedComparison, ...] = field(default_factory=tuple)

    def planned(self, key: ComparisonKey, fraction: float | None = None) -> PlannedComparison | None:
        """The plan's entry for ``key``, or None when the plan does not register it.

        ``fraction``: the label fraction of every cell compared, where one: an entry of the same metric, class
        and sides whose scope is that fraction (``fraction 0.1``, or a grid's ``fraction 0.1, arm real``) also
        matches, so that ``bench.compare_cells`` (scope ``all``) finds what a grid's plan registered. The arm
        in a grid's scope is not checked: the cells do not record it.
        """
        exact = next((c for c in self.comparisons if c.key == key), None)
        if exact is not None or fraction is None:
            return exact
        scope = f"fraction {fraction:g}"
        return next((c for c in self.comparisons if (c.key.metric, c.key.klass, c.key.arm, c.key.against)
                     == (key.metric, key.klass, key.arm, key.against)
                     and (c.key.scope == scope or c.key.scope.startswith(scope + ","))), None)

    def seeds_to_run(self) -> int:
        """The seeds that decide every planned comparison the spread says can be decided: the largest
        ``seeds_needed`` below :data:`bench.report.stats.MAX_SEEDS`, and no fewer than the plan's own seeds."""
        needed = [c.seeds_needed for c in self.comparisons if c.seeds_needed is not None and c.seeds_needed < MAX_SEEDS]
        return max([len(self.seeds), *needed])


def planned_comparison(key: ComparisonKey, interval: Interval, over_seeds: Interval,
                       decision: Decision) -> PlannedComparison:
    """A plan's entry from a comparison's intervals and :func:`bench.report.verdicts.decide`'s decision."""
    return PlannedComparison(key, over_seeds.n, interval.estimate, interval.low, interval.high, over_seeds.low,
                             over_seeds.high, over_seeds.spread, decision.verdict, decision.goal, decision.half_width,
                             decision.seeds_needed)


def new_plan(command: str, source: str, seeds: list[int], level: float,
             comparisons: list[PlannedComparison]) -> SeedPlan:
    """A plan made now, with today's δ."""
    return SeedPlan(command, time.strftime("%Y-%m-%d %H:%M"), source, tuple(sorted(seeds)), level, dict(DELTAS),
                    tuple(comparisons))


def check_plan_path(path: Path, flag: str) -> None:
    """Refuse, before any work, a plan file name that cannot be written: not ``.json``, a folder, or under a file.

    Raises:
        DermkitError: naming ``flag`` and the path.
    """
    if path.suffix != PLAN_SUFFIX:
        raise DermkitError(f"{flag} {path}: give a file name ending in {PLAN_SUFFIX} (the .md is written beside it).")
    for target in (path, path.with_suffix(".md")):
        if target.is_dir():
            raise DermkitError(f"{flag} {path}: {target} is a folder; give a file name.")
    check_parent(path, flag)


def check_parent(path: Path, flag: str) -> None:
    """Refuse an output path whose parent folder exists as a file (it cannot be created).

    Raises:
        DermkitError: naming ``flag`` and the path.
    """
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DermkitError(f"{flag} {path}: {parent} is a file, not a folder; give a path in a folder.")
            return


def _number(value: float | None) -> float | None:
    """A JSON-ready number (NaN as null)."""
    return None if value is None or not math.isfinite(value) else float(value)


def write_plan(path: Path, plan: SeedPlan) -> tuple[Path, Path]:
    """Write ``plan.json`` at ``path`` and ``plan.md`` beside it; returns both paths."""
    record = {"format": PLAN_FORMAT, **{k: v for k, v in asdict(plan).items() if k != "comparisons"},
              "seeds": list(plan.seeds), "seeds_to_run": plan.seeds_to_run(),
              "comparisons": [{**asdict(c.key), **{k: (_number(v) if isinstance(v, float) else v)
                                                   for k, v in asdict(c).items() if k != "key"}}
                              for c in plan.comparisons]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    markdown = path.with_suffix(".md")
    markdown.write_text("\n".join(plan_markdown(plan)) + "\n")
    return path, markdown


def read_plan(path: Path) -> SeedPlan:
    """A plan written by :func:`write_plan`.

    Raises:
        DermkitError: the file is missing, not JSON, not a seed plan, or made with another δ than
            :data:`bench.report.verdicts.DELTAS` (its verdicts would follow another rule).
    """
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DermkitError(f"Cannot read the seed plan {path}: {err}. Give a plan.json written by "
                           "python -m bench.seed_plan or bench.compare_cells --plan-out.") from None
    if not isinstance(record, dict) or record.get("format") != PLAN_FORMAT:
        raise DermkitError(f"{path} is not a seed plan (no \"format\": \"{PLAN_FORMAT}\"). Give a plan.json written by "
                           "python -m bench.seed_plan or bench.compare_cells --plan-out.")
    if record.get("deltas") != DELTAS:
        raise DermkitError(f"The seed plan {path} was made with δ {record.get('deltas')}, this version decides with "
                           f"{DELTAS}: make the plan again.")
    key_fields = ComparisonKey.__dataclass_fields__
    try:
        comparisons = tuple(
            PlannedComparison(ComparisonKey(**{k: entry[k] for k in key_fields}),
                              **{k: (math.nan if entry[k] is None and k != "seeds_needed" else entry[k])
                                 for k in PlannedComparison.__dataclass_fields__ if k != "key"})
            for entry in record["comparisons"])
        return SeedPlan(record["command"], record["created"], record["source"], tuple(record["seeds"]),
                        float(record["level"]), record["deltas"], comparisons)
    except (KeyError, TypeError) as err:
        raise DermkitError(f"The seed plan {path} lacks or mangles {err}; write it again with "
                           "python -m bench.seed_plan.") from None


PLAN_COLUMNS = ("metric", "class", "arm", "against", "conditions", "seeds", "Δ", "bootstrap interval", "t-interval",
                "sd per seed", "verdict", "goal", "seeds needed")


def plan_rows(plan: SeedPlan) -> list[list[str]]:
    """The plan's table (:data:`PLAN_COLUMNS`): undecided comparisons by the seeds they need, then the decided."""
    ordered = sorted(plan.comparisons, key=lambda c: (c.seeds_needed is None, c.seeds_needed or 0))
    return [_plan_row(c) for c in ordered]


def _plan_row(c: PlannedComparison) -> list[str]:
    """One comparison's row of :func:`plan_rows`."""
    k = c.key
    seed_interval = f"[{c.seed_low:+.3f}, {c.seed_high:+.3f}]" if math.isfinite(c.seed_low) else "-"
    needed = "-" if c.seeds_needed is None else (f"≥ {MAX_SEEDS}" if c.seeds_needed >= MAX_SEEDS
                                                 else str(c.seeds_needed))
    if c.seeds_needed is not None and c.seeds_needed <= c.seeds:
        needed += " (the test images hold it)"  # the t-interval would decide; the bootstrap interval does not
    return [k.metric, k.klass or "-", k.arm, k.against, k.scope, str(c.seeds), f"{c.estimate:+.3f}",
            f"[{c.low:+.3f}, {c.high:+.3f}]", seed_interval,
            "-" if not math.isfinite(c.spread) else f"{c.spread:.3f}", c.verdict, c.goal or "-", needed]


def plan_markdown(plan: SeedPlan) -> list[str]:
    """``plan.md``: how the plan was made, the rule, the seeds to run, and one row per comparison."""
    reachable = [c.seeds_needed for c in plan.comparisons if c.seeds_needed is not None and c.seeds_needed < MAX_SEEDS]
    budgets = ", ".join(f"{sum(n <= b for n in reachable)} with at most {b}" for b in SEED_BUDGETS)
    deltas = ", ".join(f"{metric} {delta:g}" for metric, delta in plan.deltas.items())
    lines = ["# Seed plan", "", f"Made {plan.created} with `{plan.command}`", "",
             f"From {plan.source}, seeds {', '.join(map(str, plan.seeds))}; {plan.level:.0%} intervals; δ: {deltas}.",
             "",
             "Commit this plan before running more seeds: a report given it (`report.plan=...`, or "
             "`bench.compare_cells --plan`) marks these comparisons as planned, the others as exploratory.", "",
             "Verdicts: **helps** / **hurts** when both the bootstrap interval and the t-interval of the per-seed "
             "differences exclude 0; **no effect larger than δ** when both lie within ±δ; otherwise **undecided**. "
             "Seeds needed (undecided only): the fewest n with t(0.975, n - 1) × sd / √n at most the half-width "
             "that decides, sd being the per-seed differences' spread seen here: the observed mean's distance from "
             "0 (to exclude 0) when the mean is at least δ / 2 from 0, otherwise δ minus that distance (to lie "
             "within ±δ). It takes the mean and the spread of these few seeds as they are (both uncertain: a true "
             "difference smaller than the one seen needs more seeds), and counts the t-interval only; the bootstrap "
             "interval must clear too, and where the seeds there are already suffice by this count (\"the test "
             "images hold it\"), it is the bootstrap, which also draws the test images, that keeps the comparison "
             "undecided.", "",
             f"Undecided comparisons the spread says more seeds decide: {len(reachable)} of {len(plan.comparisons)}; "
             f"{budgets} seeds. Seeds to run for all of them: {plan.seeds_to_run()}.", "",
             "| " + " | ".join(PLAN_COLUMNS) + " |", "|" + "---|" * len(PLAN_COLUMNS)]
    return lines + ["| " + " | ".join(row) + " |" for row in plan_rows(plan)]
