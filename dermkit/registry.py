"""One way to register things by name: backbones, dataset readers, SSL methods and optimisers, losses,
loss weightings, samplers, diffusion samplers, colour constancy methods.

A :class:`Registry` maps a name to an entry (a factory, a reader function, a method record). It
refuses a name registered twice (a programming error: ``ValueError``), lists its names for help
texts, and turns an unknown name from the user into a :class:`~dermkit.errors.DermkitError` that
names the closest entries and every known one. It is a read-only mapping otherwise (``in``,
iteration in registration order, ``registry[name]``, ``items()``), so code that used the plain
dicts these registries once were keeps working.

Example::

    LOSSES: Registry[LossFactory] = Registry("loss")

    @LOSSES.register("focal")
    def _focal(settings: LossSettings) -> nn.Module: ...

    LOSSES.lookup(cfg.loss.name, key="loss.name")(settings)  # unknown: "Unknown loss loss.name='focl'. ..."
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Generic, TypeVar

from dermkit.errors import DermkitError, did_you_mean

T = TypeVar("T")


class Registry(MutableMapping[str, T], Generic[T]):
    """Name -> entry, filled once at import time by :meth:`register` / :meth:`add`.

    Args:
        kind: what an entry is, as messages call it (``backbone``, ``dataset format``, ``loss``).
        sort_names: :meth:`names` (help texts, messages) lists the names sorted rather than in
            registration order (iteration keeps registration order either way).
    """

    def __init__(self, kind: str, sort_names: bool = False) -> None:
        self.kind = kind
        self.sort_names = sort_names
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name`` and return it.

        Raises:
            ValueError: ``name`` is registered already (two entries would silently shadow one another).
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@REGISTRY.register("name")`` above a function or class."""

        def add(entry: T) -> T:
            return self.add(name, entry)

        return add

    def names(self) -> list[str]:
        """The registered names, for help texts and messages (sorted when ``sort_names``)."""
        return sorted(self._entries) if self.sort_names else list(self._entries)

    def lookup(self, name: str, key: str = "") -> T:
        """The entry registered as ``name``, for a name the user gave.

        Args:
            name: the name asked for.
            key: the config key it came from, named in the message (e.g. ``data.name``).

        Raises:
            DermkitError: ``name`` is not registered; the message lists the closest names and
                every registered one.
        """
        if name not in self._entries:
            asked = f"{key}={name!r}" if key else repr(name)
            raise DermkitError(f"Unknown {self.kind} {asked}.{did_you_mean(name, self._entries)} "
                               f"Known: {', '.join(self.names())}.")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        # ``registry[name] = entry`` is add(): no way in replaces an entry unnoticed.
        self.add(name, entry)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
