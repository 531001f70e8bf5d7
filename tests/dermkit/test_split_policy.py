"""The split-hash policy: a file made on another split is refused, one without a hash accepted."""

from __future__ import annotations

import pytest

from dermkit.data.split_policy import SPLIT_SETTINGS, check_same_split
from dermkit.errors import DermkitError


def test_the_same_split_and_unrecorded_hashes_are_accepted() -> None:
    for made_on in ("abc", ["abc", "abc"], None, "", ["", "abc"]):
        check_same_split(made_on, "abc", "file.json", made_by="It", remedy="retrain")


def test_another_split_is_refused_naming_both_hashes_the_file_and_what_to_do() -> None:
    with pytest.raises(DermkitError) as err:
        check_same_split("0ther", "abc", "/x/backbone.safetensors", made_by="The backbone",
                         remedy="pretrain a backbone on this split")
    message = str(err.value)
    assert "/x/backbone.safetensors" in message and "0ther" in message and "abc" in message
    assert "The backbone may have seen" in message and "pretrain a backbone on this split" in message
    assert all(setting in message for setting in SPLIT_SETTINGS)


def test_every_differing_hash_of_several_is_named() -> None:
    with pytest.raises(DermkitError, match="split hash b1, b2 there, abc in this run"):
        check_same_split(["abc", "b2", "b1", "b2"], "abc", "manifest.csv", made_by="Its generator", remedy="retrain")
