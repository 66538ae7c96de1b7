"""pytest plugin: the ``klar_sandbox`` fixture, a local Klar API for testing DAGs end to end.

Installed with airflow-provider-klar (entry point ``pytest11``), so any project's tests can use it::

    def test_my_dag_uploads_orders(klar_sandbox):
        run_my_dag()  # any KlarHook/KlarUploadOperator on klar_default now talks to the sandbox
        assert klar_sandbox.count("orders") == 42
        assert klar_sandbox.get("orders", "ORD-1")["financialStatus"] == "paid"

``klar_sandbox`` (function scope) yields a started
:class:`~airflow_provider_klar.sandbox.server.SandboxServer` with:

- ``url`` and ``token``; ``connection_uri()`` (the Airflow connection as JSON) and ``connection()``;
- ``count(resource)``, ``counts()``, ``get(resource, id)``, ``records(resource)``, ``status(resource)``;
- ``stored(resource, id)``: the current version of a record with ``api_version``, ``stored_at``,
  ``writes`` (times stored);
- ``requests()``: the log of POSTs (method, path, query, records, status, fault, duration_ms, state),
  each logged when it arrives and complete before its answer leaves; ``wait_for_requests(n)`` waits
  (on a condition, not a clock) until ``n`` of them are finished;
- ``set_faults(...)``: ``latency_ms``, ``latency_jitter_ms``, ``fail_rate``, ``fail_codes``,
  ``drop_rate``, ``rate_limit``, ``retry_after``, ``fail_next``, ``seed``, and the switches
  ``envelope`` (``"array"``/``"items"`` or ``{"cogs": "array"}``), ``max_body_bytes`` (413 beyond it)
  and ``echo_auth`` (repeat the ``Authorization`` header in error texts). ``fail_next`` scripts the next
  requests to Klar's routes, one entry each: a status (``429`` comes with ``Retry-After:
  <retry_after>``), ``[503, 2]`` (a status with that ``Retry-After``), ``"drop"`` (close the
  connection, nothing stored) or ``"drop_after"`` (store the batch, then close the connection: the
  answer is lost and the client retries).

The marker ``@pytest.mark.klar_sandbox(**knobs)`` sets knobs before the test starts, e.g.
``@pytest.mark.klar_sandbox(envelope="array", latency_jitter_ms=30)``; parametrize over it to run a
test against both envelopes.

For the test's duration ``AIRFLOW_CONN_KLAR_DEFAULT`` points at it. One server
(``klar_sandbox_server``, session scope) serves the whole session and is reset before each test:
records, status counters, the request log and faults start empty.

Options: ``--klar-sandbox-token`` (default ``dev-token``). FastAPI and uvicorn are imported only when a
test asks for the fixture (``pip install airflow-provider-klar[sandbox]`` on Airflow 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox.server import SandboxServer


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``klar_sandbox`` marker."""
    config.addinivalue_line(
        "markers", "klar_sandbox(**knobs): fault knobs and switches the klar_sandbox fixture starts with"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--klar-sandbox-token``."""
    group = parser.getgroup("klar-sandbox", "Klar sandbox")
    group.addoption(
        "--klar-sandbox-token",
        default="dev-token",
        help="bearer token the klar_sandbox fixture's server requires (default: dev-token)",
    )


@pytest.fixture(scope="session")
def klar_sandbox_server(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    """One Klar sandbox on a free loopback port for the whole session (not reset between tests)."""
    from airflow_provider_klar.sandbox.server import SandboxServer

    server = SandboxServer(token=request.config.getoption("--klar-sandbox-token"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def klar_sandbox(
    klar_sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> SandboxServer:
    """A running, empty Klar sandbox; ``AIRFLOW_CONN_KLAR_DEFAULT`` points at it during the test.

    Knobs of ``@pytest.mark.klar_sandbox(...)`` markers are applied after the reset (the closest marker
    wins for a knob set twice).
    """
    klar_sandbox_server.reset()
    knobs: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers("klar_sandbox"))):
        knobs.update(marker.kwargs)
    if knobs:
        klar_sandbox_server.set_faults(**knobs)
    name, value = klar_sandbox_server.env_var("klar_default")
    monkeypatch.setenv(name, value)
    return klar_sandbox_server
