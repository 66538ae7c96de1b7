"""``make cluster-demo`` in CI: the mapped upload on the CeleryExecutor, two workers, PostgreSQL and Redis.

Runs ``scripts/cluster/demo.py`` once, as a user would, and checks its JSON findings: the run succeeded,
both workers ran task instances, the ``klar`` pool (2 slots) never had more than 2 instances running
(start and end times from the metadata database) and every order arrived exactly once. The demo waits
on states (run state, API health) against deadlines; it never sleeps a fixed time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Airflow 3's components (api-server, dag-processor) and the Celery provider of the Airflow 3 lock file.
pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.airflow3_only, pytest.mark.timeout(1500)]


def test_cluster_demo_spreads_the_upload_over_two_celery_workers(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run `bash scripts/system-deps.sh` as root (make test does).")
    found = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "cluster" / "demo.py"), "--summary", str(found)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1400,
    )
    output = done.stdout[-6000:] + done.stderr[-4000:]
    assert done.returncode == 0, output
    summary = json.loads(found.read_text())
    assert summary["problems"] == [], output
    assert summary["run_state"] == "success", output
    assert set(summary["workers"]) == {"worker-1", "worker-2"}, output
    assert sum(w["instances"] for w in summary["workers"].values()) == 12, output
    assert all(w["instances"] >= 1 for w in summary["workers"].values()), output
    assert sum(w["records"] for w in summary["workers"].values()) == 3000, output
    assert 1 <= summary["max_instances_at_once"] <= 2, output
    assert summary["stored_ids"] == summary["distinct_ids_in_files"] == 3000, output
    assert summary["ids_sent_twice"] == 0, output
    assert "OK: every record arrived exactly once." in done.stdout
