"""The servers of ``make cluster-demo``: Redis, and Airflow on the CeleryExecutor with two workers.

PostgreSQL comes from ``tests/postgres_server.py`` (the SQL suite's throw-away server). Everything binds
127.0.0.1 on a port free at run time, lives in one temporary folder and is stopped by the context
managers here, also when the demo fails or is interrupted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.airflow_stack import AirflowStack, airflow_env, free_port

#: The processes of the demo's Airflow besides the workers (no triggerer: nothing defers).
COMPONENTS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}
#: Folder of the demo's DAG file and of its ``hostname_callable`` module.
CLUSTER = Path(__file__).resolve().parent


@contextmanager
def redis_server(folder: Path, timeout: float = 30.0) -> Iterator[str]:
    """Run ``redis-server`` on a free loopback port without persistence; yield its ``redis://`` URL.

    :param folder: Where its log goes.
    :param timeout: Seconds to wait for it to answer ``PING``.
    :raises RuntimeError: When the program is missing or does not answer in time.
    """
    program = shutil.which("redis-server")
    if program is None:
        raise RuntimeError(
            "redis-server is missing: run `bash scripts/system-deps.sh` as root "
            "(it installs the Debian package redis-server)."
        )
    port = free_port()
    log = folder / "redis.log"
    argv = [program, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(folder), "--logfile", str(log), "--daemonize", "no"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {port}:\n{text}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class CeleryStack(AirflowStack):
    """Airflow on the CeleryExecutor: api-server, scheduler, dag-processor and Celery workers.

    Every process shares one ``AIRFLOW_HOME`` (the api-server reads the task logs from its folder, so
    nothing serves logs on a port), one PostgreSQL database and one Redis broker. Each worker gets
    ``KLAR_CLUSTER_HOSTNAME=worker-<n>``, which ``cluster_hostname.hostname`` (the
    ``[core] hostname_callable``) turns into the task instances' ``hostname``. Build it with
    :meth:`create`.
    """

    workers: int = 2
    concurrency: int = 2

    @classmethod
    def create(
        cls,
        home: Path,
        *,
        sql_alchemy_conn: str,
        broker_url: str,
        extra_env: Mapping[str, str],
        workers: int = 2,
        concurrency: int = 2,
    ) -> CeleryStack:
        """Return the (not yet started) stack.

        :param home: The ``AIRFLOW_HOME`` (it exists).
        :param sql_alchemy_conn: The metadata database.
        :param broker_url: The Redis URL.
        :param extra_env: More variables for every process (the Klar connection, the data folder).
        :param workers: How many Celery workers.
        :param concurrency: Task processes per worker.
        """
        port = free_port()
        celery_env = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cluster_hostname.hostname",
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sql_alchemy_conn,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
            # The hostname_callable's module must import in every process.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(CLUSTER), os.environ.get("PYTHONPATH")])),
            **extra_env,
        }
        env = airflow_env(home, CLUSTER / "dags", port, celery_env)
        stack = cls(home=home, url=f"http://127.0.0.1:{port}", env=env)
        stack.workers, stack.concurrency = workers, concurrency
        return stack

    def start(self, timeout: float = 300.0) -> CeleryStack:
        """Start every process and wait until the API answers (migrate the database first)."""
        for component, arguments in COMPONENTS.items():
            self._launch(component, arguments, self.env)
        for n in range(1, self.workers + 1):
            name = f"worker-{n}"
            argv = ["celery", "worker", "--concurrency", str(self.concurrency),
                    "--celery-hostname", f"{name}@%h", "--skip-serve-logs"]  # fmt: skip
            self._launch(name, argv, {**self.env, "KLAR_CLUSTER_HOSTNAME": name})
        self.wait_until(self._api_up, timeout, "the api-server to answer /api/v2/monitor/health")
        # Both workers listen before anything is queued: a worker still starting when the first tasks
        # arrive would leave the other to take them all, and the run would show no spread.
        for n in range(1, self.workers + 1):
            name = f"worker-{n}"
            self.wait_until(
                lambda name=name: f"{name}@" in self.log_text(name) and " ready." in self.log_text(name),
                timeout,
                f"Celery {name} to report ready",
            )
        return self

    def airflow(self, *args: str) -> str:
        """Run an ``airflow`` CLI command against this stack's database; return its output.

        :param args: The command, e.g. ``("pools", "set", "klar", "2", "Klar API")``.
        :raises RuntimeError: When it fails (with its output).
        """
        argv = [sys.executable, "-m", "airflow", *args]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            output = done.stdout[-2000:] + done.stderr[-3000:]
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{output}")
        return done.stdout

    def _launch(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        with (self.home / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, so stop() ends the process with what it forked.
                start_new_session=True,
            )
