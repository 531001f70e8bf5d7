"""The grid's arms (issue 12): real, oversample, oversample<R>, synth<R> and filtered cells, the filter step, and the
report's comparison of synthetic images against oversampling. No stage is run (plans, keys and a
hand-made results table), except the slow dry run of the synth-compare preset."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.grid.config import parse_arm
from bench.grid.keys import DONE_FILE, Cell, Step, best_checkpoint, is_done, mark_done
from bench.grid.plan import build_steps
from bench.grid.presets import parse_args, validate
from bench.grid.reuse import reuse_cells
from bench.report.effects import ReportContext, arm_effects, cell_table
from bench.report.tables import write_report
from bench.report.results import read_predictions, read_results, result_rows, write_results
from bench.report.verdicts import verdict
from dermkit.config import REPO_ROOT
from dermkit.errors import DermkitError

ARMS = ["real", "oversample", "oversample2", "synth0.5", "synth2", "filtered"]
DATA = {"name": "demo", "split_hash": "abc"}


def _cfg(*overrides: str) -> object:
    return parse_args(["--preset", "demo", *overrides])


def _plan(tmp_path: Path, *overrides: str) -> dict[str, Step]:
    cfg = _cfg("grid.fractions=[0.1,1.0]", "grid.inits=[random]", "grid.synthetic=[]",
               f"grid.arms=[{','.join(ARMS)}]", "grid.seeds=[0,1]", "synth.match_fraction=true", *overrides)
    validate(cfg)
    steps = build_steps(cfg, tmp_path)
    names = [s.name for s in steps]
    assert len(set(names)) == len(names)
    for position, step in enumerate(steps):  # every input is planned before the step reading it
        assert all(names.index(i.name) < position for i in step.inputs), step.name
    return {s.name: s for s in steps}


def test_reuse_leaves_a_real_cell_whose_checkpoint_a_filter_reads(tmp_path: Path) -> None:
    # Exported cells carry no checkpoints: a real cell taken back could not feed its filter step.
    steps = _plan(tmp_path / "out")
    exported = tmp_path / "exported"
    for name in ("cell/f0.1-random-real-s0", "cell/f0.1-random-oversample-s0"):
        step = steps[name]
        copy = Step(step.name, step.kind, step.module, step.args, exported / "cells" / step.cell.cell_id,
                    step.outputs, step.inputs, step.cell)
        copy.out_dir.mkdir(parents=True)
        for output in step.outputs:
            (copy.out_dir / output).write_text(f"{output} of {name}")
        mark_done(copy, step.key(tmp_path / "out", DATA), 1.0)
    taken = reuse_cells(list(steps.values()), exported, tmp_path / "out", DATA)
    assert taken == ["cell/f0.1-random-oversample-s0"]
    assert (steps["cell/f0.1-random-oversample-s0"].out_dir / DONE_FILE).is_file()
    assert not steps["cell/f0.1-random-real-s0"].out_dir.exists()


def test_reuse_takes_a_real_cell_with_its_checkpoint_from_a_run_folder(tmp_path: Path) -> None:
    # Another grid's run folder keeps the checkpoints: the real cell and the file its filter reads come along.
    steps = _plan(tmp_path / "out")
    step = steps["cell/f1-random-real-s1"]
    source = tmp_path / "other-grid" / "cells" / step.cell.cell_id
    copy = dataclasses.replace(step, out_dir=source)
    source.mkdir(parents=True)
    for output in step.outputs:
        (source / output).write_text(f"{output} of the other grid")
    (source / "metrics.json").write_text(json.dumps({"best_checkpoint": "/moved/checkpoints/best-epoch07.ckpt"}))
    (source / "checkpoints").mkdir()
    (source / "checkpoints" / "best-epoch07.ckpt").write_bytes(b"weights")
    mark_done(copy, step.key(tmp_path / "out", DATA), 1.0)
    assert reuse_cells(list(steps.values()), tmp_path / "other-grid", tmp_path / "out", DATA) == [step.name]
    assert best_checkpoint(step.out_dir).read_bytes() == b"weights"
    assert is_done(step, step.key(tmp_path / "out", DATA))


def test_reuse_says_a_cell_under_way_in_the_source_is_not_finished(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Another grid still training a cell: its folder has a checkpoint but no done.json yet.
    steps = _plan(tmp_path / "out")
    under_way = tmp_path / "other-grid" / "cells" / "f1-random-real-s0"
    (under_way / "checkpoints").mkdir(parents=True)
    (under_way / "checkpoints" / "last.ckpt").write_bytes(b"state")
    assert reuse_cells(list(steps.values()), tmp_path / "other-grid", tmp_path / "out", DATA) == []
    err = " ".join(capsys.readouterr().err.split())
    assert "1: not finished there" in err and "other settings" not in err
    assert not steps["cell/f1-random-real-s0"].out_dir.exists()


def test_arms_plan_a_keyed_cell_each_and_one_filter_per_real_cell(tmp_path: Path) -> None:
    steps = _plan(tmp_path)
    cells = [s for s in steps.values() if s.kind == "cell"]
    assert sorted(s.cell.cell_id for s in cells) == sorted(
        f"f{f:g}-random-{a}-s{s}" for f in (0.1, 1.0) for a in ARMS for s in (0, 1))
    assert [s.name for s in steps.values() if s.kind == "synth-generate"] == ["synth-generate/f0.1",
                                                                            "synth-generate/f1"]
    assert sorted(s.name for s in steps.values() if s.kind == "synth-filter") == [
        f"synth-filter/f{f:g}-random-s{s}" for f in (0.1, 1.0) for s in (0, 1)]

    real = steps["cell/f0.1-random-real-s1"]
    assert real.inputs == [] and not any(a.startswith(("sampler=", "synth.")) for a in real.args)

    oversample = steps["cell/f0.1-random-oversample-s1"]
    assert "sampler=balanced" in oversample.args and oversample.inputs == []
    # the sampler replaces the loss's class weights, after any override that sets them
    assert oversample.args[-3:-1] == ["sampler=balanced", "loss.weighting=none"]
    assert not any(a.startswith("synth.") for a in oversample.args)  # no manifest, no ratio

    # oversample2: oversampling for as many steps as synth2, whose images it counts and does not train on.
    equal_steps = steps["cell/f0.1-random-oversample2-s1"]
    assert equal_steps.args[-6:-1] == ["sampler=balanced", "loss.weighting=none",
                                       f"synth.manifest={steps['synth-generate/f0.1'].out_dir / 'manifest.csv'}",
                                       "synth.max_ratio=2", "synth.steps_only=true"]
    assert [i.name for i in equal_steps.inputs] == ["synth-generate/f0.1"] and not equal_steps.cell.synthetic

    synth = steps["cell/f0.1-random-synth2-s1"]
    generate = steps["synth-generate/f0.1"]
    assert f"synth.manifest={generate.out_dir / 'manifest.csv'}" in synth.args
    assert "synth.max_ratio=2" in synth.args and [i.name for i in synth.inputs] == ["synth-generate/f0.1"]
    assert "synth.max_ratio=0.5" in steps["cell/f1-random-synth0.5-s0"].args
    assert not any(a.startswith("sampler=") for a in synth.args)

    # The filter reads the real cell of the same fraction and seed and that fraction's generator.
    filt = steps["synth-filter/f0.1-random-s1"]
    assert filt.module == "finetune.filter_synthetic"
    assert [i.name for i in filt.inputs] == ["cell/f0.1-random-real-s1", "synth-generate/f0.1"]
    args = dict(zip(filt.args[::2], filt.args[1::2]))
    assert args["--checkpoint"] == "<best checkpoint of cell/f0.1-random-real-s1>"
    assert args["--manifest"] == str(generate.out_dir / "manifest.csv")
    assert args["--min-prob"] == "0.5" and args["--out"] == str(filt.out_dir)
    filtered = steps["cell/f0.1-random-filtered-s1"]
    assert filtered.inputs == [filt]
    assert f"synth.manifest={filt.out_dir / 'manifest.csv'}" in filtered.args
    assert not any(a.startswith("synth.max_ratio") for a in filtered.args)  # plain `filtered`: the stage's ratio
    # The generator of a fraction reads only that fraction's labels.
    assert "data.fraction=0.1" in steps["synth-train/f0.1"].args
    # Each generation is judged once by synth.evaluate, which no cell reads.
    evaluate = steps["synth-evaluate/f0.1"]
    assert evaluate.module == "synth.evaluate" and evaluate.inputs == [generate]
    assert evaluate.args[:2] == ["--synthetic", str(generate.out_dir)]
    assert "backbone=tiny_cnn" in evaluate.args and "small_stem=True" in evaluate.args  # the grid's random-init model
    assert not any(evaluate in s.inputs for s in steps.values())


def test_generator_evaluation_is_keyed_by_its_feature_space_file(tmp_path: Path) -> None:
    weights = tmp_path / "backbone.safetensors"
    weights.write_bytes(b"weights one")
    weights.with_suffix(".json").write_text("{}")
    moved = tmp_path / "elsewhere" / "backbone.safetensors"
    moved.parent.mkdir()
    moved.write_bytes(b"weights one")
    moved.with_suffix(".json").write_text("{}")

    def evaluation(path: Path) -> Step:
        return _plan(tmp_path / "out", f"synth.evaluate_weights={path}")["synth-evaluate/f1"]

    first = evaluation(weights)
    assert f"weights={weights}" in first.args and not any(a.startswith("backbone=") for a in first.args)
    generate = first.inputs[0]
    generate.out_dir.mkdir(parents=True)
    for output in generate.outputs:
        (generate.out_dir / output).write_text(output)
    mark_done(generate, "k", 1.0)
    key = first.key(tmp_path / "out", DATA)
    assert evaluation(moved).key(tmp_path / "out", DATA) == key  # the same file elsewhere: the same step
    weights.write_bytes(b"weights two")
    assert evaluation(weights).key(tmp_path / "out", DATA) != key  # another feature space: judged again
    with pytest.raises(DermkitError, match="synth.evaluate_weights: .*missing.safetensors"):
        validate(_cfg(f"synth.evaluate_weights={tmp_path / 'missing.safetensors'}"))


def test_synth_ratio_generates_what_the_largest_arm_can_use(tmp_path: Path) -> None:
    def count_args(*overrides: str) -> dict[str, str]:
        args = _plan(tmp_path, "synth.n_per_class=300", *overrides)["synth-generate/f0.1"].args
        return {flag: args[args.index(flag) + 1] for flag in ("--n", "--ratio") if flag in args}

    assert count_args() == {"--n": "300"}  # unchanged without synth.ratio: the older runs keep their keys
    assert count_args("synth.ratio=2") == {"--ratio": "2", "--n": "300"}
    with pytest.raises(DermkitError, match="synth.ratio must be >= 0"):
        validate(_cfg("synth.ratio=-1"))


def test_filter_step_resolves_and_is_keyed_by_the_real_cells_checkpoint(tmp_path: Path) -> None:
    steps = _plan(tmp_path / "out")
    filt, real, generate = (steps["synth-filter/f1-random-s0"], steps["cell/f1-random-real-s0"],
                            steps["synth-generate/f1"])
    for step in (real, generate):  # finish both inputs by hand
        step.out_dir.mkdir(parents=True)
        for name in step.outputs:
            (step.out_dir / name).write_text(f"{name} v1")
    (real.out_dir / "metrics.json").write_text(json.dumps({"best_checkpoint": "/elsewhere/checkpoints/best-epoch03.ckpt"}))
    for step in (real, generate):
        mark_done(step, "k", 1.0)
    key = filt.key(tmp_path / "out", DATA)
    launched = filt.launch_args()
    # The checkpoint is looked up in the real cell's own folder by name (a moved folder still resolves).
    assert launched[launched.index("--checkpoint") + 1] == str(real.out_dir / "checkpoints" / "best-epoch03.ckpt")
    assert filt.command("python")[:3] == ["python", "-m", "finetune.filter_synthetic"]

    (real.out_dir / "metrics.json").write_text(json.dumps({"best_checkpoint": None}))  # tested its last weights
    mark_done(real, "k", 1.0)
    assert best_checkpoint(real.out_dir) == real.out_dir / "checkpoints" / "last.ckpt"
    assert filt.key(tmp_path / "out", DATA) != key  # a re-run real cell re-runs the filter


def test_older_synthetic_axis_is_the_real_and_synth_arms(tmp_path: Path) -> None:
    old = build_steps(_cfg("grid.synthetic=[false,true]"), tmp_path)
    new = build_steps(_cfg("grid.synthetic=[]", "grid.arms=[real,synth]"), tmp_path)
    assert [(s.name, s.args, s.out_dir) for s in old] == [(s.name, s.args, s.out_dir) for s in new]
    assert {s.cell.cell_id.split("-")[2] for s in old if s.cell} == {"real", "synth"}
    assert Cell(1.0, "random", False, 0, "oversample").as_dict()["arm"] == "oversample"
    with pytest.raises(ValueError, match="contradicts"):
        Cell(1.0, "random", True, 0, "oversample")


@pytest.mark.parametrize(("overrides", "message"), [
    (("grid.arms=[real,synth2]",), "grid.arms or grid.synthetic, not both"),
    (("grid.synthetic=[]", "grid.arms=[real,sinth2]"), "unknown arm 'sinth2'"),
    (("grid.synthetic=[]", "grid.arms=[real2,oversample]"), "a ratio only goes with oversample, synth or filtered"),
    (("grid.synthetic=[]", "grid.arms=[real,oversample8,synth2]"), "holds oversample8 but not synth8"),
    (("grid.synthetic=[]", "grid.arms=[oversample,filtered]"), "filtered arm but not real"),
    (("grid.synthetic=[]", "grid.arms=[real,oversample]", "finetune.overrides=[sampler=balanced]"),
     "grid.arms sets per arm"),
    (("grid.synthetic=[]", "grid.arms=[real,real]"), "repeats a value"),
])
def test_bad_arms_are_refused(overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(DermkitError, match=message):
        validate(_cfg(*overrides))


def test_arm_spellings() -> None:
    assert parse_arm("synth8").max_ratio == 8.0 and parse_arm("synth8").synthetic
    assert parse_arm("filtered2").filtered and parse_arm("filtered2").max_ratio == 2.0
    assert parse_arm("oversample").sampler == "balanced" and not parse_arm("oversample").synthetic
    assert parse_arm("synth").max_ratio is None and parse_arm("real") == parse_arm("real")
    equal_steps = parse_arm("oversample8")
    assert equal_steps.sampler == "balanced" and equal_steps.steps_only and equal_steps.max_ratio == 8.0
    assert not equal_steps.synthetic and equal_steps.reads_manifest and equal_steps.steps_of == "synth8"
    assert parse_arm("oversample").steps_of is None and not parse_arm("oversample").reads_manifest


def test_each_synthetic_arm_is_compared_with_oversampling_for_as_many_steps_when_present() -> None:
    from bench.grid.config import arm_baselines

    present = ["real", "oversample", "oversample8", "synth2", "synth8", "filtered8"]
    assert arm_baselines("synth8", present) == ["real", "oversample", "oversample8"]
    assert arm_baselines("synth2", present) == ["real", "oversample"]  # oversample8 matches synth8's steps
    assert arm_baselines("filtered8", present) == ["real", "oversample"]  # fewer images than synth8
    assert arm_baselines("synth8", ["synth8", "oversample8"]) == ["oversample8"]


# -- the report section on a hand-made results table ----------------------------------------------
CLASSES = ("df", "mel", "nv")
COUNTS = {"df": 20, "mel": 30, "nv": 50}
# Probability of a right answer per arm and class: synth2 helps mel and costs nv.
P_RIGHT = {"real": {"df": 0.5, "mel": 0.3, "nv": 0.9}, "oversample": {"df": 0.6, "mel": 0.5, "nv": 0.8},
           "synth2": {"df": 0.6, "mel": 0.8, "nv": 0.6}, "filtered": {"df": 0.5, "mel": 0.5, "nv": 0.9},
           "oversample2": {"df": 0.6, "mel": 0.6, "nv": 0.8}}  # as many steps as synth2


def _correct(fraction: float, arm: str, seed: int) -> np.ndarray:
    """(100,) whether each test image (df, then mel, then nv) is right in this cell."""
    rng = np.random.default_rng([int(fraction * 10), list(P_RIGHT).index(arm), seed])
    p = np.concatenate([np.full(n, P_RIGHT[arm][c]) for c, n in COUNTS.items()])
    return rng.random(p.size) < p


@pytest.fixture(scope="module")
def arm_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """24 hand-made cells: fractions 0.1 and 1 x four arms x 3 seeds, with predictions.csv."""
    root = tmp_path_factory.mktemp("arms")
    true = [c for c, n in COUNTS.items() for _ in range(n)]
    rows = []
    for fraction in (0.1, 1.0):
        for arm in P_RIGHT:
            for seed in (0, 1, 2):
                cell = Cell(fraction, "random", parse_arm(arm).synthetic, seed, arm)
                right = _correct(fraction, arm, seed)
                predicted = [t if ok else ("df" if t == "nv" else "nv") for t, ok in zip(true, right)]
                folder = root / "cells" / cell.cell_id
                folder.mkdir(parents=True)
                with (folder / "predictions.csv").open("w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(["image_id", "true", "predicted"])
                    writer.writerows([f"ISIC_{i:04d}", t, p] for i, (t, p) in enumerate(zip(true, predicted)))
                offsets = np.cumsum([0, *COUNTS.values()])
                recall = {c: float(right[offsets[k]:offsets[k + 1]].mean()) for k, c in enumerate(COUNTS)}
                metrics = {"balanced_accuracy": float(np.mean(list(recall.values()))), "accuracy": float(right.mean()),
                           "per_class": {c: {"recall": r, "support": COUNTS[c]} for c, r in recall.items()}}
                rows += result_rows(cell, metrics)
    write_results(root / "results.csv", rows)
    return root, rows


def _ctx() -> ReportContext:
    # What the seed-0 cells trained on (metrics.json "counts"): synth2 at fraction 1 is capped for mel.
    counts = {f"f{f:g}-random-{a}-s0": {"real": {"df": 8, "mel": 40, "nv": 300},
                                        "synthetic": {"df": 16 if a == "synth2" else 0,
                                                      "mel": 50 if a == "synth2" else 0, "nv": 0}}
              for f in (0.1, 1.0) for a in P_RIGHT}
    return ReportContext(preset="synth-compare-test", about="hand-made", command="test", test_counts=COUNTS,
                         data={"name": "ham10000", "root": "/data", "images": 100, "image_size": 64, "split_seed": 0,
                               "split_hash": "abc"}, minority_classes=["mel", "df"], n_bootstrap=1000,
                         train_counts=counts,
                         filter_acceptance={"f0.1-random-s0": {"mel": {"scored": 60, "kept": 21, "rate": 0.35}}})


def test_arm_effects_are_the_direct_paired_differences(arm_grid: tuple[Path, list[dict]]) -> None:
    root, _ = arm_grid
    rows = read_results(root / "results.csv")
    assert {r["arm"] for r in rows} == set(P_RIGHT)  # the arm column round-trips
    cells = cell_table(rows)
    effects = arm_effects(cells, lambda cell_id: read_predictions(root / "cells" / cell_id), ["mel", "df", "nv"], _ctx())
    found = {(e.klass, e.arm, e.baseline, e.scope): e for e in effects}
    assert {(a, b) for (_, a, b, _) in found} == {(a, b) for a in ("synth2", "filtered") for b in ("real", "oversample")
                                                  } | {("synth2", "oversample2")}  # only synth2 has as many steps
    offsets = {"df": slice(0, 20), "mel": slice(20, 50), "nv": slice(50, 100)}
    for klass in ("mel", "df", "nv"):
        for arm in ("synth2", "filtered"):
            for baseline in ("real", "oversample"):
                direct = np.mean([(_correct(f, arm, s).astype(float) - _correct(f, baseline, s))[offsets[klass]]
                                  for f in (0.1, 1.0) for s in (0, 1, 2)])
                pooled = found[(klass, arm, baseline, "all")]
                assert pooled.interval.estimate == pytest.approx(direct)
                assert pooled.interval.low <= direct <= pooled.interval.high
                assert (pooled.pairs, pooled.seeds, pooled.images) == (6, 3, COUNTS[klass])
                one = np.mean([(_correct(1.0, arm, s).astype(float) - _correct(1.0, baseline, s))[offsets[klass]]
                               for s in (0, 1, 2)])
                assert found[(klass, arm, baseline, "fraction 1")].interval.estimate == pytest.approx(one)
    assert verdict(found[("mel", "synth2", "real", "all")].interval) == "helps"
    assert verdict(found[("nv", "synth2", "oversample", "all")].interval) == "hurts"  # paid for by nevus


def test_report_section_names_every_arm_and_its_numbers(arm_grid: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, rows = arm_grid
    for name in ("cells", "results.csv"):
        target = tmp_path / name
        target.symlink_to(root / name)
    report = write_report(tmp_path, read_results(tmp_path / "results.csv"),
                          lambda cell_id: read_predictions(root / "cells" / cell_id), _ctx()).read_text()
    section = report.split("## Synthetic images against oversampling", 1)[1].split("\n## ", 1)[0]
    assert "## Do synthetic images help" not in report  # the on/off section is for grids of real and synth only
    assert (tmp_path / "figures" / "arm_effect.png").is_file() and "figures/arm_effect.png" in section
    for arm in P_RIGHT:
        assert f"| random | {arm} |" in section
    assert "arms real, oversample, oversample2, synth2, filtered" in report
    assert "| mel | random | real |" in report and "| mel | random | off |" not in report  # arms by name
    # Balanced accuracy and nevus recall per arm, mean over seeds, at fraction 1.
    bal = np.mean([np.mean([_correct(1.0, "synth2", s)[sl].mean() for sl in (slice(0, 20), slice(20, 50),
                                                                             slice(50, 100))]) for s in (0, 1, 2)])
    nv = np.mean([_correct(1.0, "synth2", s)[50:].mean() for s in (0, 1, 2)])
    line = next(x for x in section.splitlines() if x.startswith("| random | synth2 |"))
    assert f"{bal:.3f} [" in line and f"{nv:.3f} [" in line
    mel = np.mean([(_correct(f, "synth2", s).astype(float) - _correct(f, "oversample", s))[20:50]
                   for f in (0.1, 1.0) for s in (0, 1, 2)])
    verdict_line = next(x for x in section.splitlines() if x.startswith("| mel | synth2 | oversample |"))
    assert f"{mel:+.3f} [" in verdict_line and "**helps**" in verdict_line
    assert "| nv | synth2 | oversample |" in section and "By label fraction" in section
    assert "| 1 | random | synth2 | 40 + 50 | 8 + 16 | 300 + 0 |" in section  # what the arm really trained on
    assert "| 0.1 | random | oversample | 40 + 0 | 8 + 0 | 300 + 0 |" in section
    assert "| f0.1-random-s0 | 21 / 60 |" in section  # the filter's acceptance
    # The target: synth2 gains in mel only (df: 0.6 both), one class of the two needed, against both oversampling
    # arms; filtered is judged against plain oversampling only.
    targets = [x for x in section.splitlines() if x.startswith(("| synth2 | ", "| filtered | "))]
    assert [x.split(" | ")[:3] for x in targets] == [["| synth2", "oversample", "mel"],
                                                     ["| synth2", "oversample2", "mel"],
                                                     ["| filtered", "oversample", "none"]]
    assert all(x.endswith("| not met |") for x in targets)


def test_target_needs_two_minority_gains_that_help_and_no_lower_balanced_accuracy() -> None:
    from bench.report.effects import CellKey, Effect
    from bench.report.tables import _target_lines
    from bench.report.stats import Interval

    def gain(klass: str, arm: str, estimate: float, low: float) -> Effect:
        return Effect(klass, "all", Interval(estimate, low, estimate + 0.1, 6), 6, 3, 30, arm, "oversample",
                      Interval(estimate, low, estimate + 0.1, 3))

    cells = {CellKey(0.1, "random", arm, seed): {"balanced_accuracy": bal + 0.01 * seed, "cell_id": f"{arm}{seed}"}
             for arm, bal in (("oversample", 0.50), ("synth2", 0.52), ("synth8", 0.49), ("filtered", 0.55))
             for seed in (0, 1, 2)}
    pooled = [gain("mel", "synth2", 0.08, 0.02), gain("vasc", "synth2", 0.06, 0.01),  # met
              gain("mel", "synth8", 0.10, 0.03), gain("df", "synth8", 0.07, 0.02),  # balanced accuracy lower
              gain("mel", "filtered", 0.04, 0.01), gain("akiec", "filtered", 0.09, -0.01),  # too small, no verdict
              gain("nv", "filtered", 0.20, 0.10)]  # the majority class does not count
    rows = {line.split(" | ")[0][2:]: line for line in _target_lines(cells, pooled, 0.95) if line.startswith("| ")}
    assert rows["synth2"] == "| synth2 | oversample | mel, vasc | +0.020 [+0.020, +0.020] | **met** |"
    assert rows["synth8"].startswith("| synth8 | oversample | mel, df | -0.010")
    assert rows["synth8"].endswith("| not met |")
    assert rows["filtered"].startswith("| filtered | oversample | none | +0.050")
    assert rows["filtered"].endswith("| not met |")
    assert _target_lines({k: v for k, v in cells.items() if k.arm != "oversample"}, pooled, 0.95) == []


# -- the preset ----------------------------------------------------------------------------------
PRESET_ARMS = ("real", "oversample", "oversample8", "synth0.5", "synth2", "synth8", "filtered")


def test_synth_compare_preset_plans_every_arm(tmp_path: Path) -> None:
    cfg = parse_args(["--preset", "synth-compare"])
    validate(cfg)
    assert list(cfg.grid.arms) == list(PRESET_ARMS) and cfg.synth.filter_min_prob == 0.5
    assert any(o == "trainer.max_steps=20000" for o in cfg.synth.train_overrides)
    steps = {s.name: s for s in build_steps(cfg, tmp_path)}
    for fraction in ("0.1", "1"):
        for seed in (0, 1, 2):
            for arm in PRESET_ARMS:
                assert f"cell/f{fraction}-random-{arm}-s{seed}" in steps
            assert [i.name for i in steps[f"synth-filter/f{fraction}-random-s{seed}"].inputs] == [
                f"cell/f{fraction}-random-real-s{seed}", f"synth-generate/f{fraction}"]
    assert len(steps) == 2 + 2 + 2 + 6 + 42  # generators, generations, their evaluations, filters, cells


# One --check-configs process per stage module (four): ~45 s idle. The preset's plan is checked by a
# fast test above, and the dry-run path by test_bench_dry_run's gpu-full case.
@pytest.mark.slow
@pytest.mark.long
def test_synth_compare_dry_run_lists_every_arm(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.label_efficiency", "--preset", "synth-compare", "--dry-run",
                           "--out", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout + done.stderr
    for arm in PRESET_ARMS:
        assert f"-random-{arm}-s2:" in text
    assert "checked 6 config(s) of python -m finetune.filter_synthetic" in text
    assert "sampler=balanced" in text and "synth.max_ratio=8" in text
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


@pytest.mark.slow  # seven stage runs on demo data: ~4 min on the loaded 2-core machine
def test_arm_grid_on_demo_data_runs_filters_and_resumes(tmp_path: Path, demo_cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """real, oversample, oversample2, synth2 and filtered cells of a tiny grid, the filter step between them, and a
    resume."""
    from omegaconf import OmegaConf

    from bench.grid.keys import DONE_FILE
    from bench.label_efficiency import main

    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    config = tmp_path / "bench.yaml"
    config.write_text(OmegaConf.to_yaml({
        "preset": "test", "about": "arm test",
        "data": {"name": "demo", "image_size": 32, "batch_size": 32, "num_workers": 0},
        "model": {"backbone": "tiny_cnn", "small_stem": True},
        "grid": {"fractions": [1.0], "inits": ["random"],
                 "arms": ["real", "oversample", "oversample2", "synth2", "filtered"], "seeds": [0]},
        "synth": {"n_per_class": 2, "match_fraction": False, "classes": ["mel", "df"], "filter_min_prob": 0.0,
                  "train_overrides": ["model.preset=tiny", "trainer.max_steps=2", "trainer.accelerator=cpu"],
                  "generate_args": ["--steps", "2", "--device", "cpu"], "filter_args": ["trainer.accelerator=cpu"]},
        "finetune": {"overrides": ["trainer.max_steps=2", "trainer.max_epochs=1", "trainer.accelerator=cpu"]},
        "run": {"jobs": 2, "threads": 1},  # two steps at a time: most of a step is process start-up
        "report": {"n_bootstrap": 200},
    }))
    out = tmp_path / "out"
    assert main(["--config", str(config), "--out", str(out)]) == 0
    cells = out / "cells"
    oversample = OmegaConf.load(cells / "f1-random-oversample-s0" / "config.yaml")
    assert oversample.sampler == "balanced" and oversample.loss.weighting == "none"
    filtered = OmegaConf.load(cells / "f1-random-filtered-s0" / "config.yaml").synth
    assert filtered.manifest == str(out / "synth" / "filter-f1-random-s0" / "manifest.csv")
    header = json.loads((out / "synth" / "filter-f1-random-s0" / "manifest.json").read_text())
    assert Path(header["filter"]["checkpoint"]).parent == cells / "f1-random-real-s0" / "checkpoints"
    assert OmegaConf.load(cells / "f1-random-synth2-s0" / "config.yaml").synth.max_ratio == 2.0
    # oversample2 trained on real images only, with epochs as long as synth2's real + generated images.
    synth2 = json.loads((cells / "f1-random-synth2-s0" / "metrics.json").read_text())["counts"]
    equal_steps = json.loads((cells / "f1-random-oversample2-s0" / "run.json").read_text())
    assert set(equal_steps["counts"]["synthetic"].values()) == {0}
    assert equal_steps["synthetic"]["stood_in_for"] == synth2["synthetic"]
    assert equal_steps["synthetic"]["epoch_items"] == sum(synth2["real"].values()) + sum(synth2["synthetic"].values())
    report = (out / "report.md").read_text()
    assert "## Synthetic images against oversampling" in report
    assert "| f1-random-s0 | 2 / 2 | 2 / 2 |" in report  # min_prob 0 keeps every generated image
    # The generator's images judged once, in the report with their grid figure.
    quality = report[report.index("## Generator quality"):report.index("## Synthetic images against oversampling")]
    assert "### Generator `f1`" in quality and "| mel (" in quality and "| df (" in quality
    assert "random-init tiny_cnn" in quality and "(figures/generator_f1.png)" in quality
    assert (out / "figures" / "generator_f1.png").is_file()
    assert {r["arm"] for r in read_results(out / "results.csv")} == {"real", "oversample", "oversample2", "synth2",
                                                                     "filtered"}

    def finished() -> dict[str, str]:  # step folder -> its done.json
        return {p.parent.name: p.read_text() for p in out.rglob(DONE_FILE)}

    first = finished()
    assert len(first) == 2 + 1 + 1 + 5  # generator, generation, its evaluation, filter, five cells
    assert main(["--config", str(config), "--out", str(out)]) == 0
    assert finished() == first  # nothing recomputed


def test_dry_run_counts_the_generated_images_a_cell_adds() -> None:
    from bench.grid.cost import generated_per_class, real_per_class, synthetic_share
    from dermkit.data.demo import HAM10000_COUNTS

    total = sum(HAM10000_COUNTS.values())
    mel, df = 7000 * 1113 / total, 7000 * 115 / total  # real melanomas, dermatofibromas of a 7000-image split
    full = real_per_class(7000, 1.0, ["mel", "df"], HAM10000_COUNTS)
    assert full == pytest.approx({"mel": mel, "df": df})
    assert synthetic_share(full, {"mel": 6400, "df": 6400}, 8.0) == int(8 * mel + 8 * df)  # the ratio binds
    # mel is capped by the images generated, df (~80 real) by the ratio.
    assert synthetic_share(full, generated_per_class(full, 700, None), 8.0) == int(700 + 8 * df)
    tenth = real_per_class(7000, 0.1, ["mel"], HAM10000_COUNTS)
    assert synthetic_share(tenth, {"mel": 6400}, 0.5) == int(0.5 * 0.1 * mel)
    # --ratio: R x the generator's images of the class, at most --n
    assert generated_per_class(full, 1600, 8.0) == pytest.approx({"mel": 1600, "df": 8 * df})
    assert generated_per_class(tenth, None, 8.0) == pytest.approx({"mel": 0.8 * mel})