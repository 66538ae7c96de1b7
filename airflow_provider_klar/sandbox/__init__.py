"""A local stand-in for Klar's Open API, for development and tests.

``SandboxServer`` runs it in a background thread; ``klar-sandbox`` runs it from the shell; the pytest
fixture ``klar_sandbox`` (plugin :mod:`airflow_provider_klar.sandbox.pytest_plugin`) hands a running one
to each test. The names below are imported lazily, so importing this package does not import FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox.app import create_app
    from airflow_provider_klar.sandbox.engine import Sandbox
    from airflow_provider_klar.sandbox.server import SandboxClient, SandboxServer

__all__ = ["Sandbox", "SandboxClient", "SandboxServer", "create_app"]

_HOMES = {
    "create_app": "airflow_provider_klar.sandbox.app",
    "Sandbox": "airflow_provider_klar.sandbox.engine",
    "SandboxClient": "airflow_provider_klar.sandbox.server",
    "SandboxServer": "airflow_provider_klar.sandbox.server",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
