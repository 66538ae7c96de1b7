"""A real Airflow for the scheduler suite: api-server, scheduler, dag-processor and triggerer.

Each component is its own ``python -m airflow <component>`` process from the locked environment, with a
private ``AIRFLOW_HOME`` and SQLite database, the LocalExecutor, and the API on a free loopback port.
The simple auth manager runs in all-admins mode, so the REST API hands out tokens without a password.
Component output goes to ``<home>/<component>.log``; a failed wait quotes the end of every log.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Task instance states after which nothing more happens to a try.
FINISHED = {"success", "failed", "upstream_failed", "skipped", "removed"}

T = TypeVar("T")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(home: Path, dags_folder: Path, port: int, extra: Mapping[str, str]) -> dict[str, str]:
    """Return the environment of every component: one home, one database, one API.

    :param home: The ``AIRFLOW_HOME`` (it exists).
    :param dags_folder: What the dag-processor parses.
    :param port: The api-server's port on 127.0.0.1.
    :param extra: More variables, e.g. the Klar connection.
    """
    url = f"http://127.0.0.1:{port}"
    # The test process's own AIRFLOW_* settings (its home, its database) must not leak into the stack.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            # Every component signs or checks the same tokens (the default secret is random per process).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.update(extra)
    return env


class AirflowStack:
    """The running components; :meth:`stop` ends exactly the processes this object started.

    :param home: The ``AIRFLOW_HOME``.
    :param dags_folder: The DAG files.
    :param extra_env: More environment variables for every component.
    """

    def __init__(self, home: Path, dags_folder: Path, extra_env: Mapping[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = stack_env(home, dags_folder, self.port, extra_env)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        self._client = httpx.Client(base_url=self.url, timeout=30)

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 240.0) -> AirflowStack:
        """Migrate the database, start every component, wait until the API answers."""
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for component in COMPONENTS:
            with (self.home / f"{component}.log").open("wb") as log:
                self.processes[component] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", component],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Its own process group: stop() ends the component with what it forked.
                    start_new_session=True,
                )
        self.wait_until(self._api_up, timeout, "the api-server to answer /api/v2/monitor/health")
        return self

    def stop(self) -> None:
        """Terminate the components and everything they started, then wait for them."""
        descendants: list[psutil.Process] = []
        for process in self.processes.values():
            try:
                descendants += psutil.Process(process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Task processes that left the components' groups (none should be running by now).
        _gone, alive = psutil.wait_procs(descendants, timeout=10)
        for leftover in alive:
            leftover.kill()
        self._client.close()

    def log_text(self, component: str) -> str:
        """A component's whole log so far."""
        try:
            return (self.home / f"{component}.log").read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, component: str, lines: int = 25) -> str:
        """The end of a component's log."""
        try:
            text = (self.home / f"{component}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, condition: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
        """Poll ``condition()`` until it is truthy and return it; fail naming ``what`` after ``timeout`` s.

        A component that died fails the wait at once, with its log.
        """
        deadline = time.monotonic() + timeout
        while True:
            for component, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"Airflow's {component} exited with {process.returncode}:\n{self.log_tail(component)}"
                    )
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c}.log ---\n{self.log_tail(c)}" for c in self.processes)
                raise TimeoutError(f"Gave up after {timeout:.0f} s waiting for {what}.\n{logs}")
            time.sleep(interval)

    def _api_up(self) -> bool:
        try:
            return self._client.get("/api/v2/monitor/health").status_code == 200
        except httpx.HTTPError:
            return False

    # -- REST API ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API as an admin; return the decoded JSON answer (raise on an error status)."""
        if self._token is None:
            answer = self._client.get("/auth/token")
            answer.raise_for_status()
            self._token = str(answer.json()["access_token"])
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        answer = self._client.request(method, f"/api/v2{path}", headers=headers, **kwargs)
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the dag-processor has stored ``dag_id``."""

        def parsed() -> bool:
            try:
                self.api("GET", f"/dags/{dag_id}")
            except AssertionError:
                return False
            return True

        self.wait_until(parsed, timeout, f"the dag-processor to parse DAG {dag_id}", interval=0.5)

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a run of ``dag_id`` now; return its run id."""
        self.wait_for_dag(dag_id)
        run = self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})}
        )
        return str(run["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances (state, try_number, map_index, rendered_map_index, pid...)."""
        found = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return list(found["task_instances"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """One unmapped task instance of the run."""
        return next(t for t in self.task_instances(dag_id, run_id) if t["task_id"] == task_id)

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """The run's state."""
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180.0) -> str:
        """Wait until the run succeeded or failed; return its state."""

        def finished() -> str:
            state = self.run_state(dag_id, run_id)
            return state if state in {"success", "failed"} else ""

        return self.wait_until(
            finished,
            timeout,
            f"run {run_id} of {dag_id} to finish",
            interval=0.5,
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The text of one try's log, as the UI shows it."""
        found = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        content = found.get("content") if isinstance(found, dict) else found
        if isinstance(content, list):  # structured entries: keep every field (events, error details)
            return "\n".join(json.dumps(e) if isinstance(e, dict) else str(e) for e in content)
        return str(content)
