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
