"""The `ssl` package must be a complete stand-in for the standard library's TLS module.

Each check runs in a fresh interpreter started in the repository root, where `import ssl` finds
our package first, exactly as `python -m ssl.pretrain` does.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_in_root(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


def test_ssl_is_our_package_and_a_working_tls_module() -> None:
    result = run_in_root("""
        import ssl, sys
        assert ssl.__file__.endswith("ssl/__init__.py"), ssl.__file__
        assert hasattr(ssl, "__path__")  # still a package: ssl.pretrain is importable
        ctx = ssl.create_default_context()
        assert isinstance(ctx, ssl.SSLContext)
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert ssl.PROTOCOL_TLS_CLIENT and ssl.OPENSSL_VERSION
        assert sys.modules["ssl"] is ssl
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_stdlib_code_runs_in_our_namespace() -> None:
    # A re-export would leave the functions' globals in another module, so patching ssl.X would
    # not reach the code that uses X. Here the stdlib functions see our module's namespace.
    result = run_in_root("""
        import ssl
        assert ssl.create_default_context.__globals__ is vars(ssl)
        assert ssl.SSLSocket.__module__ == "ssl"
        calls = []
        real = ssl.create_default_context
        def counting(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)
        ssl.create_default_context = counting
        ssl._create_default_https_context = counting
        import http.client
        http.client.HTTPSConnection("localhost")
        assert calls, "http.client did not go through the patched ssl module"
        print("ok")
    """)
    assert result.returncode == 0, result.stderr


def test_truststore_injection_reaches_the_stand_in() -> None:
    if importlib.util.find_spec("truststore") is None:
        pytest.skip("truststore is not installed")
    result = run_in_root("""
        import ssl, truststore
        truststore.inject_into_ssl()
        assert ssl.SSLContext is truststore.SSLContext
        ctx = ssl.create_default_context()
        assert isinstance(ctx, truststore.SSLContext), type(ctx)
        truststore.extract_from_ssl()
        print("ok")
    """)
    assert result.returncode == 0, result.stderr


def test_http_client_and_urllib3_build_tls_contexts() -> None:
    result = run_in_root("""
        import http.client, ssl
        conn = http.client.HTTPSConnection("localhost")
        assert isinstance(conn._context, ssl.SSLContext)
        import urllib3
        ctx = urllib3.util.ssl_.create_urllib3_context()
        assert isinstance(ctx, ssl.SSLContext)
        pool = urllib3.HTTPSConnectionPool("localhost", 443)
        print("ok")
    """)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module,code", [
    ("requests", "import requests; s = requests.Session(); a = s.get_adapter('https://x'); "
                 "a.init_poolmanager(1, 1); import ssl; print('ok')"),
    ("aiohttp", "import aiohttp, aiohttp.connector, ssl; "
                "ctx = aiohttp.connector._make_ssl_context(True); assert isinstance(ctx, ssl.SSLContext); print('ok')"),
    ("httpx", "import httpx, ssl; c = httpx.Client(); print('ok')"),
])
def test_optional_http_libraries(module: str, code: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    result = run_in_root(code)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_pytorch_lightning_imports_with_the_stand_in() -> None:
    result = run_in_root("import ssl, pytorch_lightning; assert ssl.__file__.endswith('__init__.py'); print('ok')")
    assert result.returncode == 0, result.stderr


def test_pretrain_help_runs_from_root() -> None:
    result = subprocess.run([sys.executable, "-m", "ssl.pretrain", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_nothing_outside_ssl_imports_ssl_submodules() -> None:
    offenders = []
    for path in REPO_ROOT.rglob("*.py"):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in ("ssl", "tests", ".venv") or "site-packages" in rel.parts:
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("from ssl.", "import ssl.")):
                offenders.append(f"{rel}: {stripped}")
    assert not offenders, offenders


def test_stand_in_holds_nothing_but_the_stdlib_loader() -> None:
    source = (REPO_ROOT / "ssl" / "__init__.py").read_text()
    code_lines = [l for l in source.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert len(code_lines) < 20, "ssl/__init__.py must only load the standard library's ssl module"
