"""``python -m ssl.<stage>`` outside the repository root: one line saying where to run it, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from dermkit.ssl_hint import PTH_NAME, hint, requested_module

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("argv", "module"), [
    (["python", "-m", "ssl.pretrain", "--help"], "ssl.pretrain"),
    (["python", "-u", "-W", "error", "-X", "dev", "-m", "ssl.evaluate"], "ssl.evaluate"),
    (["python", "-mssl.pretrain"], "ssl.pretrain"),
    (["python", "script.py", "-m", "ssl.pretrain"], None),  # the script's own arguments
    (["python", "-c", "import ssl", "-m", "ssl.x"], None),
    (["python"], None),
])
def test_requested_module_reads_the_interpreter_command_line(argv: list[str], module: str | None) -> None:
    assert requested_module(argv) == module


def test_hint_only_for_ssl_modules_outside_the_root(tmp_path: Path) -> None:
    message = hint(["python", "-m", "ssl.pretrain"], str(tmp_path))
    assert message is not None and str(REPO) in message and "repository root" in message
    assert hint(["python", "-m", "ssl.pretrain"], str(REPO)) is None  # the stage is found from the root
    assert hint(["python", "-m", "http.server"], str(tmp_path)) is None
    assert hint(["python", "-c", "import ssl"], str(tmp_path)) is None


@pytest.mark.skipif(not (Path(sysconfig.get_paths()["purelib"]) / PTH_NAME).is_file(),
                    reason=f"{PTH_NAME} is not installed in this environment (make install writes it)")
def test_outside_the_root_the_command_fails_with_one_line_and_tls_still_works(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "ssl.pretrain", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "repository root" in lines[0] and "Traceback" not in done.stderr
    tls = subprocess.run([sys.executable, "-c", "import ssl; ssl.create_default_context(); print('ok')"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert tls.returncode == 0 and tls.stdout.strip() == "ok"
    from_root = subprocess.run([sys.executable, "-m", "ssl.pretrain", "--help"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
    assert from_root.returncode == 0 and "usage: python -m ssl.pretrain" in from_root.stdout


@pytest.mark.skipif(not (Path(sysconfig.get_paths()["purelib"]) / PTH_NAME).is_file(),
                    reason=f"{PTH_NAME} is not installed in this environment (make install writes it)")
def test_another_checkout_imports_its_own_dermkit(tmp_path: Path) -> None:
    """The start-up check leaves no dermkit in sys.modules: a second checkout (a git worktree of a
    long run) imports its own dermkit/, not the editable install's."""
    (tmp_path / "dermkit").mkdir()
    (tmp_path / "dermkit" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", "import dermkit; print(dermkit.__file__)"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and Path(done.stdout.strip()) == tmp_path / "dermkit" / "__init__.py", done.stdout
