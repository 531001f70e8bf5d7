"""The label-efficiency and synthetic-benefit grid: ``python -m bench.label_efficiency --preset demo``.

Does self-supervised pretraining help when labels are few, and do synthetic images help the
minority classes? The pipeline runs every stage through its command line, exchanging files only:

1. ``ssl.pretrain`` once per SSL method in ``grid.inits``      -> ``pretrain/<method>/backbone.safetensors``
2. ``synth.train`` on the training split (per label fraction    -> ``synth/train-f<f>/``
   with ``synth.match_fraction``), then ``synth.generate`` of the
   minority classes                                              -> ``synth/generate-f<f>/manifest.csv``,
   and ``synth.evaluate`` of those images (read by the report    -> ``synth/evaluate-f<f>/metrics.json``
   only: "Generator quality")
3. ``finetune.train`` per cell: label fraction x initialisation  -> ``cells/<cell>/metrics.json``,
   x arm x seed (arms: ``real``, ``oversample``,                  ``predictions.csv``
   ``oversample<R>``, ``synth<R>``, ``filtered``; the older
   ``grid.synthetic`` off/on is ``real``/``synth``)
4. for a ``filtered`` arm, ``finetune.filter_synthetic`` with    -> ``synth/filter-<f>-<init>-s<seed>/manifest.csv``
   the ``real`` cell's best checkpoint of the same fraction,
   init and seed, before that arm's cell

then ``results.csv`` (one row per cell and class) and ``report.md`` with figures. Every step is
keyed by a hash of its settings and inputs (:mod:`bench.grid.keys`): re-running the command skips
finished steps, so an interrupted grid resumes, and a changed setting re-runs what it affects.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from dermkit.backbones.card import read_card
from dermkit.console import console, entry_point, print_table
from dermkit.data.prepare import PreparedData, prepare_data
from dermkit.errors import DermkitError
from dermkit.out_folder import EXPORT_KIND, check_out_folder
from dermkit.progress_file import read_progress
from dermkit.resume import claim_run_folder, runs_dir
from dermkit.runinfo import write_run_info
from dermkit.vocab import canonical_class
from bench.grid.config import LEGACY_ARMS, BenchConfig, arm_sort_key, grid_arms, parse_arm
from bench.grid.dry_run import dry_run
from bench.grid.external import external_folders, write_external_sections
from bench.grid.keys import DONE_FILE, Step, read_done
from bench.grid.plan import (EVALUATE_KIND, FILTER_KIND, build_steps, collect_results, describe_cell, filter_acceptance,
                             finished_cells, finished_steps, generated_count_text, generator_evaluation, repo_path,
                             start_key)
# FLAGS: the flags this command takes, read here like every command's (tests/dermkit/test_flags.py)
from bench.grid.presets import DRY_RUN, FLAGS, KIND, PROG, REPORT_ONLY, parse_args, validate  # noqa: F401
from bench.grid.reuse import export_results, reuse_cells
from bench.grid.runner import Runner, log_tail, progress_text
from bench.report.comparison_plan import read_plan
from bench.report.results import read_metrics, read_predictions, write_results
from bench.report.effects import ReportContext, StepTime, arm_label, cell_table, seed_summary
from bench.report.tables import write_report


def given_backbone_origin(path: str | Path) -> str:
    """How a given backbone was trained, from its card: the report names it, since a path outlives
    neither the machine nor the reader's access to it."""
    try:
        card = read_card(Path(path).expanduser())
    except DermkitError as err:
        return f"its card could not be read: {err}"
    data = card.data
    steps = f", {data['steps']} steps" if data.get("steps") else ""
    images = f" on {data['train_images']} {data.get('name', '')} training images".replace("  ", " ") \
        if data.get("train_images") else ""
    return (f"its card: {card.method}, {card.epochs} epochs{steps}{images}, {card.architecture} at "
            f"{card.input_size} px, split hash `{card.split_hash or 'not recorded'}`")


def pretraining_settings(cfg: BenchConfig) -> str:
    """The report's pretraining line: the overrides of each method pretrained here, and the card of each given
    backbone (a given method's overrides are left out: they did not make its backbone)."""
    given = cfg.pretrain.backbones
    return (f"Pretraining overrides: `{' '.join(cfg.pretrain.overrides) or '(stage defaults)'}`"
            + "".join(f"; {m}: `{' '.join(o)}`" for m, o in cfg.pretrain.method_overrides.items() if m not in given)
            + "".join(f"; {m}: not pretrained here, the given backbone `{p}` ({given_backbone_origin(p)})"
                      for m, p in given.items()))


