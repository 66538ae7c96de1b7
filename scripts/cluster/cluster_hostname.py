"""The ``[core] hostname_callable`` of ``make cluster-demo``: each Celery worker names itself.

Both workers of the demo run on one machine, so the real host name would not tell them apart. Each
worker process gets ``KLAR_CLUSTER_HOSTNAME`` (``worker-1``, ``worker-2``); a task instance's
``hostname`` in the metadata database then says which worker ran it.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """Return ``KLAR_CLUSTER_HOSTNAME``, or the machine's name outside a demo worker."""
    return os.environ.get("KLAR_CLUSTER_HOSTNAME") or socket.getfqdn()
