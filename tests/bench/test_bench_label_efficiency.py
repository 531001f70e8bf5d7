"""The grid command: presets, validation, the steps it builds, and a real two-cell run on demo data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from bench.grid.config import BenchConfig
from bench.grid.keys import DONE_FILE
from bench.grid.plan import STEP_KINDS, build_steps, start_key
from bench.grid.presets import parse_args, preset_path, validate
from bench.label_efficiency import given_backbone_origin, main, pretraining_settings
from dermkit.backbones.card import BackboneCard, save_backbone
from dermkit.backbones.registry import build_backbone
from bench.report.results import read_results
from dermkit.config import CONFIG_DIR, REPO_ROOT
from dermkit.errors import DermkitError

PRESETS = sorted(p.stem.removeprefix("bench_").replace("_", "-") for p in CONFIG_DIR.glob("bench_*.yaml"))


def _cfg(*overrides: str) -> BenchConfig:
    return parse_args(["--preset", "demo", *overrides])


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads_and_validates(preset: str, tmp_path: Path) -> None:
    cfg = parse_args(["--preset", preset])
    validate(cfg)
    assert cfg.preset == preset and cfg.about
    assert {s.kind for s in build_steps(cfg, tmp_path)} <= set(STEP_KINDS)  # what run.alone_kinds may name
    assert "Running time:" in preset_path(preset).read_text()  # each preset states its running time
    assert len(cfg.grid.seeds) >= 3


def test_presets_exist() -> None:
    assert {"demo", "cpu-small", "gpu-full"} <= set(PRESETS)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(DermkitError, match="Presets: .*cpu-small"):
        parse_args(["--preset", "cpu-smal"])


@pytest.mark.parametrize(("override", "message"), [
    ("grid.inits=[random,simclrr]", "unknown init 'simclrr'.*simclr"),
    ("grid.inits=[random,imagenet]", "imagenet_weights is empty"),
    ("grid.imagenet_weights=/nonexistent.pth", "lacks imagenet"),
    ("grid.fractions=[0.2]", "not a nested label fraction"),
    ("grid.seeds=[]", "grid.seeds is empty"),
    ("finetune.overrides=[seed=3]", "sets 'seed'"),
    ("synth.classes=[melanomaa]", "Unknown class"),
    ("pretrain.method_overrides={swav:[a=1]}", "unknown method 'swav'"),
    ("finetune.init_overrides={simclrr:[optim.head_epochs=2]}", "init_overrides has key 'simclrr'.*random, simclr"),
    ("finetune.fraction_overrides={'0.2':[trainer.max_epochs=2]}", "fraction_overrides has key '0.2'"),
    ("finetune.init_overrides={simclr:[seed=2]}", "sets 'seed'"),
    ("finetune.init_overrides={simclr:[head_epochs]}", "not of the form key=value"),
    ("finetune.init_overrides={simclr@0.2:[optim.lr=0.01]}", "'simclr@0.2': '0.2' is not a label fraction"),
    ("finetune.init_overrides={simclrr@0.01:[optim.lr=0.01]}", "key 'simclrr@0.01'.*@<fraction>"),
    ("run.alone_kinds=[synth-trian]", "unknown step kind.*synth-train"),
])
def test_validate_names_the_bad_key(override: str, message: str) -> None:
    with pytest.raises(DermkitError, match=message):
        validate(_cfg(override))


def test_reuse_needs_a_folder_written_by_export(tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="no cells/ folder"):
        validate(_cfg(f"run.reuse={tmp_path}"))


def test_report_plan_must_be_a_seed_plan_at_the_reports_level(tmp_path: Path) -> None:
    from bench.report.comparison_plan import new_plan, write_plan

    with pytest.raises(DermkitError, match="Cannot read the seed plan"):
        validate(_cfg(f"report.plan={tmp_path / 'missing.json'}"))
    path, _ = write_plan(tmp_path / "plan.json", new_plan("made here", "a grid", [0, 1, 2], 0.9, []))
    with pytest.raises(DermkitError, match="made at level 0.9"):
        validate(_cfg(f"report.plan={path}"))
    validate(_cfg(f"report.plan={path}", "report.level=0.9"))


@pytest.mark.parametrize("part", ["grid.inits=[random]", "grid.fractions=[0.1]"])
def test_a_preset_runs_in_part_with_its_per_init_and_per_fraction_overrides(part: str, tmp_path: Path) -> None:
    # cpu-real sets the SimCLR schedule and per-fraction epochs; its random cells alone must still run
    cfg = parse_args(["--preset", "cpu-real", part])
    validate(cfg)
    cells = [s for s in build_steps(cfg, tmp_path) if s.cell is not None]
    assert cells and all(s.cell.init == "random" or "optim.backbone_lr_scale=0.1" in s.args for s in cells)
    whole = {s.name: s.args for s in build_steps(parse_args(["--preset", "cpu-real"]), tmp_path)}
    assert all(s.args == whole[s.name] for s in cells)  # the same cells, the same keys


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(DermkitError, match="grid.seeds"):
        _cfg("grid.sedes=[1]")


def test_build_steps_wires_the_grid(tmp_path: Path) -> None:
    cfg = _cfg("grid.fractions=[0.1,1.0]", "grid.inits=[random,simclr,dino]", "grid.seeds=[0,1,2]",
               "synth.match_fraction=true")
    steps = build_steps(cfg, tmp_path)
    kinds = [s.kind for s in steps]
    assert kinds.count("pretrain") == 2 and kinds.count("synth-train") == 2 and kinds.count("synth-generate") == 2
    cells = [s for s in steps if s.kind == "cell"]
    assert len(cells) == 2 * 3 * 2 * 3 and len({s.out_dir for s in cells}) == len(cells)
    cell = next(s for s in cells if s.cell.cell_id == "f0.1-simclr-synth-s1")
    assert [i.name for i in cell.inputs] == ["pretrain/simclr", "synth-generate/f0.1"]
    assert "data.fraction=0.1" in cell.args and "seed=1" in cell.args
    assert f"model.init={tmp_path / 'pretrain' / 'simclr' / 'backbone.safetensors'}" in cell.args
    assert f"synth.manifest={tmp_path / 'synth' / 'generate-f0.1' / 'manifest.csv'}" in cell.args
    generator = next(s for s in steps if s.name == "synth-train/f0.1")
    assert "data.fraction=0.1" in generator.args  # the generator sees only that fraction's labels
    random_real = next(s for s in cells if s.cell.cell_id == "f1-random-real-s0")
    assert random_real.inputs == [] and not any(a.startswith(("model.init", "synth.manifest")) for a in random_real.args)


def test_init_overrides_reach_only_that_inits_cells_and_keep_the_others_keys(tmp_path: Path) -> None:
    base = ("grid.inits=[random,simclr]", "grid.synthetic=[false]", "grid.fractions=[0.1]", "grid.seeds=[0]")
    schedule = "finetune.init_overrides={simclr: [optim.head_epochs=3, optim.backbone_lr_scale=0.3]}"
    cfg = _cfg(*base, schedule)
    validate(cfg)
    before = {s.name: s for s in build_steps(_cfg(*base), tmp_path) if s.cell}
    after = {s.name: s for s in build_steps(cfg, tmp_path) if s.cell}
    simclr = next(name for name, s in after.items() if s.cell.init == "simclr")
    random = next(name for name, s in after.items() if s.cell.init == "random")
    assert {"optim.head_epochs=3", "optim.backbone_lr_scale=0.3"} <= set(after[simclr].args)
    assert after[simclr].args != before[simclr].args
    assert not any(a.startswith("optim.") for a in after[random].args)
    assert after[random].key(tmp_path, {}) == before[random].key(tmp_path, {})  # finished random cells stay done


def test_init_overrides_at_a_fraction_reach_only_that_fractions_cells(tmp_path: Path) -> None:
    base = ("grid.inits=[random,simclr]", "grid.synthetic=[false]", "grid.fractions=[0.01,0.1]", "grid.seeds=[0]")
    schedule = "finetune.init_overrides={simclr: [optim.head_epochs=1], simclr@0.01: [optim.head_epochs=5]}"
    cfg = _cfg(*base, schedule)
    validate(cfg)
    before = {s.name: s for s in build_steps(_cfg(*base, "finetune.init_overrides={simclr: [optim.head_epochs=1]}"),
                                             tmp_path) if s.cell}
    after = {s.name: s for s in build_steps(cfg, tmp_path) if s.cell}
    one, ten = after["cell/f0.01-simclr-real-s0"].args, after["cell/f0.1-simclr-real-s0"].args
    assert one.index("optim.head_epochs=5") > one.index("optim.head_epochs=1")  # the fraction's key wins
    assert "optim.head_epochs=5" not in ten
    for name in ("cell/f0.01-random-real-s0", "cell/f0.1-random-real-s0"):
        assert after[name].key(tmp_path, {}) == before[name].key(tmp_path, {})
    assert after["cell/f0.1-simclr-real-s0"].args == before["cell/f0.1-simclr-real-s0"].args  # its key is kept
    assert after["cell/f0.01-simclr-real-s0"].args != before["cell/f0.01-simclr-real-s0"].args


def test_the_grid_starts_predictions_first_then_cells_seed_by_seed(tmp_path: Path) -> None:
    (tmp_path / "b.safetensors").write_bytes(b"weights")
    (tmp_path / "external").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "external" / "a.png")
    cfg = parse_args(["--preset", "cpu-decisive-ssl", f"pretrain.backbones={{simclr: {tmp_path / 'b.safetensors'}}}",
                      f"grid.external={{one: {tmp_path / 'external'}}}"])
    steps = build_steps(cfg, tmp_path)
    order = sorted(steps, key=start_key(cfg.grid.fractions))
    assert {s.kind for s in order[:len([s for s in steps if s.kind == "predict"])]} == {"predict"}
    cells = [s.cell for s in order if s.cell is not None]
    assert [(c.fraction, c.seed, c.init) for c in cells[:4]] == [
        (0.01, 0, "random"), (0.01, 0, "simclr"), (0.01, 0, "simclr-linear"), (0.01, 1, "random")]
    assert [c.fraction for c in cells] == sorted(c.fraction for c in cells)
    assert [s.name for s in steps if s.cell] == [s.name for s in build_steps(cfg, tmp_path) if s.cell]  # plan unchanged


def test_the_grid_runs_its_fractions_in_the_order_listed(tmp_path: Path) -> None:
    (tmp_path / "b.safetensors").write_bytes(b"weights")
    listed = parse_args(["--preset", "cpu-real", f"pretrain.backbones={{simclr: {tmp_path / 'b.safetensors'}}}",
                         "grid.fractions=[0.1,0.01,1.0]"])
    cells = [s.cell for s in sorted(build_steps(listed, tmp_path), key=start_key(listed.grid.fractions)) if s.cell]
    fractions = [c.fraction for c in cells]
    assert fractions == [0.1] * fractions.count(0.1) + [0.01] * fractions.count(0.01) + [1.0] * fractions.count(1.0)
    assert [c.seed for c in cells if c.fraction == 0.1] == sorted(c.seed for c in cells if c.fraction == 0.1)


def test_one_generator_without_match_fraction(tmp_path: Path) -> None:
    steps = build_steps(_cfg("synth.match_fraction=false"), tmp_path)
    assert [s.name for s in steps if s.kind == "synth-train"] == ["synth-train/f1"]


def test_bench_never_imports_the_ssl_stage() -> None:
    code = "import sys, bench.label_efficiency; print(sorted(m for m in sys.modules if m.startswith('ssl.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_two_cell_grid_on_demo_data_resumes(tmp_path: Path, demo_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generator (tiny UNet, 2 steps) -> 4 images per class -> two cells (synthetic off and on), 2 steps each."""
    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    config = tmp_path / "bench.yaml"
    config.write_text(OmegaConf.to_yaml({
        "preset": "test", "about": "two-cell test",
        "data": {"name": "demo", "image_size": 32, "batch_size": 32, "num_workers": 0},
        "model": {"backbone": "tiny_cnn", "small_stem": True},
        "grid": {"fractions": [1.0], "inits": ["random"], "synthetic": [False, True], "seeds": [0]},
        "synth": {"n_per_class": 2, "match_fraction": False, "classes": ["mel", "df"],
                  "train_overrides": ["model.preset=tiny", "trainer.max_steps=2", "trainer.accelerator=cpu"],
                  "generate_args": ["--steps", "2", "--device", "cpu"]},
        "finetune": {"overrides": ["trainer.max_steps=2", "trainer.max_epochs=1", "trainer.accelerator=cpu"]},
        "run": {"jobs": 2, "threads": 1},  # two steps at a time: most of a step is process start-up
        "report": {"n_bootstrap": 200},
    }))
    out = tmp_path / "out"
    assert main(["--config", str(config), "--out", str(out)]) == 0
    rows = read_results(out / "results.csv")
    assert {r["cell_id"] for r in rows} == {"f1-random-real-s0", "f1-random-synth-s0"}
    assert {"mel", "df", "nv"} <= {r["class"] for r in rows}
    report = (out / "report.md").read_text()
    assert "DEMO DATA, NEVER EVIDENCE" in report and "| mel | melanoma |" in report
    assert all((out / "figures" / f).is_file() for f in ("balanced_accuracy.png", "synthetic_effect.png"))

    def finished() -> dict[str, str]:  # step folder -> its done.json
        return {p.parent.name: p.read_text() for p in out.rglob(DONE_FILE)}

    first = finished()
    assert len(first) == 5  # generator, generation, its evaluation, two cells
    assert main(["--config", str(config), "--out", str(out)]) == 0
    assert finished() == first  # nothing recomputed

    # More synthetic images: generation, its evaluation and the synthetic cell run again, the generator
    # and the real-only cell are reused.
    assert main(["--config", str(config), "--out", str(out), "synth.n_per_class=3"]) == 0
    again = finished()
    changed = sorted(name for name in first if again[name] != first[name])
    assert changed == ["evaluate-f1", "f1-random-synth-s0", "generate-f1"]

    # A new machine: the exported results (no checkpoints) bring the finished cell back into a new
    # folder without running it; the synthetic cell's generator is not there, so it would run.
    exported = tmp_path / "exported"
    assert main(["--config", str(config), "--out", str(out), "synth.n_per_class=3", "--export", str(exported)]) == 0
    assert (exported / "report.md").is_file() and (exported / "figures" / "balanced_accuracy.png").is_file()
    assert sorted(p.name for p in (exported / "cells" / "f1-random-real-s0").iterdir()) == \
        ["config.yaml", DONE_FILE, "metrics.json", "predictions.csv", "run.json"]
    assert not list(exported.rglob("*.ckpt"))
    # A part of the grid exported into the same folder adds its cells but keeps the whole grid's report.
    whole_report = (exported / "report.md").read_text()
    assert main(["--config", str(config), "--out", str(out), "synth.n_per_class=3", "grid.synthetic=[false]",
                 "--export", str(exported)]) == 0
    assert (exported / "report.md").read_text() == whole_report
    assert {r["cell_id"] for r in read_results(exported / "results.csv")} == {"f1-random-real-s0", "f1-random-synth-s0"}
    fresh = tmp_path / "fresh"
    assert main(["--config", str(config), "--out", str(fresh), "grid.synthetic=[false]", "--reuse", str(exported)]) == 0
    assert (fresh / "cells" / "f1-random-real-s0" / DONE_FILE).read_text() == again["f1-random-real-s0"]
    assert not (fresh / "cells" / "f1-random-real-s0" / "checkpoints").exists()  # taken, not trained
    # with its record of how it ran, so that exporting it again from here keeps that record
    assert sorted(p.name for p in (fresh / "cells" / "f1-random-real-s0").iterdir()) == \
        ["config.yaml", DONE_FILE, "metrics.json", "predictions.csv", "run.json"]
    assert read_results(fresh / "results.csv") == \
        [r for r in read_results(out / "results.csv") if r["cell_id"] == "f1-random-real-s0"]

    # A report of what has finished under these settings, running nothing: back at 2 images per class the
    # folder's generation (3 per class) and its synthetic cell are another setting's, so only the real
    # cell is reported and exported, and the report names the cell still to run.
    partial = tmp_path / "partial"
    assert main(["--config", str(config), "--out", str(out), "--report-only", "--export", str(partial)]) == 0
    assert finished() == again  # nothing ran
    assert {r["cell_id"] for r in read_results(out / "results.csv")} == {"f1-random-real-s0"}
    assert "not yet run: f1-random-synth-s0" in (out / "report.md").read_text()
    # nor is the other setting's generation judged as if it were this one's
    assert "Generator quality" not in (out / "report.md").read_text()
    assert "synth-evaluate" not in (out / "report.md").read_text()
    assert (partial / "report.md").read_text() == (out / "report.md").read_text()
    assert sorted(p.name for p in (partial / "cells").iterdir()) == ["f1-random-real-s0"]


