"""The one class vocabulary: canonical lesion classes, their aliases and display names.

Canonical order follows HAM10000 / ISIC 2018 (alphabetical by code) with ISIC 2019's ``scc`` last.
A dataset's classes are the canonical classes it contains, in canonical order; a model's output
index ``i`` means ``classes[i]`` of the dataset it was trained on, and every saved model stores
that tuple.
"""

from __future__ import annotations

from dermkit.errors import DermkitError, did_you_mean

CANONICAL_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc", "scc")

DISPLAY_NAMES: dict[str, str] = {
    "akiec": "actinic keratosis",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevus",
    "vasc": "vascular lesion",
    "scc": "squamous cell carcinoma",
}

# The classes a classifier misses and the synthetic-data stage targets.
MINORITY_CLASSES: tuple[str, ...] = ("mel", "vasc", "akiec", "df")

_ALIASES: dict[str, tuple[str, ...]] = {
    "akiec": ("ak", "actinic keratosis", "actinic keratoses", "actinic_keratosis",
              "actinic-keratosis", "intraepithelial carcinoma", "bowen"),
    "bcc": ("basal cell carcinoma", "basal_cell_carcinoma", "basal-cell-carcinoma"),
    "bkl": ("benign keratosis", "benign keratosis-like lesion", "benign_keratosis",
            "benign-keratosis", "seborrheic keratosis", "bkl-like"),
    "df": ("dermatofibroma",),
    "mel": ("melanoma",),
    # External sets split nevi (PH2: common / atypical; others: dysplastic): one class for a model.
    "nv": ("nevus", "nevi", "naevus", "melanocytic nevus", "melanocytic_nevus",
           "melanocytic-nevus", "common nevus", "common_nevus", "common-nevus", "atypical nevus",
           "atypical_nevus", "atypical-nevus", "dysplastic nevus", "dysplastic_nevus",
           "dysplastic-nevus"),
    "vasc": ("vascular lesion", "vascular lesions", "vascular", "vascular_lesion",
             "vascular-lesion"),
    "scc": ("squamous cell carcinoma", "squamous_cell_carcinoma", "squamous-cell-carcinoma"),
}

_LOOKUP: dict[str, str] = {}
for _canon, _names in _ALIASES.items():
    for _n in (_canon, *_names):
        _LOOKUP[_n.lower()] = _canon


def canonical_class(name: str) -> str:
    """Map a class name or alias (any case) to its canonical code.

    Raises:
        DermkitError: the name is not in the vocabulary; the message lists the closest names.
    """
    key = str(name).strip().lower()
    if key in _LOOKUP:
        return _LOOKUP[key]
    raise DermkitError(
        f"Unknown class {name!r}.{did_you_mean(key, _LOOKUP)} "
        f"Known classes: {', '.join(CANONICAL_CLASSES)}."
    )


def sort_classes(names: set[str] | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Canonical names in canonical order (the order a dataset's ``classes`` tuple uses)."""
    canon = {canonical_class(n) for n in names}
    return tuple(c for c in CANONICAL_CLASSES if c in canon)


def display_name(name: str) -> str:
    """Human-readable name of a class, e.g. ``'mel' -> 'melanoma'``."""
    return DISPLAY_NAMES[canonical_class(name)]
