"""``python -m dermkit.data``: read a dataset, cache its images, split it and write the split.

Example::

    python -m dermkit.data --data ham10000 --root ../shared/data/ham10000 --out runs/split

prints images and lesions per class and split, and images per class in each nested label fraction
of the training split, then writes ``OUT/split.csv`` (image_id, lesion_id, label, split,
min_fraction), ``OUT/split.json`` (seed, content hash, counts), ``config.yaml`` and ``run.json``.
Later stages use the split with ``data.split_file=OUT/split.csv``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from dermkit.config import DataConfig, Flag, parse_config
from dermkit.console import console, entry_point, print_table
from dermkit.data.splits import FRACTIONS, SPLITS, SplitTable
from dermkit.flags import data_flag, out_flag, root_flag
from dermkit.out_folder import replacing
from dermkit.runinfo import write_run_info


@dataclass
class DataCommandConfig:
    """Config of ``python -m dermkit.data``.

    Keys:
        data: the dataset section (:class:`dermkit.config.DataConfig`); this command reads
            name, root, image_size, cache_dir, split_seed, val_fraction, test_fraction,
            split_file and skip_bad.
        out_dir: folder for ``split.csv``, ``split.json``, ``config.yaml`` and ``run.json``.
    """

    data: DataConfig = field(default_factory=DataConfig)
    out_dir: str = "runs/data"


KIND = "dermkit.data"  # run.json's kind (dermkit.out_folder)
FLAGS = [
    data_flag(),
    root_flag(),
    out_flag("output folder for split.csv and split.json (a split written there before is replaced)", command=KIND,
             replaces=True),
    Flag("--seed", "data.split_seed", "split seed", type=int),
    Flag("--image-size", "data.image_size", "side of the cached square images in pixels", type=int),
    Flag("--skip-bad", "data.skip_bad", "skip unreadable images and list them", type=bool),
]


def split_summary_rows(split: SplitTable, classes: tuple[str, ...]) -> list[list[object]]:
    """Per class (then a total row): images and lesions in each split.

    Images of unknown lesion count as one lesion each.
    """
    images: dict[tuple[str, str], int] = defaultdict(int)
    lesions: dict[tuple[str, str], set[str]] = defaultdict(set)
    for image_id, lesion_id, label, side in zip(split.image_ids, split.lesion_ids, split.labels, split.split):
        for key in ((label, side), ("total", side)):
            images[key] += 1
            lesions[key].add(lesion_id or f"image:{image_id}")
    rows: list[list[object]] = []
    for label in (*classes, "total") if classes else ("total",):
        row: list[object] = [label]
        for side in SPLITS:
            row += [images[(label, side)], len(lesions[(label, side)])]
        row += [sum(images[(label, s)] for s in SPLITS)]
        rows.append(row)
    return rows


def fraction_rows(split: SplitTable, classes: tuple[str, ...]) -> list[list[object]]:
    """Per nested label fraction: training images per class and in total."""
    rows: list[list[object]] = []
    for fraction in FRACTIONS:
        chosen = [label for label, f in zip(split.labels, split.min_fraction) if f is not None and f <= fraction + 1e-12]
        rows.append([f"{fraction:g}", *(chosen.count(c) for c in classes), len(chosen)])
    return rows


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Prepare a dataset and write its split; returns the exit status."""
    cfg = parse_config(DataCommandConfig, "python -m dermkit.data",
                       "Read a dataset, cache its images, split it by lesion and write split.csv / split.json.",
                       argv, FLAGS)
    from dermkit.data.prepare import prepare_data  # heavy imports after argument parsing

    prepared = prepare_data(cfg.data)
    split, classes = prepared.split, prepared.classes
    columns = ["class", *(f"{s} {kind}" for s in SPLITS for kind in ("images", "lesions")), "images"]
    print_table(f"{prepared.source.name}: {prepared.source.root} (split seed {split.seed}, hash {split.hash})",
                columns, split_summary_rows(split, classes))
    if classes:
        print_table("Training images per nested label fraction", ["fraction", *classes, "total"],
                    fraction_rows(split, classes))
    with replacing(cfg.out_dir, KIND) as staging:  # a split written before into the folder is replaced whole
        split.save(staging)
        write_run_info(staging, cfg, cfg.data.split_seed, {"split_hash": split.hash, "data": prepared.describe(),
                                                           "skipped": [list(s) for s in prepared.source.skipped]},
                       kind=KIND)
    out = Path(cfg.out_dir).expanduser()
    csv_path, json_path = out / "split.csv", out / "split.json"
    if prepared.source.skipped:
        console.print(f"[yellow]{len(prepared.source.skipped)} file(s) skipped (data.skip_bad=true):[/]")
        for name, reason in prepared.source.skipped:
            console.print(f"  {name}: {reason}", highlight=False)
    console.print(f"Wrote {csv_path} and {json_path}", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
