"""Fixtures of the browser suite: a real Airflow 3 (api-server, scheduler, dag-processor, triggerer) and
headless Chromium (the Debian package, ``scripts/system-deps.sh`` installs it) driven by Playwright.

Airflow runs from the locked environment with a private ``AIRFLOW_HOME`` (SQLite, LocalExecutor), on a
free port of 127.0.0.1, in all-admins mode (no login), parsing only the demo DAG. The demo's data (300
generated orders, 2 of them invalid on purpose) is written by the same generator ``make demo`` uses.
Screenshots of each step go to ``$KLAR_SCREENSHOTS`` or ``tests/browser/.screenshots/``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_stack import AirflowStack, airflow_env, free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: Headless and quiet: no sandbox (root in CI), no GPU, no calls home (the machine has no internet).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_ORDERS = 300


def _demo_module() -> Any:
    spec = importlib.util.spec_from_file_location("klar_demo_script", REPO / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The folder the steps' screenshots go to, emptied first."""
    folder = Path(os.environ.get("KLAR_SCREENSHOTS") or REPO / "tests" / "browser" / ".screenshots")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="session")
def demo_data() -> Iterator[Path]:
    """A folder with the demo's exports (orders, refunds, logistics costs)."""
    folder = Path(tempfile.mkdtemp(prefix="klar-browser-data-"))
    _demo_module().generate_data(folder, DEMO_ORDERS)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_ui(demo_data: Path) -> Iterator[AirflowStack]:
    """A running Airflow 3 whose only DAG is the demo; stopped (its processes ended) at the end."""
    work = Path(tempfile.mkdtemp(prefix="klar-browser-airflow-"))
    home, dags = work / "home", work / "dags"
    home.mkdir()
    dags.mkdir()
    shutil.copy(REPO / "example_dags" / "klar_demo.py", dags / "klar_demo.py")
    port = free_port()
    # The demo reads its exports from the data folder and the logistics costs from the shop's SQLite
    # database there, through the connection make demo sets too.
    shop_var, shop_conn = _demo_module().shop_connection(demo_data)
    env = airflow_env(home, dags, port, {"KLAR_DEMO_DATA_DIR": str(demo_data), shop_var: shop_conn})
    stack = AirflowStack(home, f"http://127.0.0.1:{port}", env)
    try:
        stack.start()
        stack.wait_until(
            lambda: stack.api("GET", "/api/v2/dags/klar_demo").status_code == 200,
            180,
            "the dag-processor to store the demo DAG",
        )
        yield stack
    finally:
        stack.stop()
        if os.environ.get("KLAR_KEEP_AIRFLOW"):
            print(f"Kept the browser suite's Airflow home: {home}")
        else:
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium from the Debian package (never a downloaded build)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make sysdeps` (Debian package chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (its own context: no cookies from another test)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    try:
        yield context.new_page()
    finally:
        context.close()
