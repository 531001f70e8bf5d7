"""python -m bench.seed_plan: the seeds each of a grid's comparisons needs, written before they run (bench.plan)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.grid.keys import Cell
from bench.report.comparison_plan import ComparisonKey, read_plan
from bench.report.results import result_rows, write_results
from bench.report.seed_plan import main
from bench.report.stats import mean_t_interval
from bench.report.verdicts import seeds_needed

COUNTS = {"df": 12, "mel": 30, "nv": 60}
# Melanomas right (of 30) per arm and seed: synth2 gains 0.4, 0 and 0.2 over oversample (a wide spread over
# seeds); df: the same in every cell.
MEL_RIGHT = {("real", 0): 6, ("real", 1): 9, ("real", 2): 6, ("oversample", 0): 9, ("oversample", 1): 9,
             ("oversample", 2): 12, ("synth2", 0): 21, ("synth2", 1): 9, ("synth2", 2): 18}


def _write_cell(root: Path, fraction: float, arm: str, seed: int) -> list[dict]:
    """A cell whose first MEL_RIGHT melanomas, half of the df images and every nevus are right; probabilities
    one-hot on the prediction."""
    cell = Cell(fraction, "random", arm == "synth2", seed, arm)
    true = [c for c, n in COUNTS.items() for _ in range(n)]
    first = {c: true.index(c) for c in COUNTS}
    right_count = {"df": 6, "mel": MEL_RIGHT[(arm, seed)], "nv": COUNTS["nv"]}
    predicted = [t if i - first[t] < right_count[t] else ("nv" if t != "nv" else "df") for i, t in enumerate(true)]
    folder = root / "cells" / cell.cell_id
    folder.mkdir(parents=True)
    with (folder / "predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "true", "predicted", *(f"prob_{c}" for c in COUNTS)])
        writer.writerows([f"ISIC_{i:04d}", t, p, *(float(p == c) for c in COUNTS)]
                         for i, (t, p) in enumerate(zip(true, predicted)))
    recall = {c: right_count[c] / n for c, n in COUNTS.items()}
    metrics = {"balanced_accuracy": float(np.mean(list(recall.values()))), "accuracy": 0.0,
               "per_class": {c: {"recall": r, "support": COUNTS[c]} for c, r in recall.items()}}
    return result_rows(cell, metrics)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grid of one fraction, the arms real, oversample and synth2, 3 seeds."""
    root = tmp_path_factory.mktemp("grid")
    rows = [row for arm in ("real", "oversample", "synth2") for seed in (0, 1, 2)
            for row in _write_cell(root, 0.1, arm, seed)]
    write_results(root / "results.csv", rows)
    return root


def test_the_plan_holds_each_comparison_and_the_seeds_it_needs(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "plans" / "plan.json"
    main(["--grid", str(grid), "--minority", "mel", "df", "--n-bootstrap", "500", "--out", str(out)])
    plan = read_plan(out)
    assert plan.seeds == (0, 1, 2) and plan.source == str(grid) and plan.level == 0.95
    assert plan.command.startswith("python -m bench.seed_plan --grid")
    by_key = {c.key: c for c in plan.comparisons}
    # the report's pooled comparisons: synth2 against real and against oversample, recall and AUROC, per class
    assert {(k.arm, k.against, k.scope) for k in by_key} == {("synth2", "real", "all"), ("synth2", "oversample", "all")}
    assert {k.klass for k in by_key} == {"mel", "df", "nv"} and {k.metric for k in by_key} == {"recall", "auroc"}
    mel = by_key[ComparisonKey("recall", "mel", "synth2", "oversample")]
    # per-seed differences (21 - 9, 9 - 9, 18 - 12) / 30 = 0.4, 0, 0.2: mean 0.2, sd 0.2, undecided with 3 seeds;
    # excluding 0 takes t(0.975, n - 1) x 0.2 / sqrt(n) <= 0.2: n = 7 (t 2.447 <= 2.646), not 6 (2.571 > 2.449)
    differences = mean_t_interval([0.4, 0.0, 0.2])
    assert mel.estimate == pytest.approx(differences.estimate) and mel.spread == pytest.approx(0.2)
    assert mel.verdict == "undecided" and mel.goal == "exclude 0"
    assert mel.seeds_needed == seeds_needed(0.2, 0.2) == 7
    df = by_key[ComparisonKey("recall", "df", "synth2", "real")]  # no difference at all: within ±δ
    assert df.verdict == "no effect larger than 0.05" and df.seeds_needed is None
    assert plan.seeds_to_run() == max([3, *(c.seeds_needed for c in plan.comparisons if c.seeds_needed)])
    markdown = out.with_suffix(".md").read_text()
    assert "| recall | mel | synth2 | oversample | all | 3 |" in markdown and "Seeds to run" in markdown
    record = json.loads(out.read_text())
    assert record["deltas"] == {"recall": 0.05, "auroc": 0.02, "balanced_accuracy": 0.02}


def test_flags_choose_the_comparisons(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    main(["--grid", str(grid), "--baselines", "oversample", "--classes", "mel", "--metrics", "auroc",
          "--scopes", "fraction 0.1", "--n-bootstrap", "200", "--out", str(out)])
    assert [c.key for c in read_plan(out).comparisons] == [ComparisonKey("auroc", "mel", "synth2", "oversample",
                                                                         "fraction 0.1")]


@pytest.mark.parametrize("case", ["no-grid", "not-json", "out-folder", "nothing-chosen", "bad-level"])
def test_bad_input_is_one_clear_error(grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      case: str) -> None:
    (tmp_path / "plan.json").mkdir()
    argv, expected = {
        "no-grid": (["--grid", str(tmp_path), "--out", str(tmp_path / "p.json")], "has no results.csv and cells/"),
        "not-json": (["--grid", str(grid), "--out", str(tmp_path / "plan.md")], "ending in .json"),
        "out-folder": (["--grid", str(grid), "--out", str(tmp_path / "plan.json")], "is a folder"),
        "nothing-chosen": (["--grid", str(grid), "--arms", "synth8", "--n-bootstrap", "100", "--out",
                            str(tmp_path / "p.json")], "No comparison of"),
        "bad-level": (["--grid", str(grid), "--level", "95", "--out", str(tmp_path / "p.json")], "--level in (0, 1)"),
    }[case]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert expected in " ".join("".join(capsys.readouterr()).split())
    assert not (tmp_path / "p.json").exists()


def test_a_plan_made_with_another_delta_is_refused(grid: Path, tmp_path: Path) -> None:
    from dermkit.errors import DermkitError

    out = tmp_path / "plan.json"
    main(["--grid", str(grid), "--classes", "df", "--metrics", "recall", "--n-bootstrap", "100", "--out", str(out)])
    record = json.loads(out.read_text())
    record["deltas"]["recall"] = 0.1
    out.write_text(json.dumps(record))
    with pytest.raises(DermkitError, match="made with δ"):
        read_plan(out)
    out.write_text("{}")
    with pytest.raises(DermkitError, match="not a seed plan"):
        read_plan(out)