def _settings_and_caveats(cfg: BenchConfig) -> tuple[list[str], list[str]]:
    """The report's setting lines (backbone, overrides, arms, generator) and its caveats."""
    settings = [f"Backbone: `{cfg.model.backbone}` (small stem: {cfg.model.small_stem}), the same for every "
                "initialisation",
                pretraining_settings(cfg),
                f"Fine-tuning overrides: `{' '.join(cfg.finetune.overrides) or '(stage defaults)'}`"
                + "".join(f"; fraction {k}: `{' '.join(o)}`" for k, o in cfg.finetune.fraction_overrides.items())
                + "".join(f"; {k} cells: `{' '.join(o)}`" for k, o in cfg.finetune.init_overrides.items())]
    caveats = []
    arms = grid_arms(cfg.grid)
    if not set(arms) <= set(LEGACY_ARMS):
        settings.append("Arms: " + ", ".join(f"`{a}`" for a in sorted(arms, key=arm_sort_key))
                        + " (oversample: `sampler=balanced loss.weighting=none`; oversample<R>: the same, with "
                        "`synth.steps_only=true` and synth<R>'s manifest and ratio: epochs as long as synth<R>'s; "
                        "synth<R>: `synth.max_ratio=R`; "
                        f"filtered: the images the real cell's classifier gives p >= {cfg.synth.filter_min_prob:g}, "
                        "`finetune.filter_synthetic`)")
    if any(parse_arm(a).reads_manifest for a in arms):
        settings.append(f"Generator: `synth.train {' '.join(cfg.synth.train_overrides)}`, "
                        f"{generated_count_text(cfg.synth)} of {', '.join(cfg.synth.classes)} "
                        f"(`synth.generate {' '.join(cfg.synth.generate_args)}`), "
                        + ("one generator per label fraction, trained on that fraction's labeled images only"
                           if cfg.synth.match_fraction else "one generator trained on the whole training split"))
        if not cfg.synth.match_fraction and any(f < 1 for f in cfg.grid.fractions):
            caveats.append("One generator was trained on the labels of the whole training split "
                           "(synth.match_fraction=false). At label fractions below 1 the synthetic-on cells therefore "
                           "draw on labeled images the synthetic-off cells never see: part of any gain there may "
                           "come from those extra labels rather than from synthesis.")
    if len(cfg.grid.seeds) < 3:
        caveats.append(f"Only {len(cfg.grid.seeds)} seed(s): intervals over seeds are wide or undefined.")
    return settings, caveats


