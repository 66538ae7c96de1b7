"""The "Klar" extra link: a button on every Klar task that opens Klar's app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey

#: Klar's web app, where uploaded data shows up once Klar's hourly pipeline has processed it.
KLAR_APP_URL = "https://app.getklar.com"


class KlarLink(BaseOperatorLink):
    """Link a task to Klar's app (the store the token belongs to is the one Klar opens after sign-in)."""

    name = "Klar"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """Return Klar's app URL.

        :param operator: The task the link belongs to.
        :param ti_key: The task instance the link is shown for.
        """
        return KLAR_APP_URL
