"""The evaluation report a person opens in a browser: one static folder, ``<run>/report/``.

``index.html`` and its PNG files side by side (relative links; plain HTML and CSS, no script,
nothing loaded from the internet), so the folder can be copied, zipped or opened from disk.
Sections (each an element with the id in brackets, which the browser test checks):

- summary [``summary``]: what was scored, colour constancy, test-time augmentation, notes;
- metrics [``metrics``]: balanced accuracy and per-class recall, specificity and AUROC, each with
  a bootstrap 95% interval (:func:`dermkit.bootstrap.bootstrap_intervals`, images resampled,
  ``report.bootstrap`` replicates, ``report.seed``);
- confusion matrix [``confusion``], per-class ROC curves [``roc``], reliability diagram and
  expected calibration error [``calibration``];
- test-time augmentation [``tta``]: the headline numbers without and with it (when run);
- external set [``external``]: the dataset's own classes, how they map to the model's, classes
  the model cannot score, and melanoma against the rest for a binary set (when given);
- Grad-CAM grids [``explanations``] (:mod:`finetune.explain`, ``report.explain`` images per
  class and group), with the layer they weight and its map size (``report.cam_layer``);
- the most confident mistakes with thumbnails [``mistakes``].
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from dermkit.bootstrap import bootstrap_intervals
from dermkit.metrics import ECE_BINS
from finetune.explain import CamLayer, RowImages, cam_layer, write_explanations
from finetune.outputs import plot_confusion_matrix

REPORT_DIR = "report"
SECTION_IDS = ("summary", "metrics", "confusion", "roc", "calibration", "tta", "external", "explanations",
               "mistakes")
STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; padding: 0 1.5em; max-width: 80em; color: #222;
       line-height: 1.35; }
.figures { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
.figures section { flex: 1 1 22em; } .figures img.figure { max-height: 26em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; padding-top: 0.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.thumb img { width: 96px; height: 96px; image-rendering: pixelated; }
.note { color: #555; font-size: 0.9em; } .warn { color: #a33; }
img.figure { max-width: 100%; border: 1px solid #eee; }
"""


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _with_interval(value: float | None, interval: Sequence[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{value:.3f} [-]"


def roc_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(np.float64)
    tp, fp = np.cumsum(hits), np.cumsum(1.0 - hits)
    keep = np.r_[np.diff(scores[order]) != 0, True]  # the last of each run of tied scores
    tpr = np.r_[0.0, tp[keep] / max(hits.sum(), 1.0)]
    fpr = np.r_[0.0, fp[keep] / max((1.0 - hits).sum(), 1.0)]
    return fpr, tpr


def plot_roc_curves(path: Path, probs: np.ndarray, targets: np.ndarray, classes: Sequence[str],
                    auroc: dict[str, float | None]) -> None:
    """One-vs-rest ROC curve of every class with both positives and negatives among the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for c, name in enumerate(classes):
        positive = targets == c
        if positive.any() and (~positive).any():
            fpr, tpr = roc_points(probs[:, c], positive)
            ax.plot(fpr, tpr, label=f"{name} (AUROC {_number(auroc.get(name))}, n={int(positive.sum())})")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_bins(probs: np.ndarray, targets: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, np.ndarray | float]:
    """Top-label confidence against accuracy in ``n_bins`` equal-width bins, and the ECE (L1).

    Returns:
        ``confidence``, ``accuracy``, ``count`` ((n_bins,) each; NaN where a bin is empty) and ``ece``,
        the count-weighted mean gap (the definition :func:`dermkit.metrics.expected_calibration_error` uses).
    """
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == targets).astype(np.float64)
    # Bins (k/n, (k+1)/n]: torchmetrics' binning, so both ECEs agree.
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(index, confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, correct, minlength=n_bins) / count
    gaps = np.nan_to_num(np.abs(mean_conf - accuracy)) * count
    return {"confidence": mean_conf, "accuracy": accuracy, "count": count,
            "ece": float(gaps.sum() / max(count.sum(), 1.0))}


def plot_reliability(path: Path, bins: dict[str, Any]) -> None:
    """Reliability diagram: accuracy per confidence bin (bars) against the diagonal, image counts below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_bins = len(bins["count"])
    edges = np.linspace(0, 1, n_bins + 1)
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(4.6, 4.6), height_ratios=(3, 1), sharex=True)
    ax.bar(edges[:-1], np.nan_to_num(bins["accuracy"]), width=1 / n_bins, align="edge", edgecolor="black",
           color="tab:blue", label="accuracy")
    ax.plot([0, 1], [0, 1], color="tab:red", linestyle="--", label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE {bins['ece']:.3f} ({n_bins} bins)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax_count.bar(edges[:-1], bins["count"], width=1 / n_bins, align="edge", color="0.6")
    ax_count.set_xlabel("top-label confidence")
    ax_count.set_ylabel("images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], raw: bool = False) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def metrics_section(report: dict[str, Any], intervals: dict[str, Any]) -> str:
    """Balanced accuracy and the per-class table, each number with its bootstrap interval."""
    rows = []
    for name, row in report["per_class"].items():
        ci = intervals["per_class"][name]
        rows.append([name, _with_interval(row["recall"], ci["recall"]),
                     _with_interval(row["specificity"], ci["specificity"]),
                     _with_interval(row["auroc"], ci["auroc"]), str(row["support"])])
    level = int(round(intervals["level"] * 100))
    return (f'<p id="balanced-accuracy">Balanced accuracy (mean recall over the classes present): '
            f'<b>{_with_interval(report["balanced_accuracy"], intervals["balanced_accuracy"])}</b>; '
            f'accuracy {_number(report["accuracy"])}, macro AUROC {_number(report["auroc_macro"])}, '
            f'{report["num_images"]} scored images.</p>'
            + _table(["class", f"recall [{level}% CI]", f"specificity [{level}% CI]", f"AUROC [{level}% CI]",
                      "support"], rows)
            + f'<p class="note">Intervals: percentile bootstrap over images, {intervals["replicates"]} '
              f'replicates, seed {intervals["seed"]}. A class with few images has a wide interval.</p>')


def tta_section(tta: dict[str, dict[str, Any]] | None) -> str:
    """Headline numbers without and with test-time augmentation."""
    if not tta:
        return '<p class="note">Not run: pass --tta to average over flips and right-angle rotations.</p>'
    classes = list(next(iter(tta.values()))["per_class"])
    rows = [[setting, _number(r["balanced_accuracy"]), _number(r["accuracy"]), _number(r["auroc_macro"]),
             _number(r["ece"]), *(_number(r["per_class"][c]["recall"]) for c in classes)]
            for setting, r in tta.items()]
    return (_table(["test-time augmentation", "balanced accuracy", "accuracy", "macro AUROC", "ECE",
                    *(f"recall {c}" for c in classes)], rows)
            + '<p class="note">With: class probabilities averaged over the 8 flips and right-angle rotations. '
              'The rest of this report uses the probabilities with test-time augmentation.</p>')


def external_section(external: dict[str, Any] | None) -> str:
    """The dataset's own classes, how they map, unscorable classes, melanoma against the rest."""
    if not external:
        return '<p class="note">The images come from the model\'s own dataset and classes.</p>'
    parts = []
    rows = [[name, info["mapped_to"], info["how"], str(info["images"]),
             "yes" if info["scored"] else "no (counted, not scored)"]
            for name, info in external.get("source_classes", {}).items()]
    parts.append(_table(["dataset class", "model class", "mapped by", "images", "scored"], rows))
    unknown = external.get("unknown_classes") or {}
    if unknown:
        rows = [[name, str(u["support"]), ", ".join(f"{k} {v}" for k, v in u["predicted_as"].items())]
                for name, u in unknown.items()]
        parts.append('<p class="warn">Images of classes the model does not know (kept, not scored):</p>'
                     + _table(["class", "images", "predicted as"], rows))
    binary = external.get("melanoma_vs_rest")
    if binary:
        ref = binary.get("reference_specificity")
        at_ref = binary.get("sensitivity_at_reference_specificity")
        rows = [["sensitivity (mel predicted by argmax)", _number(binary["sensitivity"])],
                ["specificity (argmax)", _number(binary["specificity"])],
                ["AUROC of p(mel)", _number(binary["auroc"])],
                ["specificity on the model's own test split", _number(ref)],
                ["sensitivity at that specificity", _number(at_ref)],
                ["threshold on p(mel) giving it", _number(binary.get("threshold_at_reference_specificity"), 4)]]
        parts.append(f'<h3>Melanoma against the rest ({binary["positives"]} melanoma, {binary["negatives"]} '
                     'other images)</h3>' + _table(["measure", "value"], rows)
                     + f'<p class="note">{html.escape(binary.get("reference_note", ""))}</p>')
    return "\n".join(parts)


def explanations_section(explanations: dict[str, dict[str, Any]] | None, layer: CamLayer | None = None) -> str:
    """The CAM layer and the CAM grid of every class."""
    if not explanations:
        return '<p class="note">Not drawn: pass --explain N (N images per class and group).</p>'
    parts = [f'<p id="cam-layer">{html.escape(layer.describe())}</p>' if layer else "",
             '<p class="note">Per class: true positives, false negatives, false positives, most confident '
             'first. Columns: image; Grad-CAM and Grad-CAM++ of the predicted class; Grad-CAM of the true '
             'class where it differs.</p>']
    for name, info in explanations.items():
        parts.append(f'<figure id="cam-{html.escape(name)}"><img class="figure" src="{html.escape(info["file"])}" '
                     f'alt="Grad-CAM grid of {html.escape(name)}"><figcaption>{html.escape(name)}</figcaption></figure>')
    return "\n".join(parts)


def mistakes_section(folder: Path, images: np.ndarray | RowImages, probs: np.ndarray, targets: np.ndarray,
                     classes: Sequence[str], image_ids: Sequence[str], limit: int) -> str:
    """Table of the ``limit`` most confident wrong predictions with thumbnails (``thumbs/*.png``)."""
    preds = probs.argmax(axis=1)
    wrong = np.flatnonzero((targets >= 0) & (preds != targets))
    wrong = wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:limit]
    if not len(wrong):
        return '<p class="note">No mistakes among the scored images.</p>'
    (folder / "thumbs").mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, i in enumerate(wrong.tolist()):
        name = f"thumbs/mistake_{rank:03d}.png"
        Image.fromarray(np.asarray(images[i], dtype=np.uint8)).save(folder / name)
        rows.append([f'<img src="{name}" alt="{html.escape(image_ids[i])}">', html.escape(image_ids[i]),
                     html.escape(classes[targets[i]]), html.escape(classes[preds[i]]),
                     f"{probs[i, preds[i]]:.3f}", f"{probs[i, targets[i]]:.3f}"])
    table = _table(["image", "image id", "true", "predicted", "p(predicted)", "p(true)"], rows, raw=True)
    return table.replace("<td><img", '<td class="thumb"><img')


def draw_figures(folder: Path, probs: np.ndarray, targets: np.ndarray, classes: Sequence[str],
                 report: dict[str, Any], title: str) -> dict[str, Any]:
    """The confusion matrix, ROC curves and reliability diagram of the scored images; returns the reliability bins.

    Args:
        probs: (N, C) probabilities of the scored images (targets >= 0).
        targets: (N,) their true class index.
    """
    plot_confusion_matrix(folder / "confusion_matrix.png", report["confusion_matrix"], classes, title)
    auroc = {c: report["per_class"][c]["auroc"] for c in classes}
    plot_roc_curves(folder / "roc_curves.png", probs, targets, classes, auroc)
    bins = reliability_bins(probs, targets)
    plot_reliability(folder / "reliability.png", bins)
    return bins


def figure_sections(ece: float) -> str:
    """The page's figure row: confusion matrix, ROC curves and calibration (with the ECE)."""
    return "".join([
        '<div class="figures">\n',
        _section("confusion", "Confusion matrix",
                 '<img class="figure" src="confusion_matrix.png" alt="confusion matrix">'
                 '<p class="note">Rows: true class; colour: share of the true class; numbers: images.</p>'),
        _section("roc", "ROC curves (one class against the rest)",
                 '<img class="figure" src="roc_curves.png" alt="per-class ROC curves">'),
        _section("calibration", "Calibration",
                 f'<p>Expected calibration error: <b id="ece">{ece:.3f}</b> ({ECE_BINS} equal-width bins of '
                 'top-label confidence).</p><img class="figure" src="reliability.png" alt="reliability diagram">'),
        "</div>\n"])


def write_html_report(out_dir: Path, model: nn.Module, images: np.ndarray | RowImages, image_ids: Sequence[str],
                      probs: np.ndarray, targets: np.ndarray, classes: Sequence[str], report: dict[str, Any],
                      settings: Any, title: str, mean: Sequence[float], std: Sequence[float],
                      summary: Sequence[str] = (), tta: dict[str, dict[str, Any]] | None = None,
                      external: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out_dir/report/`` (page and images) for one evaluated set.

    Args:
        out_dir: the run or evaluation folder.
        model: the classifier (for the CAM grids).
        images: (N, S, S, 3) uint8 pixels of the evaluated images (as cached; an array or
            :class:`finetune.explain.RowImages`), row i = row i of ``probs``.
        image_ids: (N,) image ids.
        probs: (N, C) probabilities over ``classes`` (with test-time augmentation when it was used).
        targets: (N,) true class index; -1 for an image of a class the model does not know.
        classes: the model's classes.
        report: :func:`dermkit.metrics.classification_report` of the scored images (targets >= 0).
        settings: the ``report`` config section (``bootstrap``, ``seed``, ``explain``, ``cam_layer``,
            ``mistakes``).
        title: page heading.
        mean: normalisation mean of the model's inputs.
        std: normalisation standard deviation.
        summary: lines for the summary section (data, colour constancy, ...).
        tta: ``{"without": report, "with": report}`` when test-time augmentation was run.
        external: the external-set description (see :func:`external_section`).

    Returns:
        What ``metrics.json`` records under ``report``: the page, the bootstrap intervals, the CAM grids
        and the CAM layer (``cam_layer``: name, map size, input size, how it was chosen; None without grids).
    """
    folder = out_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.int64)
    known = targets >= 0
    intervals = bootstrap_intervals(probs[known], targets[known], classes, settings.bootstrap, settings.seed)
    bins = draw_figures(folder, probs[known], targets[known], classes, report, title)
    explanations, layer = None, None
    if settings.explain > 0:
        model = model.cpu().float()  # where write_explanations draws them
        side = int(np.asarray(images[0]).shape[0]) if len(images) else model.backbone.image_size  # (S, S, 3) images
        layer = cam_layer(model, side, settings.cam_layer)
        explanations = write_explanations(folder, model, images, probs, targets, classes, settings.explain,
                                          mean, std, image_ids, layer)
    body = [
        _section("summary", "Summary", "".join(f"<p>{html.escape(line)}</p>" for line in summary)),
        _section("metrics", "Balanced accuracy and per-class metrics", metrics_section(report, intervals)),
        figure_sections(bins["ece"]),
        _section("tta", "Test-time augmentation", tta_section(tta)),
        _section("external", "Dataset classes and external-set measures", external_section(external)),
        _section("explanations", "Where the model looks (Grad-CAM, Grad-CAM++)",
                 explanations_section(explanations, layer)),
        _section("mistakes", "Most confident mistakes",
                 mistakes_section(folder, images, probs, targets, classes, image_ids, settings.mistakes)),
    ]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n" + "".join(body) + "</body></html>\n")
    (folder / "index.html").write_text(page)
    return {"page": f"{REPORT_DIR}/index.html", "bootstrap": intervals, "ece_report_bins": bins["ece"],
            "explanations": explanations, "cam_layer": layer.record() if layer else None}
