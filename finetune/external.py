"""External test sets whose class list is not the model's.

Another clinic's set often names or splits classes differently: PH2 splits nevi into common and
atypical, many sets are melanoma against nevus. :mod:`finetune.evaluate` handles them so:

- folder names go through the vocabulary (:mod:`dermkit.vocab`), which maps several names to one
  class (``common_nevus`` and ``atypical_nevus`` are both ``nv``);
- a class map (``--class-map FILE``, YAML ``folder name: model class``) names the class of folders
  the vocabulary does not know; a class in it outside the vocabulary is an error naming it and
  listing the valid ones, a folder name in it that the set lacks too;
- every image is counted under its own folder name (:func:`source_class_table`), and images of
  classes the model cannot score are listed, never dropped;
- a binary set with melanoma (melanoma against one other class) is also scored as melanoma
  against the rest on p(mel) (:func:`melanoma_vs_rest`), including the sensitivity at the
  specificity the model had on its own test split.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermkit.bootstrap import binary_auroc
from dermkit.data.records import ImageSource
from dermkit.errors import DermkitError
from dermkit.vocab import CANONICAL_CLASSES, canonical_class

MELANOMA = "mel"


def load_class_map(path: str | Path, folders: Sequence[str] | None = None) -> dict[str, str]:
    """Read a ``--class-map`` YAML file: ``{folder name: canonical class}``.

    Args:
        path: the YAML file (a mapping of folder names to class names or aliases).
        folders: the set's folder names; a key that names none of them is refused (a typo would
            otherwise leave the folder to the vocabulary).

    Raises:
        DermkitError: a missing or malformed file, a class name outside the vocabulary (named, with
            the valid classes listed), or a key that is not a folder of the set.
    """
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise DermkitError(f"Class map {path} does not exist. Write a YAML file of 'folder name: model class' lines.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DermkitError(f"Class map {path} is not valid YAML ({err}).") from None
    if not isinstance(data, dict) or not data:
        raise DermkitError(f"Class map {path} must be a YAML mapping of folder names to classes, e.g. 'benign: nv'.")
    mapping: dict[str, str] = {}
    for folder, name in data.items():
        try:
            mapping[str(folder)] = canonical_class(str(name))
        except DermkitError:
            raise DermkitError(f"Class map {path}: {folder}: {name!r} is not a class. Valid classes: "
                               f"{', '.join(CANONICAL_CLASSES)} (or one of their aliases in dermkit/vocab.py).") from None
    if folders is not None:
        unused = sorted(set(mapping) - set(folders))
        if unused:
            raise DermkitError(f"Class map {path} names folder(s) {', '.join(unused)} that the dataset does not have "
                               f"(its folders: {', '.join(sorted(folders))}).")
    return mapping


def source_class(source: ImageSource, index: int) -> str:
    """The dataset's own class name of record ``index``: its folder for an image folder, else its label."""
    record = source.records[index]
    if source.name == "imagefolder":
        return Path(record.image_id).parts[0]
    return record.label or ""


def source_class_table(source: ImageSource, model_classes: Sequence[str], class_map: dict[str, str] | None,
                       rows: Sequence[int] | None = None) -> dict[str, dict[str, Any]]:
    """Every class name of the dataset with the model class it maps to, how, its images and whether it is scored.

    Args:
        source: the dataset as read.
        model_classes: the model's classes.
        class_map: the ``--class-map`` mapping, or None.
        rows: the evaluated records (a split); None counts every record.
    """
    rows = range(len(source.records)) if rows is None else rows
    counts = Counter(source_class(source, i) for i in rows)
    labels = {source_class(source, i): source.records[i].label or "" for i in rows}
    table = {}
    for name in sorted(counts):
        mapped = labels[name]
        how = "class map" if class_map and name in class_map else ("same name" if name == mapped else "vocabulary")
        table[name] = {"mapped_to": mapped, "how": how, "images": counts[name], "scored": mapped in model_classes}
    return table


def sensitivity_at_specificity(scores: np.ndarray, positive: np.ndarray,
                               specificity: float) -> tuple[float, float]:
    """Sensitivity at the lowest threshold whose specificity reaches ``specificity``.

    An image is called positive when its score is at least the threshold.

    Args:
        scores: (N,) scores.
        positive: (N,) bool.
        specificity: the target specificity in [0, 1].

    Returns:
        ``(sensitivity, threshold)``; NaN for both without positives or negatives.
    """
    pos, neg = scores[positive], np.sort(scores[~positive])
    if pos.size == 0 or neg.size == 0:
        return float("nan"), float("nan")
    # Negatives must fall below the threshold: at least ceil(spec * n_neg) of them.
    needed = int(np.ceil(specificity * neg.size - 1e-9))
    if needed <= 0:
        threshold = float(min(neg[0], pos.min()))  # no negative needs to fall below: call every image positive
    elif needed >= neg.size:
        threshold = float(np.nextafter(neg[-1], np.inf))
    else:
        # The smallest threshold above the needed-th lowest negative; ties above it count as positive.
        threshold = float(np.nextafter(neg[needed - 1], np.inf))
    return float((pos >= threshold).mean()), threshold


def reference_specificity(run_dir: Path) -> tuple[float | None, str]:
    """The model's melanoma specificity (argmax) on its own test split, from the run's ``metrics.json``.

    Returns:
        ``(specificity or None, a note saying where it came from or why it is missing)``.
    """
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None, f"No {path}: the training run's test metrics are not beside the checkpoint."
    try:
        value = json.loads(path.read_text())["per_class"][MELANOMA]["specificity"]
    except (KeyError, TypeError, json.JSONDecodeError):
        return None, f"{path} has no melanoma specificity (per_class.mel.specificity)."
    return (None if value is None else float(value)), f"Reference specificity: per_class.mel.specificity of {path}."


def melanoma_vs_rest(probs: np.ndarray, true: Sequence[str], model_classes: Sequence[str],
                     reference: float | None) -> dict[str, Any]:
    """Melanoma against every other image, scored on p(mel).

    Args:
        probs: (N, C) probabilities over ``model_classes`` (which contain ``mel``).
        true: (N,) canonical true class of every image (scorable or not: each is melanoma or not).
        model_classes: the model's classes.
        reference: the specificity to match (the model's on its own test split), or None.

    Returns:
        ``positives``, ``negatives``, argmax ``sensitivity`` and ``specificity``, ``auroc`` of p(mel),
        ``reference_specificity``, ``sensitivity_at_reference_specificity`` and its threshold.
    """
    mel = list(model_classes).index(MELANOMA)
    positive = np.array([t == MELANOMA for t in true])
    called = probs.argmax(axis=1) == mel
    scores = probs[:, mel]
    result: dict[str, Any] = {
        "positives": int(positive.sum()), "negatives": int((~positive).sum()),
        "sensitivity": float(called[positive].mean()) if positive.any() else None,
        "specificity": float((~called[~positive]).mean()) if (~positive).any() else None,
        "auroc": _finite(binary_auroc(scores, positive)),
        "reference_specificity": reference,
        "sensitivity_at_reference_specificity": None, "threshold_at_reference_specificity": None,
    }
    if reference is not None:
        sensitivity, threshold = sensitivity_at_specificity(scores, positive, reference)
        result["sensitivity_at_reference_specificity"] = _finite(sensitivity)
        result["threshold_at_reference_specificity"] = _finite(threshold)
    return result


def is_melanoma_binary(dataset_classes: Sequence[str]) -> bool:
    """Whether a set (its canonical classes) is melanoma against one other class."""
    return len(dataset_classes) == 2 and MELANOMA in dataset_classes


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
