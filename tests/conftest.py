"""Test-suite wide set-up: a private AIRFLOW_HOME with a SQLite metadata database.

The environment is set at import time, before anything imports Airflow, so no test ever touches a
developer's own ``~/airflow``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="klar-airflow-home-"))
_OWNER = os.getpid()
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "example_dags")
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ.pop("AIRFLOW_CONN_KLAR_DEFAULT", None)

# Imports Airflow: only after the environment above is set.
from tests.airflow_compat import AIRFLOW_3, attach  # noqa: E402


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the private AIRFLOW_HOME (its database and logs) when the session ends."""
    if os.getpid() == _OWNER:  # not in a process forked from the session, which shares the path
        shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """Create the SQLite metadata database once per session (``airflow db migrate``); yield AIRFLOW_HOME."""
    marker = _HOME / ".migrated"
    if not marker.exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        marker.touch()
    return _HOME


@pytest.fixture
def store_dag(airflow_db: Path, tmp_path: Path) -> Callable[[Any], None]:
    """Return a function that stores a DAG defined in a test in the metadata DB, as the DAG processor would.

    Airflow 3's ``dag.test()`` runs only DAGs stored in the metadata DB, normally from a bundle's files;
    a DAG built inside a test is stored directly, under the default bundle.
    """

    def store(dag: Any) -> None:
        if not AIRFLOW_3:
            dag.sync_to_db()  # Airflow 2 runs dag.test() from the DAG object; storing it is enough.
            return
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()
        empty = tmp_path / "no_dags"
        empty.mkdir(exist_ok=True)
        bag = DagBag(dag_folder=str(empty))
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)

    return store


@pytest.fixture
def memory_fs() -> Iterator[Any]:
    """An attached, emptied ``memory://`` filesystem (Airflow knows only ``file://`` by itself)."""
    import fsspec

    fs = fsspec.filesystem("memory")
    attach("memory", fs=fs)
    # Emptied before and after: the memory filesystem is one process-wide store.
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    yield fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
