"""A real S3-compatible server for the object storage tests: moto's server mode, on a free loopback port.

The server runs in its own process (``moto[server]`` from PyPI, in the dev environment), so the code
under test talks to it over HTTP exactly as it would to S3, MinIO or any S3-compatible store: through
the Amazon provider's filesystem (``s3fs``) and an Airflow connection of type ``aws`` whose extra
``endpoint_url`` points at it. The child prints the port the OS gave it, so there is no race for one,
and it ends when its standard input closes, so it cannot outlive the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: Credentials moto accepts (it checks none); real ones must never be needed by the tests.
ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"

_CHILD = """
import sys
from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the parent closes it (or dies)
server.stop()
"""


@dataclass(frozen=True)
class S3Server:
    """A running server: ``endpoint`` is its URL, any bucket may be created in it."""

    endpoint: str

    def connection(self) -> str:
        """The Airflow connection (JSON, conn_type ``aws``) that points the Amazon provider at this server."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": self.endpoint, "region_name": REGION},
            }
        )

    def client(self) -> Any:
        """A boto3 S3 client for setting up and checking buckets from the test (not the code under test)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server in a child process on a free loopback port; stop it after.

    :raises RuntimeError: When the server does not start (moto not installed, or it failed).
    """
    # The server logs every request on stderr: a file, since a pipe nobody reads would fill and stall it.
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in the finally below, after the child)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()  # blocks until the server listens, or the child ends
        if not port.isdigit():
            child.kill()
            child.wait()
            log.seek(0)
            raise RuntimeError(
                f"moto's S3 server did not start (is moto[server] installed?):\n{log.read()[-2000:]}"
            )
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        log.close()
        if child.poll() is None:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
