"""Every preset's plan stays what it was: the steps, their commands and their keys (finished grids resume).

``fixtures/preset_plans.json`` was written by this file's :func:`preset_plans` from the code before
bench/ was split into rooms (issue 43); any change to a step's name, kind, module, arguments, outputs,
inputs or key shows here. A real change of plan regenerates the fixture on purpose::

    python -m tests.bench.test_preset_plans   # rewrites tests/bench/fixtures/preset_plans.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.grid.plan import build_steps
from bench.grid.presets import parse_args, preset_names
from dermkit.checkpoint import file_digest
from dermkit.config import REPO_ROOT

FIXTURE = Path(__file__).parent / "fixtures" / "preset_plans.json"
OUT = "<out>"
FINGERPRINT = {"dataset": "fixture", "images": 1, "split": "fixture", "image_size": 1}


def _finish(step: Any) -> None:
    """Make ``step`` look finished: each declared output a small file, ``done.json`` with their digests."""
    step.out_dir.mkdir(parents=True, exist_ok=True)
    for name in step.outputs:
        file = step.out_dir / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f"{step.name}/{name}\n")
    outputs = {name: file_digest(step.out_dir / name) for name in step.outputs}
    (step.out_dir / "done.json").write_text(json.dumps({"key": "fixture", "outputs": outputs}))


def _plain(value: str, out: Path) -> str:
    return value.replace(str(out), OUT).replace(str(REPO_ROOT), "<repo>")


def preset_plans(out: Path) -> dict[str, list[dict[str, Any]]]:
    """``{preset: [step record]}``: each step's fields, with the root ``out`` as ``<out>``, and its key
    (inputs made to look finished, each output holding its step's name, so every key can be computed)."""
    plans: dict[str, list[dict[str, Any]]] = {}
    for preset in preset_names():
        root = out / preset
        steps = build_steps(parse_args(["--preset", preset]), root)
        records = []
        for step in steps:  # inputs come before the steps that read them
            records.append({
                "name": step.name, "kind": step.kind, "module": step.module,
                "args": [_plain(a, root) for a in step.args], "out_dir": _plain(str(step.out_dir), root),
                "outputs": list(step.outputs), "inputs": [s.name for s in step.inputs],
                "cell": step.cell.cell_id if step.cell else None,
                "key": step.key(root, FINGERPRINT),
            })
            _finish(step)
        plans[preset] = records
    return plans


def test_every_preset_plan_is_unchanged(tmp_path: Path) -> None:
    expected = json.loads(FIXTURE.read_text())
    plans = preset_plans(tmp_path)
    assert sorted(plans) == sorted(expected), "a preset was added or removed: regenerate the fixture on purpose"
    for preset, records in plans.items():
        assert [r["name"] for r in records] == [r["name"] for r in expected[preset]], preset
        for got, want in zip(records, expected[preset]):
            assert got == want, f"preset {preset}, step {got['name']}"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        FIXTURE.write_text(json.dumps(preset_plans(Path(folder)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
