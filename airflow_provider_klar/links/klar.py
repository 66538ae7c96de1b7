"""The "Klar" extra link: a button on every Klar task that opens where its data went.

That is Klar's app, or, when the task's connection points at this machine (the local sandbox), the
sandbox's own page listing the records it stored for the task's resource.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.providers.common.compat.sdk import BaseHook, BaseOperatorLink

from airflow_provider_klar.hooks._connection import build_base_url, is_loopback
from airflow_provider_klar.resources import RESOURCES

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey

#: Klar's web app, where uploaded data shows up once Klar's hourly pipeline has processed it.
KLAR_APP_URL = "https://app.getklar.com"
#: The sandbox's page of stored records (``/_sandbox/records/<resource>``), and its API docs.
SANDBOX_RECORDS_PATH = "/_sandbox/records/{resource}"
SANDBOX_DOCS_PATH = "/docs"

log = logging.getLogger(__name__)


def klar_url_for(operator: Any) -> str:
    """Return where the link of ``operator`` leads: the sandbox's page when its connection is local.

    A connection whose base URL is on this machine (``localhost``, ``127.0.0.1``, ``::1``) is the
    sandbox: the link opens its stored records of the task's resource (its API docs when the task has
    no single resource). Any other connection, or one that cannot be read, gives Klar's app.

    :param operator: The task: a ``KlarUploadOperator`` or ``KlarStatusSensor`` (anything with
        ``klar_conn_id``; ``resource`` when it has one).
    """
    conn_id = getattr(operator, "klar_conn_id", None) or "klar_default"
    try:
        conn = BaseHook.get_connection(conn_id)
        base_url = build_base_url(conn_id, conn.host, conn.schema, conn.port)
    except Exception as err:  # a link must never fail the task or the page: fall back to Klar's app
        log.debug("No connection %r for the Klar link (%s); linking Klar's app.", conn_id, err)
        return KLAR_APP_URL
    hostname = urlsplit(base_url).hostname or ""
    if not is_loopback(hostname):
        return KLAR_APP_URL
    resource = getattr(operator, "resource", None)
    if isinstance(resource, str) and resource in RESOURCES:
        return base_url + SANDBOX_RECORDS_PATH.format(resource=quote(resource))
    return base_url + SANDBOX_DOCS_PATH


class KlarLink(BaseOperatorLink):
    """Link a task to where its data went: Klar's app, or the local sandbox's stored records.

    Klar's app opens the store the user signs in to (the token's store is not part of the URL).
    """

    name = "Klar"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """Return the URL the "Klar" button opens (see :func:`klar_url_for`).

        :param operator: The task the link belongs to.
        :param ti_key: The task instance the link is shown for.
        """
        return klar_url_for(operator)
