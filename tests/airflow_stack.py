"""A real Airflow 3 for the browser and scheduler suites: api-server, scheduler, dag-processor, triggerer.

Each component runs as its own ``python -m airflow ...`` process from the locked environment, with a
private ``AIRFLOW_HOME`` (SQLite, LocalExecutor), the API on a free loopback port, and the simple auth
manager in all-admins mode (no login page: every visitor is an admin). Their output goes to
``<home>/<component>.log``, named in failures. The DAG-run helpers (:meth:`AirflowStack.trigger`,
:meth:`AirflowStack.wait_for_run`...) go through the REST API, as a user's tooling would.
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

#: Each component and its command line. The scheduler and triggerer would also serve logs on fixed ports
#: (8793, 8794) of every interface; the api-server reads the log files directly, so they do not.
COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(home: Path, dags_folder: Path, port: int, extra: Mapping[str, str]) -> dict[str, str]:
    """Return the environment of every Airflow process: one home, one database, one API URL.

    :param home: The ``AIRFLOW_HOME`` (created by the caller).
    :param dags_folder: The folder the dag-processor parses.
    :param port: The api-server's port on 127.0.0.1.
    :param extra: More variables (e.g. the demo's data folder).
    """
    url = f"http://127.0.0.1:{port}"
    env = {
        key: value
        for key, value in os.environ.items()
        # Connections from the test process's environment would shadow the one the test creates in the UI.
        if not key.startswith(("AIRFLOW_", "AIRFLOW__"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            # Every process must sign and check the same tokens (the default is a random secret per process).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.update(extra)
    return env


@dataclass
class AirflowStack:
    """The running Airflow processes; :meth:`stop` ends exactly these.

    :param home: The ``AIRFLOW_HOME``.
    :param url: The api-server's base URL (the UI and the REST API).
    :param env: The processes' environment.
    """

    home: Path
    url: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _token: str | None = None

    def log_tail(self, component: str, lines: int = 30) -> str:
        """Return the end of a component's log."""
        path = self.home / f"{component}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self, component: str) -> str:
        """Return a component's whole log so far."""
        try:
            return (self.home / f"{component}.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 240.0) -> AirflowStack:
        """Migrate the database, start every component, and wait until the API answers."""
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for component, arguments in COMPONENTS.items():
            log = (self.home / f"{component}.log").open("wb")
            self.processes[component] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *arguments],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: stop() ends the component with the workers it forked.
                start_new_session=True,
            )
            log.close()
        self.wait_until(self._api_up, timeout, "the api-server to answer /api/v2/monitor/health")
        return self

    def _check_alive(self) -> None:
        for component, process in self.processes.items():
            if process.poll() is not None:
                code = process.returncode
                raise RuntimeError(
                    f"Airflow's {component} exited with code {code}:\n{self.log_tail(component)}"
                )

    def wait_until(self, condition: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
        """Poll ``condition()`` until it returns a truthy value; fail naming ``what`` after ``timeout`` s.

        A component that died fails the wait at once, with its log.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {c}.log ---\n{self.log_tail(c, 15)}" for c in self.processes)
                raise TimeoutError(f"Gave up after {timeout:.0f} s waiting for {what}.\n{tails}")
            time.sleep(interval)

    def _api_up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the REST API as an admin (all-admins mode hands out tokens without credentials)."""
        if self._token is None:
            answer = httpx.get(f"{self.url}/auth/token", timeout=10)
            answer.raise_for_status()
            self._token = str(answer.json()["access_token"])
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        """Terminate the processes this stack started (each with its children), then wait for them."""
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
        # Task processes that left their component's group (none should be running by now).
        _gone, alive = psutil.wait_procs(descendants, timeout=10)
        for leftover in alive:
            leftover.kill()

    # -- DAG runs through the REST API ------------------------------------------------------------

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2<path>``; return the decoded JSON answer, or fail with the answer's text.

        :param method: The HTTP method.
        :param path: The path after ``/api/v2``.
        :param kwargs: Passed to ``httpx.request`` (``json``, ``params``, ``headers``).
        """
        answer = self.api(method, f"/api/v2{path}", **kwargs)
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the dag-processor has stored ``dag_id``."""
        self.wait_until(
            lambda: self.api("GET", f"/api/v2/dags/{dag_id}").status_code == 200,
            timeout,
            f"the dag-processor to parse DAG {dag_id}",
        )

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a run of ``dag_id`` now; return its run id."""
        self.wait_for_dag(dag_id)
        body = {"logical_date": None, "conf": dict(conf or {})}
        return str(self.rest("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances (state, try_number, map_index, rendered_map_index, pid...)."""
        found = self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return list(found["task_instances"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """One unmapped task instance of the run."""
        return next(t for t in self.task_instances(dag_id, run_id) if t["task_id"] == task_id)

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The run's state."""
        return str(self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180.0) -> str:
        """Wait until the run succeeded or failed; return its state."""

        def finished() -> str:
            state = self.run_state(dag_id, run_id)
            return state if state in {"success", "failed"} else ""

        return str(self.wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish"))

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The text of one try's log as the UI gets it, every structured field included."""
        found = self.rest(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        content = found.get("content") if isinstance(found, dict) else found
        if isinstance(content, list):
            return "\n".join(json.dumps(e) if isinstance(e, dict) else str(e) for e in content)
        return str(content)
