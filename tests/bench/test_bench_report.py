"""results.csv round trip and the report with its figures (bench.results, bench.report)."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.grid.keys import Cell
from bench.report.effects import ReportContext, StepTime
from bench.report.figures import FIGURES, INIT_FIGURE
from bench.report.run_sections import conditioning_verdict
from bench.report.tables import write_report
from bench.report.results import read_predictions, read_results, result_rows, write_results
from dermkit.errors import DermkitError
from dermkit.metrics import classification_report

CLASSES = ("df", "mel", "nv")
TEST_COUNTS = {"df": 30, "mel": 60, "nv": 90}


def _write_cell(folder: Path, cell: Cell, rng: np.random.Generator) -> dict:
    """predictions.csv for one constructed cell; returns its metrics (classification_report)."""
    true = [c for c, n in TEST_COUNTS.items() for _ in range(n)]
    ids = [f"ISIC_{i:05d}" for i in range(len(true))]
    # mel: recall 0.35 without synthetic images, 0.8 with; df and nv: identical either way. df: recall
    # 0.8 from SimCLR, 0.5 from random init, on the same draws (so SimCLR is right wherever random is).
    p_right = {"mel": 0.8 if cell.synthetic else 0.35, "df": 0.8 if cell.init == "simclr" else 0.5, "nv": 0.9}
    same = np.random.default_rng(cell.seed * 100 + int(cell.fraction * 10))  # shared by the pair
    predicted = []
    for klass in true:
        r_pair, r_own = same.random(), rng.random()
        right = (r_own if klass == "mel" else r_pair) < p_right[klass]
        predicted.append(klass if right else "nv" if klass != "nv" else "df")
    folder.mkdir(parents=True)
    with (folder / "predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "true", "predicted", *(f"prob_{c}" for c in CLASSES)])
        for i in reversed(range(len(ids))):  # unsorted on purpose: the reader sorts
            writer.writerow([ids[i], true[i], predicted[i], *(float(predicted[i] == c) for c in CLASSES)])
    probs = torch.tensor([[float(p == c) for c in CLASSES] for p in predicted])
    targets = torch.tensor([CLASSES.index(t) for t in true])
    return classification_report(probs, targets, CLASSES)


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """24 constructed cells (2 fractions x 2 inits x synthetic off/on x 3 seeds), built once."""
    tmp_path = tmp_path_factory.mktemp("grid")
    rng = np.random.default_rng(0)
    rows = []
    for fraction in (0.1, 1.0):
        for init in ("random", "simclr"):
            for synthetic in (False, True):
                for seed in (0, 1, 2):
                    cell = Cell(fraction, init, synthetic, seed)
                    metrics = _write_cell(tmp_path / "cells" / cell.cell_id, cell, rng)
                    rows += result_rows(cell, metrics)
    write_results(tmp_path / "results.csv", rows)
    return tmp_path, rows


def markdown_table(text: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the first markdown table whose header line starts with ``header_start``, by column name."""
    lines = text.splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    header = [c.strip() for c in lines[first].split("|")[1:-1]]
    rows = []
    for line in lines[first + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.split("|")[1:-1]))))
    return rows


def _context(name: str = "demo") -> ReportContext:
    return ReportContext(preset="test", about="constructed", command="python -m bench.label_efficiency --preset test",
                         data={"name": name, "root": "/data", "images": 1200, "image_size": 32, "split_seed": 0,
                               "split_hash": "abc"},
                         test_counts=TEST_COUNTS, minority_classes=["mel", "df"], caveats=["a stated caveat"],
                         timings={"cell/x": StepTime(2.0, 1.5), "pretrain/simclr": StepTime(5.0, 9.0)}, n_bootstrap=1000)


def test_results_csv_round_trip(grid_dir: tuple[Path, list[dict]]) -> None:
    root, rows = grid_dir
    back = read_results(root / "results.csv")
    assert len(back) == len(rows) == 24 * len(CLASSES)
    first = back[0]
    assert first["cell_id"] == "f0.1-random-real-s0" and first["synthetic"] is False and first["seed"] == 0
    assert first["support"] == TEST_COUNTS[first["class"]]
    assert first["recall"] == pytest.approx(rows[0]["recall"])
    with pytest.raises(DermkitError, match="does not exist"):
        read_results(root / "missing.csv")


