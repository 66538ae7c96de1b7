"""A real PostgreSQL server for the SQL source's tests and benchmark, started on loopback and stopped after.

``scripts/system-deps.sh`` installs Debian's ``postgresql`` package (``make test`` runs it). This module
creates a throw-away cluster with ``initdb`` in a temporary folder, starts it with ``pg_ctl`` on a free
loopback port (its socket in that folder too, so nothing touches the system's cluster) and removes it
all when done. ``initdb`` refuses to run as root: as root, the cluster belongs to the ``postgres`` user
and the server runs as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (the newest version), or ``None``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``postgres`` superuser, no password (trust on loopback), database ``postgres``."""

    port: int
    folder: Path

    @property
    def uri(self) -> str:
        """The Airflow connection URI (conn_type ``postgres``)."""
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def connect(self) -> Any:
        """A psycopg (3) connection in autocommit mode."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL server in a temporary folder on a free loopback port; stop and remove it after.

    :raises RuntimeError: When the server programs are missing or the server does not start.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError(
            "PostgreSQL's server programs are missing: run `bash scripts/system-deps.sh` as root "
            "(it installs the Debian package postgresql)."
        )
    run_as: dict[str, Any] = {}
    # In /tmp itself (not below pytest's root-only tmp_path) so that the postgres user can reach it.
    folder = Path(tempfile.mkdtemp(prefix="klar-postgres-"))
    if os.geteuid() == 0:
        # initdb and postgres refuse to run as root.
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data, log = folder / "data", folder / "server.log"

    def run(*args: str) -> None:
        done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=folder, **run_as)
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}\n{tail}")

    started = False
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync")  # fmt: skip
        for attempt in range(3):
            port = _free_port()
            options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60",
                    "start")  # fmt: skip
            except RuntimeError:
                if attempt == 2:  # (another process may have taken the port between the check and start)
                    raise
                continue
            started = True
            break
        yield PostgresServer(port, folder)
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
