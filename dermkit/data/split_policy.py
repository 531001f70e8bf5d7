"""One policy for files made on a data split: another split than this run's is refused.

A backbone card (``ssl.pretrain``), a generator and its synthetic-image manifest (``synth.train``,
``synth.generate``) record the hash of the split their training images came from
(:attr:`dermkit.data.prepare.PreparedData.split_hash`). Whatever made such a file on another split
may have trained on this run's validation or test images, so every stage that reads one refuses a
mismatch with :func:`check_same_split`, naming both hashes, the file and the two ways out. A file
that records no split hash (an external weights file, a card written without one) is accepted:
there is nothing to compare.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dermkit.errors import DermkitError

# The data settings that decide the split: the same values give the same split hash.
SPLIT_SETTINGS: tuple[str, ...] = ("data.name", "data.root", "data.split_seed", "data.val_fraction",
                                   "data.test_fraction", "data.split_file")


def check_same_split(made_on: str | Iterable[str] | None, split_hash: str, file: str | Path, *, made_by: str,
                     remedy: str) -> None:
    """Refuse a file made on another split than this run's.

    Args:
        made_on: the split hash the file records, or several (a manifest's rows and header);
            empty strings and None mean "not recorded" and are ignored.
        split_hash: this run's split hash.
        file: the file, as the message names it.
        made_by: what may have seen the other split's images, as the subject of a sentence
            (``"The backbone"``, ``"Its generator"``).
        remedy: the alternative to matching the data settings, e.g. ``"pretrain a backbone on
            this split"``.

    Raises:
        DermkitError: a recorded hash differs from ``split_hash``; the message names the file, both
            hashes, :data:`SPLIT_SETTINGS` and ``remedy``.
    """
    recorded = {made_on} if made_on is None or isinstance(made_on, str) else set(made_on)
    others = sorted(str(h) for h in recorded if h and h != split_hash)
    if others:
        raise DermkitError(
            f"{file} was made on another split: split hash {', '.join(others)} there, {split_hash} in this run. "
            f"{made_by} may have seen this run's validation or test images. Use the data settings it was made "
            f"with ({', '.join(SPLIT_SETTINGS)}), or {remedy}.")