def report_context(cfg: BenchConfig, command: str, data: dict[str, Any], test_counts: dict[str, int],
                   steps: list[Step], wall_seconds: float) -> ReportContext:
    """What the report says about this run (settings, caveats, timings)."""
    settings, caveats = _settings_and_caveats(cfg)
    timings = {}
    untimed: dict[str, int] = {}
    train_counts: dict[str, dict[str, dict[str, int]]] = {}
    accepted: dict[str, dict[str, dict[str, Any]]] = {}
    quality: dict[str, tuple[dict[str, Any], Path]] = {}
    for step in steps:
        record = read_done(step)
        if record is not None:
            timings[step.name] = StepTime(float(record.get("seconds", 0.0)), float(record.get("cpu_seconds", 0.0)))
            if record.get("unrecorded_attempts"):
                untimed[step.name] = int(record["unrecorded_attempts"])
            if step.cell is not None:  # what each arm trained on (synth.max_ratio is only a ceiling)
                counts = read_metrics(step.out_dir).get("counts")
                if isinstance(counts, dict):
                    train_counts[step.cell.cell_id] = counts
            if step.kind == FILTER_KIND:
                acceptance = filter_acceptance(step.out_dir)
                if acceptance:
                    accepted[step.name.split("/", 1)[1]] = acceptance
            if step.kind == EVALUATE_KIND:
                evaluation = generator_evaluation(step.out_dir)
                if evaluation:
                    quality[step.name.split("/", 1)[1]] = (evaluation, step.out_dir)
    plan_path = repo_path(cfg.report.plan) if cfg.report.plan else None
    return ReportContext(preset=cfg.preset or "(custom)", about=cfg.about, command=command, data=data,
                         test_counts=test_counts, minority_classes=[canonical_class(c) for c in cfg.synth.classes],
                         settings=settings, caveats=caveats, timings=timings, wall_seconds=wall_seconds,
                         level=cfg.report.level,
                         n_bootstrap=cfg.report.n_bootstrap, bootstrap_seed=cfg.report.bootstrap_seed,
                         train_counts=train_counts, filter_acceptance=accepted, untimed_attempts=untimed,
                         generator_quality=quality, plan=read_plan(plan_path) if plan_path else None,
                         plan_path=cfg.report.plan)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the grid and write ``results.csv`` and ``report.md``; returns 0 on success."""
    started = time.time()
    command = " ".join([PROG, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    cfg = parse_args(argv)
    validate(cfg)
    out = repo_path(cfg.out_dir) if cfg.out_dir else repo_path(runs_dir() / "bench" / (cfg.preset or "custom"))
    check_folders(cfg, out)
    flags = sys.argv[1:] if argv is None else argv  # parse_args accepted them
    if DRY_RUN in flags:
        return dry_run(cfg, build_steps(cfg, out))
    report_only = REPORT_ONLY in flags
    console.print(f"[bold]bench[/] preset {cfg.preset or '(custom)'} -> {out}" + (" (report only)" if report_only else ""))
    data = prepare_data(cfg.data)
    check_split_sizes(cfg, data)  # before the run folder is made
    if not report_only:  # a report beside a running grid reads its finished cells and starts nothing
        claim_run_folder(out)  # a second grid on this folder would start the same steps again
    described = data.describe()
    fingerprint = {k: described[k] for k in ("name", "images", "classes", "split_hash", "image_size")}
    test_counts = data.class_counts(data.indices("test"))
    steps = build_steps(cfg, out)
    if cfg.run.reuse:
        reuse_cells(steps, repo_path(cfg.run.reuse), out, fingerprint)
    if report_only:
        print_under_way(steps)
        finished = finished_steps(steps, out, fingerprint)
        report_finished(cfg, steps, finished, out, command, described, test_counts, started)
        if cfg.report.export:
            export_results(out, steps, [s for s in finished if s.cell is not None], repo_path(cfg.report.export))
        return 0
    write_run_info(out, cfg, seed=0, extra={"data": described, "command": command}, kind=KIND)
    runner = Runner(steps, out, fingerprint, jobs=cfg.run.jobs, threads=cfg.run.threads,
                    alone_kinds=cfg.run.alone_kinds, start_key=start_key(cfg.grid.fractions),
                    keep_going=cfg.run.keep_going, describe=describe_cell,
                    env={"DERMKIT_CACHE": str(Path(cfg.data.cache_dir).expanduser().resolve())})
    report_written = False
    try:
        report_written = _run_and_report(cfg, runner, steps, out, fingerprint, command, described, test_counts,
                                         started)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: the running steps were stopped. Re-run the same command to resume "
                      f"(finished steps in {out} are reused).")
        return 130
    finally:  # what finished is kept even when a step failed or the grid was stopped
        if cfg.report.export:
            export_results(out, steps, finished_cells(steps, out, fingerprint), repo_path(cfg.report.export),
                           with_report=report_written)
    return 0


def check_folders(cfg: BenchConfig, out: Path) -> None:
    """The grid's folder, ``--export`` and ``--reuse`` against each other and what they hold, before any step
    (in the dry run too).

    Raises:
        DermkitError: the run folder or the export folder holds another command's outputs (a training run,
            another kind of folder; :func:`dermkit.out_folder.check_out_folder`) or is a file; the export or
            the reused folder is the grid's own folder.
    """
    check_out_folder(out, KIND, "--out (out_dir)" if cfg.out_dir else "The default run folder")
    if cfg.report.export:
        export = repo_path(cfg.report.export)
        if export == out:
            raise DermkitError(f"--export (report.export) {export} is the grid's own run folder (--out): the export "
                               "is a copy without checkpoints, e.g. docs/results/<preset>. Pass another folder.")
        check_out_folder(export, EXPORT_KIND, "--export (report.export)",
                         other="Pass a new folder, or one an earlier --export wrote (e.g. docs/results/<preset>).")
    if cfg.run.reuse and repo_path(cfg.run.reuse) == out:
        raise DermkitError(f"--reuse (run.reuse) {out} is the grid's own run folder: its finished cells count as "
                           "done anyway. Drop --reuse, or pass the folder of another grid or export.")


def check_split_sizes(cfg: BenchConfig, data: PreparedData) -> None:
    """Every split and every label fraction of the grid holds images, before any step runs.

    Raises:
        DermkitError: an empty split or fraction, naming the dataset and the split sizes.
    """
    for fraction in sorted(cfg.grid.fractions):
        data.required_indices("train", fraction, remedy="Use a larger dataset or drop the fraction from "
                              "grid.fractions.")
    for split in ("val", "test"):
        data.required_indices(split)


def _run_and_report(cfg: BenchConfig, runner: Runner, steps: list[Step], out: Path, fingerprint: dict[str, Any],
                    command: str, described: dict[str, Any], test_counts: dict[str, int], started: float) -> bool:
    """Run the steps, then write ``results.csv`` and the report; returns True once the report is written.

    Raises:
        DermkitError: a step failed (after ``results.csv`` is written with the cells that finished).
    """
    summary = runner.run()
    # After a failure, a cell that did not run again may still hold a done.json from other settings or inputs.
    rows = collect_results(finished_cells(steps, out, fingerprint))
    results_path = write_results(out / "results.csv", rows)
    console.print(f"{len(summary.ran)} step(s) run, {len(summary.skipped)} reused; "
                  f"{len(rows)} result rows in {results_path}")
    if summary.cleared:
        console.print(f"[yellow]settings changed:[/] re-ran {', '.join(summary.cleared)}")
    if not summary.ok:
        for name, log in summary.failed.items():
            console.print(f"[red]{name} failed[/]; last lines of {log}:\n{log_tail(log)}", highlight=False)
        raise DermkitError(f"{len(summary.failed)} step(s) failed and {len(summary.blocked)} did not run "
                           f"({', '.join(summary.failed)}). Fix the cause and re-run the same command: finished "
                           "steps are reused.")

    cells_dir = out / "cells"
    ctx = report_context(cfg, command, described, test_counts, steps, time.time() - started)
    report = write_report(out, rows, lambda cell_id: read_predictions(cells_dir / cell_id), ctx)
    external_sections(cfg, report, out, steps, ctx)
    _print_summary(rows, out, report, time.time() - started, cfg.report.level)
    return True


def external_sections(cfg: BenchConfig, report: Path, out: Path, steps: list[Step], ctx: ReportContext) -> None:
    """The report's sections on ``grid.external`` (blind sets; labelled ones with their own report)."""
    if cfg.grid.external:
        write_external_sections(report, out, steps, external_folders(cfg.grid.external, repo_path),
                                {k: repo_path(v) for k, v in cfg.grid.external_labels.items()}, ctx)


