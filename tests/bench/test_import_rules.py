"""The import picture: ``bench`` and the shared library ``dermkit`` never import a stage package.

Stages talk through files and command lines: ``bench`` drives ``ssl``, ``synth`` and ``finetune``
only as ``python -m <stage> ...`` subprocesses and reads the files they write, and ``dermkit`` is
what the stages share, so it cannot depend on any of them. Every module is parsed (not imported),
and every import counts: at module level, inside functions, relative ones, and
``importlib.import_module`` / ``__import__`` calls with a literal name. (``ssl`` also names
Python's TLS module, but from the repository root, where everything runs, ``import ssl`` is our
stage: it counts too.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = frozenset({"ssl", "synth", "finetune"})


def module_name(path: Path) -> str:
    """``bench/foo.py`` -> ``bench.foo``; ``dermkit/data/__init__.py`` -> ``dermkit.data``."""
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The absolute module an ``ImportFrom`` reads (relative ones resolved against ``package``)."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: max(len(package.split(".")) - (node.level - 1), 0)] if package else []
    return ".".join([*base, *([node.module] if node.module else [])])


def _literal_import_call(node: ast.Call) -> str | None:
    """The module name of ``importlib.import_module("x")``, ``import_module("x")`` or ``__import__("x")``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name in ("import_module", "__import__") and node.args:
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source``, at any depth.

    Args:
        source: Python source of the module.
        module: its dotted name (relative imports are resolved against it).
        is_package: the source is a package's ``__init__.py`` (it is its own package).
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            found.append((node.lineno, base))
            if not node.module:  # ``from .. import synth``: each name is a module of that package
                found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and (name := _literal_import_call(node)) is not None:
            found.append((node.lineno, name))
    return found


def stage_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """The imports of ``source`` that reach into a stage package."""
    return [(line, name) for line, name in imported_modules(source, module, is_package)
            if name.split(".")[0] in STAGES]


@pytest.mark.parametrize("package", ["bench", "dermkit"])
def test_package_imports_no_stage(package: str) -> None:
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    assert len(files) > 5, f"{package}/ not found where expected ({REPO_ROOT / package})"
    violations = [f"{path.relative_to(REPO_ROOT)}:{line}: {name}"
                  for path in files
                  for line, name in stage_imports(path.read_text(), module_name(path), path.name == "__init__.py")]
    assert not violations, (f"{package}/ imports a stage package; run the stage as python -m <stage> and read its "
                            "files (bench), or move what both need into dermkit/:\n" + "\n".join(violations))


def test_every_kind_of_stage_import_is_seen() -> None:
    """The check itself: each way of importing a stage is caught, and nothing that only looks like one."""
    source = '''
import synth.train
import json, finetune as ft
from ssl.pretrain import main

def run():
    from synth import generate
    import importlib
    importlib.import_module("finetune.evaluate")
    return __import__("ssl")

class Bench:
    def method(self):
        from ..synth.model import PRESETS

from .. import finetune
'''
    found = sorted(stage_imports(source, "bench.sub.module"))
    assert found == [(2, "synth.train"), (3, "finetune"), (4, "ssl.pretrain"), (7, "synth"), (9, "finetune.evaluate"),
                     (10, "ssl")]  # lines 14 and 16 resolve inside bench (``..`` of bench.sub.module): not stages
    assert stage_imports("from ... import synth\n", "bench.sub.module") == [(1, "synth")]  # ``...``: above bench
    lookalikes = '''
import synthetic_data
from dermkit import ssl_hint
from bench.probes.synth_speed import main
command = ["python", "-m", "synth.train"]
getattr(module, "import_module")
'''
    assert stage_imports(lookalikes, "bench.x") == []


# -- bench/'s rooms (issue 43) ------------------------------------------------------------------
# bench/grid/ is the engine (presets, plan, keys, runner, cost, dry run, external), bench/report/ the
# report layer (results, statistics, verdicts, tables, figures, compare_cells, seed plans) and
# bench/probes/ the single-purpose measurements. bench/*.py holds only commands: the grid's CLI
# (label_efficiency) and one thin module per ``python -m bench.<name>`` that a user types.
ROOMS = ("grid", "report", "probes")
GRID_RECORDS = frozenset({"bench.grid.config", "bench.grid.keys"})  # what report/ may read of grid/
GRID_CLI = "label_efficiency"


def _bench_modules() -> list[tuple[Path, str]]:
    return [(path, module_name(path)) for path in sorted((REPO_ROOT / "bench").rglob("*.py"))]


def _bench_imports(path: Path, module: str) -> list[tuple[int, str]]:
    return [(line, name) for line, name in imported_modules(path.read_text(), module, path.name == "__init__.py")
            if name == "bench" or name.startswith("bench.")]


def _command_modules() -> set[str]:
    """``bench.<name>`` of each ``bench/<name>.py``: the commands."""
    return {module for path, module in _bench_modules() if path.parent.name == "bench" and path.name != "__init__.py"}


def test_every_bench_module_lives_in_a_room_or_is_a_command() -> None:
    stray = [module for path, module in _bench_modules()
             if module.count(".") == 2 and module.split(".")[1] not in ROOMS or module.count(".") > 2]
    assert not stray, f"bench/ modules outside bench/{{{','.join(ROOMS)}}}/: {stray}"


def test_command_modules_are_thin() -> None:
    """``bench/<name>.py`` (other than the grid's CLI) only runs ``main`` of the room module of the same name."""
    commands = [(path, module) for path, module in _bench_modules()
                if module in _command_modules() and module != f"bench.{GRID_CLI}"]
    assert len(commands) >= 10, "the thin command modules are missing"
    for path, module in commands:
        name = module.split(".")[1]
        imports = [found for _, found in _bench_imports(path, module)]
        assert imports in ([f"bench.{room}.{name}"] for room in ROOMS), (path, imports)
        assert len(path.read_text().splitlines()) <= 8, f"{path.relative_to(REPO_ROOT)} holds more than its command"


@pytest.mark.parametrize("room", ROOMS)
def test_rooms_import_rules(room: str) -> None:
    """Probes are leaves (no room imports them), nothing in a room imports a command module, and the report reads
    only the grid's records (its settings and cells), never its runner or plan."""
    commands = _command_modules()
    violations = []
    for path, module in _bench_modules():
        if not module.startswith(f"bench.{room}."):
            continue
        for line, name in _bench_imports(path, module):
            where = f"{path.relative_to(REPO_ROOT)}:{line}: {name}"
            if room != "probes" and name.startswith("bench.probes"):
                violations.append(f"{where} (probes are leaves)")
            if name in commands:
                violations.append(f"{where} (a command module: import its room's module)")
            if room == "report" and name.startswith("bench.grid.") and name not in GRID_RECORDS:
                violations.append(f"{where} (the report reads only {sorted(GRID_RECORDS)})")
    assert not violations, "\n".join(violations)


def test_bench_files_stay_small_and_class_names_unique() -> None:
    """No bench/ module over 500 lines, and no class name defined twice in bench/ or in bench/ and a stage."""
    long = [f"{path.relative_to(REPO_ROOT)}: {lines}" for path, _ in _bench_modules()
            if (lines := len(path.read_text().splitlines())) > 500]
    assert not long, long
    where: dict[str, list[str]] = {}
    for package in ("bench", "ssl", "synth", "finetune"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    where.setdefault(node.name, []).append(str(path.relative_to(REPO_ROOT)))
    twice = {name: paths for name, paths in where.items()
             if len(paths) > 1 and any(path.startswith("bench/") for path in paths)}
    assert not twice, twice