def test_imagenet_cells_are_keyed_by_the_weights_file(tmp_path: Path) -> None:
    weights = tmp_path / "resnet18_imagenet.pth"
    weights.write_bytes(b"first version")
    overrides = ("grid.inits=[random,imagenet]", f"grid.imagenet_weights={weights}", "grid.synthetic=[false]")
    cfg = _cfg(*overrides)
    validate(cfg)
    cell = next(s for s in build_steps(cfg, tmp_path / "out") if s.cell and s.cell.init == "imagenet")
    assert f"model.init={weights}" in cell.args and cell.inputs == []
    key = cell.key(tmp_path / "out", {})
    weights.write_bytes(b"second version")
    again = next(s for s in build_steps(_cfg(*overrides), tmp_path / "out") if s.name == cell.name)
    assert again.key(tmp_path / "out", {}) != key


def test_a_given_backbone_replaces_the_pretraining_step_and_keys_its_cells(tmp_path: Path) -> None:
    weights = tmp_path / "long" / "backbone.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"100 epochs")
    weights.with_suffix(".json").write_text("{}")
    overrides = ("grid.inits=[random,simclr,dino]", f"pretrain.backbones={{simclr: {weights}}}", "grid.synthetic=[false]")
    cfg = _cfg(*overrides)
    validate(cfg)
    steps = build_steps(cfg, tmp_path / "out")
    assert [s.name for s in steps if s.kind == "pretrain"] == ["pretrain/dino"]
    cell = next(s for s in steps if s.cell and s.cell.init == "simclr")
    assert f"model.init={weights.resolve()}" in cell.args and cell.inputs == []
    key = cell.key(tmp_path / "out", {})
    # the same file elsewhere (a new machine, another home folder) keeps the key: it is keyed by digest
    moved = tmp_path / "elsewhere" / "backbone.safetensors"
    moved.parent.mkdir()
    moved.write_bytes(b"100 epochs")
    moved.with_suffix(".json").write_text("{}")
    there = _cfg("grid.inits=[random,simclr,dino]", f"pretrain.backbones={{simclr: {moved}}}", "grid.synthetic=[false]")
    assert next(s for s in build_steps(there, tmp_path / "out") if s.name == cell.name).key(tmp_path / "out", {}) == key
    weights.write_bytes(b"120 epochs")
    again = next(s for s in build_steps(_cfg(*overrides), tmp_path / "out") if s.name == cell.name)
    assert again.key(tmp_path / "out", {}) != key