def test_report_writes_figures_and_verdicts(grid_dir: tuple[Path, list[dict]]) -> None:
    root, _ = grid_dir
    rows = read_results(root / "results.csv")
    path = write_report(root, rows, lambda cell_id: read_predictions(root / "cells" / cell_id), _context())
    text = path.read_text()
    for figure in FIGURES.values():
        with Image.open(root / "figures" / figure) as image:
            assert image.size[0] > 200 and image.size[1] > 100
        assert f"figures/{figure}" in text
    assert "DEMO DATA, NEVER EVIDENCE" in text and "a stated caveat" in text
    assert "Student-t interval" in text and "percentile bootstrap" in text
    assert "Seeds: 0, 1, 2" in text and "--preset test" in text
    pooled = {row["class"]: row for row in markdown_table(text, "| class | name |")}
    assert {c: row["recall verdict"] for c, row in pooled.items()} == {"mel": "**helps**",
                                                                       "df": "**no effect larger than 0.05**"}
    # the predictions' probabilities give each class's paired AUROC difference beside its recall
    assert pooled["mel"]["Δ AUROC [CI]"].startswith("+") and pooled["df"]["Δ AUROC [CI]"] == "+0.000 [+0.000, +0.000]"
    assert "δ = 0.05 for recall, 0.02 for AUROC" in text


def test_running_time_says_which_steps_lost_the_time_of_an_attempt(grid_dir: tuple[Path, list[dict]]) -> None:
    root, _ = grid_dir
    rows = read_results(root / "results.csv")
    context = _context()
    text = write_report(root, rows, lambda c: read_predictions(root / "cells" / c), context).read_text()
    assert "lower bounds" not in text
    lost = dataclasses.replace(context, untimed_attempts={"cell/x": 1})
    text = write_report(root, rows, lambda c: read_predictions(root / "cells" / c), lost).read_text()
    assert "totals below are lower bounds: cell/x (1)" in text


def test_report_compares_each_initialisation_with_random(grid_dir: tuple[Path, list[dict]]) -> None:
    root, _ = grid_dir
    rows = read_results(root / "results.csv")
    text = write_report(root, rows, lambda c: read_predictions(root / "cells" / c), _context()).read_text()
    assert f"figures/{INIT_FIGURE}" in text and (root / "figures" / INIT_FIGURE).is_file()
    section = text.split("## Does pretraining help?")[1].split("\n## ")[0]
    table = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| simclr")]
    assert len(table) == 4  # fractions 0.1 and 1, synthetic off and on
    for init, synthetic, fraction, delta, per_seed, over, images, verdict in (map(str.strip, r) for r in table):
        ba = {i: [r["balanced_accuracy"] for r in rows if r["class"] == "df" and r["init"] == i
                  and r["fraction"] == float(fraction) and r["synthetic"] == (synthetic == "on")] for i in
              ("random", "simclr")}
        expected = [s - r for s, r in zip(ba["simclr"], ba["random"])]
        # the paired estimate is the mean difference of the cells' balanced accuracies, seed by seed
        assert float(delta.split()[0]) == pytest.approx(np.mean(expected), abs=1e-3)
        assert [d.split()[0] for d in per_seed.split(", ")] == ["s0", "s1", "s2"]
        assert [float(d.split()[1]) for d in per_seed.split(", ")] == pytest.approx(expected, abs=1e-3)
        assert images == str(sum(TEST_COUNTS.values()))
        # SimCLR is constructed to be better on df: the bootstrap says so everywhere; the verdict also
        # needs the t-interval over the 3 seeds above 0
        assert float(delta.split("[")[1].split(",")[0]) > 0
        assert verdict == "**helps**" if float(over.split("[")[1].split(",")[0]) > 0 else \
            verdict.startswith("**undecided** (") and "seeds to " in verdict
    assert "**helps**" in {r[-1].strip() for r in table}


def _init_rows(text: str) -> list[list[str]]:
    heading = "## Does pretraining help?"
    section = text.split(heading)[1].split("\n## ")[0] if heading in text else ""
    return [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines() if line.startswith("| simclr")]


