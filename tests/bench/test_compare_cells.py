"""bench.compare_cells: cells of two run folders compared seed by seed, with the grid report's statistics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.report.compare_cells import main
from bench.report.comparison_plan import ComparisonKey, read_plan
from bench.report.stats import rank_auroc

TEST_COUNTS = {"mel": 10, "nv": 20, "df": 5}


def _write_cell(folder: Path, seed: int, mel_right: int, ids_offset: int = 0,
                df_right: int = TEST_COUNTS["df"], sampler: str = "shuffle") -> Path:
    """A cell whose first ``mel_right`` melanomas and first ``df_right`` dermatofibromas are right; every nv
    is right; trained with ``sampler`` (its config.yaml)."""
    true = [c for c, n in TEST_COUNTS.items() for _ in range(n)]
    first_of = {klass: true.index(klass) for klass in TEST_COUNTS}
    right_count = {"mel": mel_right, "nv": TEST_COUNTS["nv"], "df": df_right}
    right = [i - first_of[klass] < right_count[klass] for i, klass in enumerate(true)]
    predicted = [t if ok else "nv" for t, ok in zip(true, right)]
    folder.mkdir(parents=True)
    with (folder / "predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "true", "predicted"])
        writer.writerows([f"ISIC_{i + ids_offset:05d}", t, p] for i, (t, p) in enumerate(zip(true, predicted)))
    recall = {klass: right_count[klass] / n for klass, n in TEST_COUNTS.items()}
    per_class = {klass: {"recall": r} for klass, r in recall.items()}
    (folder / "metrics.json").write_text(json.dumps({"balanced_accuracy": sum(recall.values()) / 3, "accuracy": 0.0,
                                                     "per_class": per_class, "seed": seed}))
    (folder / "config.yaml").write_text(f"seed: {seed}\nsampler: {sampler}\n")
    return folder


def test_paired_recall_and_balanced_accuracy_match_the_constructed_cells(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # mel recall 0.8 against 0.3 / 0.4 / 0.5 under seeds 0 / 1 / 2: +0.4 on average, every seed above 0
    cells = [_write_cell(tmp_path / "a" / f"s{s}", s, 8) for s in (2, 0, 1)]  # any order: they pair by seed
    against = [_write_cell(tmp_path / "b" / f"s{s}", s, 3 + s) for s in (0, 1, 2)]
    out = tmp_path / "report" / "compare.md"
    main(["--cells", *map(str, cells), "--against", *map(str, against), "--names", "synth8", "oversample-e71",
          "--out", str(out), "--n-bootstrap", "500"])
    text = out.read_text()
    assert text.startswith("# `synth8` against `oversample-e71`")
    assert "python -m bench.compare_cells --cells" in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "+0.400 [" in rows["mel"] and "**helps**" in rows["mel"]
    assert "+0.000 [+0.000, +0.000]" in rows["df"] and "**no effect larger than 0.05**" in rows["df"]
    assert "vasc" not in rows and "akiec" not in rows  # no test images of theirs
    assert rows["balanced accuracy"].startswith("| balanced accuracy | +0.133 [")  # 0.4 / 3 classes
    assert "**helps**" in rows["balanced accuracy"]
    assert rows["0"].endswith("| 0.933 | 0.767 | +0.167 |") and rows["2"].endswith("| +0.100 |")
    assert "wrote" in "".join(capsys.readouterr())


def test_one_seed_gives_no_verdict(tmp_path: Path) -> None:
    out = tmp_path / "compare.md"
    main(["--cells", str(_write_cell(tmp_path / "a", 0, 9)), "--against", str(_write_cell(tmp_path / "b", 0, 1)),
          "--out", str(out)])
    mel = next(line for line in out.read_text().splitlines() if line.startswith("| mel |"))
    # the t-interval needs two seeds
    assert "| +0.800 |" in mel and "**undecided** (two seeds at least, to see their spread)" in mel


@pytest.mark.parametrize("df_against", [0, 5])
def test_target_needs_the_gain_in_two_minority_classes(tmp_path: Path, df_against: int) -> None:
    # mel +0.4 to +0.6 on every seed (helps); df +1.0 when the baseline misses every df, else +0.0
    cells = [_write_cell(tmp_path / "a" / f"s{s}", s, 8) for s in (0, 1, 2)]
    against = [_write_cell(tmp_path / "b" / f"s{s}", s, 2 + s, df_right=df_against, sampler="balanced")
               for s in (0, 1, 2)]
    out = tmp_path / "compare.md"
    main(["--cells", *map(str, cells), "--against", *map(str, against), "--names", "synth8", "oversample",
          "--n-bootstrap", "500", "--target", "--out", str(out)])
    target = " ".join(out.read_text().split("Target (issue 12): ")[1].split())
    assert target.startswith("`synth8` beats `oversample` by at least 5 recall points")
    if df_against == 0:
        assert "Classes with the gain: mel, df; balanced accuracy +0.500: **met**." in target
    else:
        assert "Classes with the gain: mel; balanced accuracy +0.167: **not met**." in target


@pytest.mark.parametrize("config", ["seed: 1\nsampler: shuffle\n", None])
def test_target_is_only_judged_against_oversampling_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          config: str | None) -> None:
    cells = [_write_cell(tmp_path / "a" / f"s{s}", s, 8) for s in (0, 1)]
    against = [_write_cell(tmp_path / "b" / f"s{s}", s, 2, sampler="balanced") for s in (0, 1)]
    if config is None:
        (against[1] / "config.yaml").unlink()  # an export without the cell's config
    else:
        (against[1] / "config.yaml").write_text(config)  # a real-only cell among them
    with pytest.raises(SystemExit):
        main(["--cells", *map(str, cells), "--against", *map(str, against), "--target"])
    err = " ".join("".join(capsys.readouterr()).split())
    assert f"{against[1] / 'config.yaml'}" in err and "against oversampling" in err
    assert ("sampler: shuffle, not balanced" if config else "cannot be read") in err


def test_no_target_line_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "compare.md"
    main(["--cells", str(_write_cell(tmp_path / "a", 0, 9)), "--against", str(_write_cell(tmp_path / "b", 0, 1)),
          "--out", str(out)])
    assert "Target" not in out.read_text()


@pytest.mark.parametrize("case", ["no-common-seed", "same-seed-twice", "other-test-images", "same-names"])
def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    a0, b0 = _write_cell(tmp_path / "a0", 0, 5), _write_cell(tmp_path / "b0", 0, 5)
    args = {"no-common-seed": ["--cells", str(a0), "--against", str(_write_cell(tmp_path / "b1", 1, 5))],
            "same-seed-twice": ["--cells", str(a0), str(_write_cell(tmp_path / "a0bis", 0, 5)), "--against", str(b0)],
            "other-test-images": ["--cells", str(a0), "--against", str(_write_cell(tmp_path / "x", 0, 5, 100))],
            "same-names": ["--cells", str(a0), "--against", str(b0), "--names", "real", "real"]}[case]
    expected = {"no-common-seed": "No seed in common: --cells has seeds [0], --against [1]",
                "same-seed-twice": "are both seed 0",
                "other-test-images": "were tested on different images",
                "same-names": "both sides are called 'real'"}[case]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert expected in " ".join("".join(capsys.readouterr()).split())


def test_a_folder_without_metrics_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty-cell"
    empty.mkdir()
    with pytest.raises(SystemExit):
        main(["--cells", str(empty), "--against", str(_write_cell(tmp_path / "b", 0, 5))])
    assert "empty-cell" in " ".join("".join(capsys.readouterr()).split())


# -- AUROC, from the probabilities --------------------------------------------------------------
SCORED_COUNTS = {"df": 17, "mel": 40, "nv": 300}


def _write_scored_cell(folder: Path, seed: int, df_shift: float, rng: np.random.Generator,
                       difficulty: np.ndarray) -> Path:
    """A cell with probabilities: df's probability is higher on df images by ``df_shift`` (plus this run's noise);
    every image has its own ``difficulty`` (N,), shared by all cells. Predictions are the most probable class."""
    true = np.repeat(np.array(list(SCORED_COUNTS)), list(SCORED_COUNTS.values()))  # (N,)
    logits = np.stack([difficulty * (c == "df") + (true == c) * (df_shift if c == "df" else 2.0)
                       + rng.normal(0, 1, true.size) for c in SCORED_COUNTS], axis=1)  # (N, C)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = np.array(list(SCORED_COUNTS))[probs.argmax(axis=1)]
    folder.mkdir(parents=True)
    with (folder / "predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "true", "predicted", *(f"prob_{c}" for c in SCORED_COUNTS)])
        writer.writerows([f"ISIC_{i:05d}", t, p, *(f"{v:.6f}" for v in row)]
                         for i, (t, p, row) in enumerate(zip(true, predicted, probs)))
    recall = {c: float((predicted[true == c] == c).mean()) for c in SCORED_COUNTS}
    (folder / "metrics.json").write_text(json.dumps({"balanced_accuracy": float(np.mean(list(recall.values()))),
                                                     "accuracy": 0.0, "per_class": {}, "seed": seed}))
    return folder


def _scored_sides(tmp_path: Path, shift_cells: float, shift_against: float) -> tuple[list[Path], list[Path]]:
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 1, sum(SCORED_COUNTS.values()))  # (N,)
    cells = [_write_scored_cell(tmp_path / "a" / f"s{s}", s, shift_cells, rng, difficulty) for s in range(4)]
    against = [_write_scored_cell(tmp_path / "b" / f"s{s}", s, shift_against, rng, difficulty) for s in range(4)]
    return cells, against


def _rows(text: str) -> dict[str, dict[str, str]]:
    lines = text.splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith("| class |"))
    header = [c.strip() for c in lines[first].split("|")[1:-1]]
    rows = {}
    for line in lines[first + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.split("|")[1:-1]]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def _auroc_of(folder: Path, klass: str) -> float:
    with (folder / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return rank_auroc(np.array([float(r[f"prob_{klass}"]) for r in rows]), np.array([r["true"] == klass for r in rows]))


@pytest.mark.parametrize("effect", [True, False])
def test_auroc_difference_is_found_where_constructed_and_not_elsewhere(tmp_path: Path, effect: bool) -> None:
    cells, against = _scored_sides(tmp_path, 3.0 if effect else 1.0, 1.0)
    out = tmp_path / "compare.md"
    main(["--cells", *map(str, cells), "--against", *map(str, against), "--n-bootstrap", "1000", "--out", str(out)])
    df = _rows(out.read_text())["df"]
    expected = np.mean([_auroc_of(a, "df") - _auroc_of(b, "df") for a, b in zip(cells, against)])
    assert float(df["Δ AUROC [CI]"].split()[0]) == pytest.approx(expected, abs=1e-3)
    if effect:
        assert df["AUROC verdict"] == "**helps**"
    else:
        assert float(df["Δ AUROC [CI]"].split("[")[1].split(",")[0]) < 0 < float(df["Δ AUROC [CI]"].split(", ")[1]
                                                                                .rstrip("]"))
        assert df["AUROC verdict"].startswith("**undecided** (") or df["AUROC verdict"].startswith("**no effect")
    assert "δ = 0.05 for recall, 0.02 for AUROC" in out.read_text()


def test_plan_out_writes_the_seeds_each_comparison_needs_and_plan_marks_them(tmp_path: Path) -> None:
    cells, against = _scored_sides(tmp_path, 1.5, 1.0)
    plan_path = tmp_path / "plans" / "plan.json"
    main(["--cells", *map(str, cells[:3]), "--against", *map(str, against[:3]), "--names", "synth8", "oversample",
          "--n-bootstrap", "500", "--plan-out", str(plan_path)])
    plan = read_plan(plan_path)
    assert plan.seeds == (0, 1, 2) and "bench.compare_cells" in plan.command
    keys = {c.key for c in plan.comparisons}
    assert ComparisonKey("auroc", "df", "synth8", "oversample") in keys
    assert ComparisonKey("balanced_accuracy", "", "synth8", "oversample") in keys
    assert all((c.seeds_needed is None) == (c.verdict != "undecided") for c in plan.comparisons)
    assert "| metric | class | arm | against |" in plan_path.with_suffix(".md").read_text()
    # the fourth seed's comparison, read against the plan made from three
    out = tmp_path / "compare.md"
    main(["--cells", *map(str, cells), "--against", *map(str, against), "--names", "synth8", "oversample",
          "--n-bootstrap", "500", "--plan", str(plan_path), "--out", str(out)])
    rows = _rows(out.read_text())
    assert rows["df"]["planned"] == "recall, AUROC" and rows["balanced accuracy"]["planned"] == "balanced accuracy"
    assert "registered in the seed plan made" in out.read_text()
    # other names: another comparison, not the planned one
    main(["--cells", *map(str, cells), "--against", *map(str, against), "--names", "synth2", "oversample",
          "--n-bootstrap", "200", "--plan", str(plan_path), "--out", str(out)])
    assert _rows(out.read_text())["df"]["planned"] == "no"


def test_a_grid_plan_of_one_fraction_marks_the_comparison_of_cells_of_that_fraction(tmp_path: Path) -> None:
    cells, against = _scored_sides(tmp_path, 1.5, 1.0)
    plan_path = tmp_path / "plan.json"
    main(["--cells", *map(str, cells[:3]), "--against", *map(str, against[:3]), "--names", "simclr", "random",
          "--n-bootstrap", "200", "--plan-out", str(plan_path)])
    # as bench.seed_plan writes a grid's comparisons: scoped to a fraction and an arm
    plan = json.loads(plan_path.read_text())
    for comparison in plan["comparisons"]:
        comparison["scope"] = "fraction 0.1, arm real"
    plan_path.write_text(json.dumps(plan))
    out = tmp_path / "compare.md"

    def planned_at(fraction: float | None) -> dict[str, dict[str, str]]:
        for folder in (*cells, *against):
            metrics = json.loads((folder / "metrics.json").read_text())
            metrics.pop("fraction", None)
            if fraction is not None:
                metrics["fraction"] = fraction
            (folder / "metrics.json").write_text(json.dumps(metrics))
        main(["--cells", *map(str, cells), "--against", *map(str, against), "--names", "simclr", "random",
              "--n-bootstrap", "200", "--plan", str(plan_path), "--out", str(out)])
        return _rows(out.read_text())

    rows = planned_at(0.1)
    assert rows["balanced accuracy"]["planned"] == "balanced accuracy" and rows["df"]["planned"] == "recall, AUROC"
    assert planned_at(0.01)["balanced accuracy"]["planned"] == "no"  # another fraction: not what was planned
    assert planned_at(None)["balanced accuracy"]["planned"] == "no"  # no fraction recorded: only scope "all" matches


def test_help_states_the_verdict_rule_and_delta(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "no effect larger than δ when both lie within ±δ (δ = 0.05 for recall, 0.02 for AUROC" in text
    assert "otherwise undecided" in text and "t(0.975, n - 1) × sd / √n" in text
