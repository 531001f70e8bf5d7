"""The class vocabulary: aliases map to canonical codes, unknown names list the closest."""

from __future__ import annotations

import pytest

from dermkit.errors import DermkitError
from dermkit.vocab import CANONICAL_CLASSES, canonical_class, display_name, sort_classes


@pytest.mark.parametrize(("name", "canonical"), [
    ("mel", "mel"), ("MEL", "mel"), ("Melanoma", "mel"),
    ("nv", "nv"), ("NV", "nv"), ("nevus", "nv"), ("melanocytic nevus", "nv"),
    ("akiec", "akiec"), ("AKIEC", "akiec"), ("AK", "akiec"), ("actinic keratosis", "akiec"),
    ("bcc", "bcc"), ("basal cell carcinoma", "bcc"),
    ("bkl", "bkl"), ("benign keratosis", "bkl"),
    ("df", "df"), ("dermatofibroma", "df"),
    ("vasc", "vasc"), ("VASC", "vasc"), ("vascular lesion", "vasc"),
    ("SCC", "scc"), ("  mel  ", "mel"),
])
def test_aliases(name: str, canonical: str) -> None:
    assert canonical_class(name) == canonical


@pytest.mark.parametrize(("name", "closest"), [("melanomma", "melanoma"), ("nevis", "nevus"), ("bccc", "bcc")])
def test_unknown_name_lists_closest(name: str, closest: str) -> None:
    with pytest.raises(DermkitError, match=f"Unknown class '{name}'") as err:
        canonical_class(name)
    assert f"Did you mean: {closest}" in str(err.value) or f", {closest}" in str(err.value)
    assert "Known classes: " + ", ".join(CANONICAL_CLASSES) in str(err.value)


def test_unrelated_name_lists_known_classes_only() -> None:
    with pytest.raises(DermkitError) as err:
        canonical_class("zzzz")
    assert "Did you mean" not in str(err.value) and "Known classes: akiec" in str(err.value)


def test_sort_classes_is_canonical_order_and_merges_aliases() -> None:
    assert sort_classes(["vasc", "melanoma", "MEL", "AK", "scc"]) == ("akiec", "mel", "vasc", "scc")


def test_display_name() -> None:
    assert display_name("MEL") == "melanoma"
    assert display_name("AK") == "actinic keratosis"