def test_init_comparison_pairs_only_the_seeds_both_have_and_needs_two_for_a_verdict(
        grid_dir: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, _ = grid_dir
    rows = [r for r in read_results(root / "results.csv") if not r["synthetic"]]
    load = lambda c: read_predictions(root / "cells" / c)  # noqa: E731
    no_seed1 = [r for r in rows if not (r["init"] == "simclr" and r["seed"] == 1)]
    table = _init_rows(write_report(tmp_path, no_seed1, load, _context()).read_text())
    assert [r[3].split(", ")[0].split()[0] for r in table] == ["s0", "s0"]
    assert all([d.split()[0] for d in r[3].split(", ")] == ["s0", "s2"] for r in table)
    one_seed = [r for r in rows if r["seed"] == 0]
    table = _init_rows(write_report(tmp_path / "one", one_seed, load, _context()).read_text())
    # one seed: no t-interval, so no verdict however narrow the bootstrap over images is
    assert table and all(r[-1] == "**undecided** (two seeds at least, to see their spread)" and "[" not in r[4]
                         for r in table)
    random_only = [r for r in rows if r["init"] == "random"]
    text = write_report(tmp_path / "random", random_only, load, _context()).read_text()
    assert "Does pretraining help?" not in text and not (tmp_path / "random" / "figures" / INIT_FIGURE).exists()


def test_a_grid_of_real_images_only_says_nothing_about_synthetic_images(grid_dir: tuple[Path, list[dict]],
                                                                         tmp_path: Path) -> None:
    root, _ = grid_dir
    rows = [r for r in read_results(root / "results.csv") if not r["synthetic"]]
    text = write_report(tmp_path, rows, lambda c: read_predictions(root / "cells" / c), _context()).read_text()
    assert "## Minority-class recall\n" in text and "with and without synthetic images" not in text
    assert "## Do synthetic images help" not in text and "No paired cells" not in text
    full = write_report(tmp_path / "all", read_results(root / "results.csv"),
                        lambda c: read_predictions(root / "cells" / c), _context()).read_text()
    assert "## Minority-class recall with and without synthetic images" in full
    assert "## Do synthetic images help the minority classes?" in full


def test_report_on_real_data_has_no_demo_banner(grid_dir: tuple[Path, list[dict]]) -> None:
    root, _ = grid_dir
    rows = read_results(root / "results.csv")
    text = write_report(root, rows, lambda c: read_predictions(root / "cells" / c), _context("ham10000")).read_text()
    assert "NEVER EVIDENCE" not in text


def test_report_refuses_pairs_tested_on_different_images(grid_dir: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root = tmp_path / "grid"
    shutil.copytree(grid_dir[0], root)
    rows = read_results(root / "results.csv")
    victim = root / "cells" / "f1-simclr-synth-s2" / "predictions.csv"
    lines = victim.read_text().splitlines()
    victim.write_text("\n".join(lines[:-1]) + "\n")  # one test image fewer
    with pytest.raises(DermkitError, match="different images"):
        write_report(root, rows, lambda c: read_predictions(root / "cells" / c), _context())


@pytest.mark.parametrize(("own", "held_out", "verdict"), [
    (1, 3, "yes: own class first"),
    (2, 3, "as held-out real: rank 2, held-out 3"),
    (3, 3, "as held-out real: rank 3, held-out 3"),
    (3, 1, "no: rank 3, held-out real 1"),
    (2, None, "no: rank 2"),
])
def test_conditioning_shows_when_a_class_ranks_first_or_as_well_as_held_out_real_images(
        own: int, held_out: int | None, verdict: str) -> None:
    metrics = {"own_rank_kid": own, **({"held_out_real": {"own_rank_kid": held_out}} if held_out else {})}
    assert conditioning_verdict(metrics).startswith(verdict)


def test_results_csv_carries_each_class_auroc_and_reads_an_older_file_without_it(grid_dir: tuple[Path, list[dict]],
                                                                                   tmp_path: Path) -> None:
    root, rows = grid_dir
    back = read_results(root / "results.csv")
    assert [r["auroc"] for r in back] == pytest.approx([r["auroc"] for r in rows])
    assert all(0 <= r["auroc"] <= 1 for r in back)
    older = tmp_path / "results.csv"  # written before the auroc column
    with (root / "results.csv").open() as source, older.open("w", newline="") as target:
        reader = csv.DictReader(source)
        writer = csv.DictWriter(target, [c for c in reader.fieldnames or [] if c != "auroc"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(reader)
    old_rows = read_results(older)
    assert all(np.isnan(r["auroc"]) for r in old_rows)
    text = write_report(tmp_path, old_rows, lambda c: read_predictions(root / "cells" / c), _context()).read_text()
    assert "One-vs-rest AUROC of the same classes" not in text  # no AUROC table from a file without it
    full = write_report(tmp_path / "new", back, lambda c: read_predictions(root / "cells" / c), _context()).read_text()
    auroc_table = full.split("One-vs-rest AUROC of the same classes")[1]
    mel_on = [r["auroc"] for r in rows if r["class"] == "mel" and r["synthetic"] and r["init"] == "random"
              and r["fraction"] == 0.1]
    assert f"| mel | random | on | {np.mean(mel_on):.3f} [" in auroc_table


def test_report_marks_the_comparisons_a_seed_plan_registered(grid_dir: tuple[Path, list[dict]],
                                                             tmp_path: Path) -> None:
    from bench.report.comparison_plan import read_plan
    from bench.report.seed_plan import main as seed_plan

    root, _ = grid_dir
    plan_path = tmp_path / "plan.json"
    seed_plan(["--grid", str(root), "--minority", "mel", "df", "--classes", "mel", "--metrics", "recall",
               "--n-bootstrap", "200", "--out", str(plan_path)])
    plan = read_plan(plan_path)
    assert [(c.key.metric, c.key.klass, c.key.arm, c.key.against) for c in plan.comparisons] == \
        [("recall", "mel", "synth", "real")]
    context = dataclasses.replace(_context(), plan=plan, plan_path="plans/plan.json")
    rows = read_results(root / "results.csv")
    text = write_report(tmp_path, rows, lambda c: read_predictions(root / "cells" / c), context).read_text()
    pooled = {row["class"]: row for row in markdown_table(text, "| class | name |")}
    assert pooled["mel"]["planned"] == "recall" and pooled["df"]["planned"] == "no"
    section = text.split("## Planned comparisons")[1].split("\n## ")[0]
    assert "Seed plan `plans/plan.json`" in section and "Decided now: 1 of 1." in section
    assert "| recall | mel | synth | real | all | helps |" in section
    # without a plan: no planned column, no section
    plain = write_report(tmp_path / "plain", rows, lambda c: read_predictions(root / "cells" / c),
                         _context()).read_text()
    assert "## Planned comparisons" not in plain and "planned" not in markdown_table(plain, "| class | name |")[0]


def test_cell_keys_are_named_and_behave_as_their_tuples() -> None:
    """The report's cells are named records (issue 43) that sort, compare and hash as the tuples they replaced,
    so a lookup by a plain ``(fraction, init, arm, seed)`` still finds the cell."""
    from bench.report.effects import CellKey, SettingKey, cell_table, seed_summary

    rows = [{"fraction": f, "init": "random", "arm": arm, "synthetic": arm == "synth", "seed": s, "cell_id": f"c{f}{arm}{s}",
             "balanced_accuracy": 0.5 + s / 10, "accuracy": 0.5, "class": "mel", "recall": 0.5}
            for f in (1.0, 0.1) for arm in ("synth", "real") for s in (1, 0)]
    cells = cell_table(rows)
    keys = list(cells)
    assert all(isinstance(k, CellKey) for k in keys)
    assert sorted(keys) == sorted(tuple(k) for k in keys) == sorted(keys, key=lambda k: (k.fraction, k.init, k.arm,
                                                                                           k.seed))
    assert sorted(keys)[0] == (0.1, "random", "real", 0) and sorted(keys)[0].arm == "real"
    assert cells[(1.0, "random", "synth", 1)]["cell_id"] == "c1.0synth1"
    summary = seed_summary(cells, lambda e: e["balanced_accuracy"], 0.95)
    assert set(summary) == {SettingKey(f, "random", a) for f in (1.0, 0.1) for a in ("synth", "real")}
    assert summary[(0.1, "random", "real")].estimate == pytest.approx(0.55)