def test_the_report_says_how_a_given_backbone_was_trained(tmp_path: Path) -> None:
    weights = tmp_path / "backbone.safetensors"
    card = BackboneCard(architecture="resnet18", input_size=64, method="simclr", epochs=30,
                        data={"name": "ham10000", "train_images": 7011, "steps": 1650}, split_hash="0ea8ce09")
    save_backbone(weights, build_backbone("resnet18", False, 64), card)
    assert given_backbone_origin(weights) == ("its card: simclr, 30 epochs, 1650 steps on 7011 ham10000 training "
                                              "images, resnet18 at 64 px, split hash `0ea8ce09`")
    # cpu-real's SimCLR schedule did not make a given backbone, so the report must not print it as if it had
    line = pretraining_settings(parse_args(["--preset", "cpu-real", f"pretrain.backbones={{simclr: {weights}}}"]))
    assert "simclr: not pretrained here" in line and "30 epochs" in line and "max_epochs=100" not in line
    assert "max_epochs=100" in pretraining_settings(parse_args(["--preset", "cpu-real"]))
    weights.with_suffix(".json").write_text("{not json")
    assert "could not be read" in given_backbone_origin(weights) and "not valid JSON" in given_backbone_origin(weights)


@pytest.mark.parametrize(("value", "message"), [
    ("{swav: /x.safetensors}", "unknown method 'swav'"),
    ("{simclr: /nonexistent/backbone.safetensors}", "does not exist"),
])
def test_bad_given_backbones_are_refused(value: str, message: str) -> None:
    with pytest.raises(DermkitError, match=message):
        validate(_cfg("grid.inits=[random,simclr]", f"pretrain.backbones={value}"))


