"""Console output shared by every command: one rich console, progress bars and tables."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dermkit.errors import DermkitError

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def progress(transient: bool = False) -> Progress:
    """A rich progress bar with count, elapsed and remaining time (use as a context manager)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table; numbers are shown with 3 decimals, other cells as text."""
    tab = Table(title=title)
    for col in columns:
        tab.add_column(str(col), justify="left" if col == columns[0] else "right")
    for row in rows:
        tab.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    return tab


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print :func:`table` to the console (stdout, so it can be captured)."""
    Console().print(table(title, columns, rows))


def entry_point(func: F) -> F:
    """Decorate a ``main(argv=None)``: a :class:`DermkitError` prints its message and exits 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DermkitError as err:
            # soft_wrap: one line however narrow the terminal; escape: a path holding [brackets]
            # is text, not rich markup.
            console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
