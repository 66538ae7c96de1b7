"""The pytest plugin and the sandbox package import without FastAPI or uvicorn (Airflow 2 without extras)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_provider_klar.sandbox import SandboxServer

CODE = """
import sys
sys.modules["fastapi"] = None
sys.modules["uvicorn"] = None
import airflow_provider_klar.sandbox as sandbox
import airflow_provider_klar.sandbox.pytest_plugin as plugin
assert callable(plugin.klar_sandbox)
try:
    sandbox.SandboxServer().start()
except ImportError as exc:
    print("ImportError", exc.name)
"""


def test_plugin_imports_without_fastapi_and_fails_only_when_used() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"ImportError uvicorn", "ImportError fastapi"}


def test_server_refuses_unknown_fault_knobs_before_starting() -> None:
    with pytest.raises(TypeError, match="latency_ms"):
        SandboxServer(latency=5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        SandboxServer(fail_rate=1.5)


def test_connection_helpers_and_a_repr_without_the_token() -> None:
    server = SandboxServer(port=8765, token="s3cret")
    assert "s3cret" not in repr(server)
    assert server.connection() == {"conn_type": "klar", "host": "http://127.0.0.1:8765", "password": "s3cret"}
    assert server.env_var() == ("AIRFLOW_CONN_KLAR_DEFAULT", server.connection_uri())


def test_sandbox_page_documents_every_knob_and_option() -> None:
    from pathlib import Path

    from airflow_provider_klar.sandbox.cli import build_parser
    from airflow_provider_klar.sandbox.faults import _KNOBS

    page = (Path(__file__).parents[2] / "docs" / "sandbox.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    missing = [knob for knob in _KNOBS if not any(f"`{knob}`" in row for row in rows)]
    options = [a.option_strings[0] for a in build_parser()._actions if a.option_strings[0] != "-h"]
    missing += [option for option in options if not any(row.startswith(f"| `{option}") for row in rows)]
    assert missing == []