def _stage_output(module: str, option: str) -> str:
    return subprocess.run([sys.executable, "-m", module, option], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.slow
def test_every_preset_override_is_a_key_of_its_stage() -> None:
    """A misspelt stage key in a preset would only fail hours into a grid; check them against the stages."""
    schemas = {m: OmegaConf.create(_stage_output(m, "--help-config"))
               for m in ("ssl.pretrain", "synth.train", "finetune.train")}
    # The stages called with --flags and key=value overrides both: their flags against --help, their keys
    # against the schema.
    flagged = ("finetune.filter_synthetic", "synth.evaluate")
    schemas.update({m: OmegaConf.create(_stage_output(m, "--help-config")) for m in flagged})
    helps = {m: _stage_output(m, "--help") for m in flagged}
    generate_help = _stage_output("synth.generate", "--help")
    for preset in PRESETS:
        cfg = parse_args(["--preset", preset])
        for step in build_steps(cfg, Path("/nonexistent")):
            if step.module == "synth.generate":
                flags = [a for a in step.args if a.startswith("--")]
                assert all(f in generate_help for f in flags), (preset, flags)
                continue
            if step.module in flagged:  # flags with values, then key=value overrides
                flags = [a for a in step.args if a.startswith("--")]
                assert all(f in helps[step.module] for f in flags), (preset, flags)
                for arg in (a for a in step.args if "=" in a and not a.startswith(("--", "/", "<"))):
                    assert OmegaConf.select(schemas[step.module], arg.split("=", 1)[0], default="<missing>") != \
                        "<missing>", f"preset {preset}: {step.module} has no config key {arg!r}"
                continue
            for arg in step.args:
                key = arg.split("=", 1)[0]
                assert OmegaConf.select(schemas[step.module], key, default="<missing>") != "<missing>", \
                    f"preset {preset}: {step.module} has no config key {key!r}"


def test_report_only_says_how_far_each_unfinished_step_had_got(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from bench.grid.keys import Step
    from bench.label_efficiency import print_under_way
    from dermkit.progress_file import write_progress

    steps = [Step(name, "kind", "stage", [], tmp_path / name, ("out.txt",)) for name in ("train", "done", "idle")]
    write_progress(tmp_path / "train", 1234, 20000, "steps")
    write_progress(tmp_path / "done", 50, 50, "steps")
    (tmp_path / "done" / DONE_FILE).write_text("{}")
    print_under_way(steps)
    err = capsys.readouterr().err
    assert "under way: train, step 1,234/20,000 (6%) at " in err
    assert "done" not in err.replace("under way", "") and "idle" not in err


def test_a_linear_init_shares_the_pretraining_freezes_the_backbone_and_keeps_the_other_keys(tmp_path: Path) -> None:
    base = ("grid.synthetic=[false]", "grid.fractions=[0.01]", "grid.seeds=[0]")
    cfg = _cfg("grid.inits=[random,simclr,simclr-linear,random-linear]", *base,
               "finetune.init_overrides={simclr-linear: [optim.lr=0.01]}")
    validate(cfg)
    steps = build_steps(cfg, tmp_path)
    assert [s.name for s in steps if s.kind == "pretrain"] == ["pretrain/simclr"]  # one backbone for both arms
    cells = {s.cell.cell_id: s for s in steps if s.cell is not None}
    linear = cells["f0.01-simclr-linear-real-s0"]
    assert [i.name for i in linear.inputs] == ["pretrain/simclr"]
    assert f"model.init={tmp_path / 'pretrain' / 'simclr' / 'backbone.safetensors'}" in linear.args
    assert {"optim.freeze_backbone=true", "optim.lr=0.01"} <= set(linear.args)
    assert "optim.freeze_backbone=true" in cells["f0.01-random-linear-real-s0"].args
    assert not any(a.startswith("model.init") for a in cells["f0.01-random-linear-real-s0"].args)
    # The cells of the other inits are those of a grid without the linear arms: same arguments, same keys.
    before = {s.name: s for s in build_steps(_cfg("grid.inits=[random,simclr]", *base), tmp_path) if s.cell}
    for name in ("cell/f0.01-random-real-s0", "cell/f0.01-simclr-real-s0"):
        assert "optim.freeze_backbone=true" not in cells[name[5:]].args and cells[name[5:]].args == before[name].args
    random = "cell/f0.01-random-real-s0"  # (a simclr cell's key needs its finished pretraining)
    assert cells[random[5:]].key(tmp_path, {}) == before[random].key(tmp_path, {})


@pytest.mark.parametrize(("override", "message"), [
    ("grid.inits=[random,simclr-lineer]", "unknown init 'simclr-lineer'.*simclr-linear"),
    ("finetune.overrides=[optim.freeze_backbone=true]", "sets 'optim.freeze_backbone'"),
    ("pretrain.backbones={dino: /x/backbone.safetensors}", "grid.inits lacks dino"),
])
def test_linear_inits_are_checked(override: str, message: str) -> None:
    with pytest.raises(DermkitError, match=message):
        validate(_cfg("grid.inits=[random,simclr-linear]", override))
