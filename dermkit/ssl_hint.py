"""Say where to run ``python -m ssl.<stage>`` when it is run outside the repository root.

``ssl/`` is both dermkit's pretraining stage and the name of Python's TLS module. From the
repository root Python finds the stage (the current folder comes first on ``sys.path``); anywhere
else it finds the TLS module, and ``python -m ssl.pretrain`` would stop with Python's own
``ModuleNotFoundError: __path__ attribute not found on 'ssl'``, which no import hook can intercept
(the error is raised before any finder is asked). ``make install`` therefore writes a one-line
``dermkit_ssl_hint.pth`` into the environment's site-packages (its line is :data:`PTH_LINE`),
which calls :func:`check` at interpreter start-up, before the command line is acted on. It does
nothing unless the command is ``python [options] -m ssl.<name>`` and the current folder holds no
dermkit ``ssl/`` stage; then it prints one line saying where to run the command and exits with
status 2. It uses only ``os`` and ``sys`` (already loaded at start-up) and reads ``sys.orig_argv``,
so any other interpreter start pays almost nothing.

Having checked, it takes ``dermkit`` out of ``sys.modules`` again: imported this early, before the
current folder is on ``sys.path``, the package would come from the editable install's checkout, and
every later ``import dermkit`` would get that copy, also in another checkout of the code (a git
worktree running a long job), whose own ``dermkit/`` would be silently ignored.
"""

from __future__ import annotations

import os
import sys

PTH_NAME = "dermkit_ssl_hint.pth"
PTH_LINE = "import dermkit.ssl_hint; dermkit.ssl_hint.check()\n"
# Interpreter options that take a separate value (``-W error``, ``-X dev``).
OPTIONS_WITH_VALUE = ("-W", "-X")
STAGE_MARKER = os.path.join("ssl", "pretrain.py")


def requested_module(argv: list[str]) -> str | None:
    """The module of ``python [options] -m MODULE ...`` in an interpreter command line, else None."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in OPTIONS_WITH_VALUE:
            i += 2
            continue
        if arg == "-m":
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith("-m"):
            return arg[2:]
        if arg == "-c" or arg == "-" or not arg.startswith("-"):
            return None  # a command string, stdin or a script: not -m
        i += 1
    return None


def hint(argv: list[str], cwd: str) -> str | None:
    """The message for a ``-m ssl.<name>`` run outside the repository root, else None."""
    module = requested_module(argv)
    if not module or not module.startswith("ssl.") or os.path.isfile(os.path.join(cwd, STAGE_MARKER)):
        return None
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    where = (f"the dermkit repository root ({root})" if os.path.isfile(os.path.join(root, STAGE_MARKER))
             else "the dermkit repository root")
    return (f"error: python -m {module} must be run from {where}: here Python finds its own TLS module 'ssl' "
            f"instead of dermkit's stage. cd to the repository root and run the same command again.")


def check() -> None:
    """Print the hint and exit with status 2 when it applies (called at interpreter start-up)."""
    message = hint(list(getattr(sys, "orig_argv", [])), os.getcwd())
    if message:
        print(message, file=sys.stderr, flush=True)
        os._exit(2)  # SystemExit is not allowed while site-packages' .pth files are processed
    for name in ("dermkit.ssl_hint", "dermkit"):  # a later import finds dermkit as it finds the stages
        sys.modules.pop(name, None)