def print_under_way(steps: list[Step]) -> None:
    """``--report-only``: how far each unfinished step with a ``progress.json`` had got, and when (a long
    generator or pretraining step of a grid running elsewhere, or stopped between sessions)."""
    for step in steps:
        progress = read_progress(step.out_dir)
        if progress is None or (step.out_dir / DONE_FILE).is_file():
            continue
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(progress.updated))
        console.print(f"under way: {step.name}, {progress_text(progress, progress)} at {when}", highlight=False)


def report_finished(cfg: BenchConfig, steps: list[Step], finished: list[Step], out: Path, command: str,
                    described: dict[str, Any], test_counts: dict[str, int], started: float) -> Path:
    """``--report-only``: write ``results.csv`` and the report over the ``finished`` steps (:func:`finished_steps`:
    a generator evaluation or cell left from other settings is not reported), with a caveat naming the cells
    still to run; returns the report's path.

    Raises:
        DermkitError: no cell of this grid has finished.
    """
    waiting = [s.cell.cell_id for s in steps if s.cell is not None and s not in finished]
    cells = [s for s in finished if s.cell is not None]
    rows = collect_results(finished)
    if not rows:
        raise DermkitError(f"No cell of this grid has finished in {out} under these settings: nothing to report. "
                           "Run the grid (the same command without --report-only) first.")
    write_results(out / "results.csv", rows)
    ctx = report_context(cfg, command, described, test_counts, finished, 0.0)
    if waiting:
        ctx.caveats.append(f"A report of part of the grid (`{REPORT_ONLY}`): {len(cells)} of {len(cells) + len(waiting)} "
                           f"cells had finished; not yet run: {', '.join(waiting)}. A fraction or initialisation "
                           "without cells shows '-', and a comparison needs both cells of a seed.")
    report = write_report(out, rows, lambda cell_id: read_predictions(out / "cells" / cell_id), ctx)
    external_sections(cfg, report, out, steps, ctx)
    _print_summary(rows, out, report, time.time() - started, cfg.report.level)
    return report


def _print_summary(rows: list[dict[str, Any]], out: Path, report: Path, seconds: float, level: float) -> None:
    """Balanced accuracy per init, synthetic setting and fraction (mean over seeds) as a rich table."""
    summary = seed_summary(cell_table(rows), lambda e: e["balanced_accuracy"], level)
    fractions = sorted({k.fraction for k in summary})
    arms = {k.arm for k in summary}
    table_rows = []
    settings = dict.fromkeys((k.init, k.arm) for k in summary)
    for init, arm in sorted(settings, key=lambda pair: (pair[0], arm_sort_key(pair[1]))):
        table_rows.append([f"{init} ({arm_label(arm, long=True, legacy=set(arms) <= set(LEGACY_ARMS))})",
                           *(summary[(f, init, arm)].estimate if (f, init, arm) in summary else "-" for f in fractions)])
    print_table("test balanced accuracy, mean over seeds", ["init", *(f"fraction {f:g}" for f in fractions)], table_rows)
    console.print(f"report: {report}  ({seconds:.0f} s this invocation; done markers: */{DONE_FILE})")


if __name__ == "__main__":
    raise SystemExit(main())
