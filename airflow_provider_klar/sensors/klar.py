"""KlarStatusSensor: wait until Klar confirms a fresh submission of a resource, or fail when it failed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_klar import exceptions as klar_exceptions
from airflow_provider_klar.exceptions import (
    KlarConfigurationError,
    KlarError,
    KlarSubmissionFailedError,
    KlarTransientError,
)
from airflow_provider_klar.hooks._retry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_TIME,
    DEFAULT_MAX_RETRY_WAIT,
    check_retry_settings,
)
from airflow_provider_klar.resources import get_resource
from airflow_provider_klar.triggers.klar import KlarStatusTrigger, StatusState, check_status, to_utc

try:
    from airflow.sdk.exceptions import TaskDeferralTimeout
except ImportError:
    # Airflow 2 has no TaskDeferralTimeout: a trigger that outlives its deferral timeout resumes the
    # task with TaskDeferralError (which a crashed trigger raises too, so both count as a timeout there).
    from airflow.exceptions import TaskDeferralError as TaskDeferralTimeout  # type: ignore[no-redef]

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_klar.hooks.klar import KlarHook

#: Extra time given to Airflow's own deferral timeout, so the trigger's clearer timeout event wins.
DEFERRAL_GRACE_S = 60.0

#: The exception raised for an ``error`` event, by the name the trigger reports.
_ERROR_TYPES: dict[str, type[KlarError]] = {
    name: cls
    for name, cls in vars(klar_exceptions).items()
    if isinstance(cls, type) and issubclass(cls, KlarError)
}


class KlarStatusSensor(BaseSensorOperator):
    """Wait until Klar confirms a successful submission of ``resource`` made at or after ``since``.

    Done when Klar's ``lastSuccess >= since`` and, when given, ``total >= min_total``. When
    ``fail_on_failure`` is set and ``lastFailure >= since`` and ``lastFailure`` is newer than
    ``lastSuccess`` (or there is no success), the task fails at once with
    :class:`~airflow_provider_klar.exceptions.KlarSubmissionFailedError`, whose message gives both times;
    this is checked first, so a success after ``since`` followed by a failure (for instance another
    system's upload) fails the task too. Returns (pushes to XCom) the status as
    :meth:`KlarStatus.to_dict`.

    ``timeout`` counts from the start of the task (in reschedule mode, from the first try's start;
    in deferrable mode, the trigger's deadline is the same instant). On timeout the task fails with
    ``AirflowSensorTimeout``, or is skipped when ``soft_fail`` is set, in every mode. ``soft_fail``
    skips only timeouts: a failed submission, a rejected token (401/403) or a wrong URL (404) fail the
    task in every mode (``never_fail`` skips them too, as Airflow's base sensor does). Transient errors
    (network, 408, 425, 429, 5xx that remain after the hook's retries) are logged and the sensor keeps
    waiting.

    :param resource: The Klar resource: ``orders``, ``refunds``, ``cogs``, ``logistics-costs`` or
        ``transaction-costs``. Templated.
    :param since: Only submissions at or after this time count: a datetime (naive means UTC), an ISO 8601
        string such as an upload summary's ``started_at``
        (``"{{ ti.xcom_pull('upload')['started_at'] }}"``), or None for the start of the DAG run (the
        logical date, then the data interval start, when the run has no start date). Templated.
    :param min_total: When given, also wait until Klar's ``total`` (all objects submitted since
        2023-03-14, by every client) reaches it. Templated.
    :param fail_on_failure: Fail at once when the latest submission at or after ``since`` failed;
        when False, keep waiting for a success instead.
    :param klar_conn_id: The Airflow connection to Klar. Templated.
    :param api_version: The API version for the hook; the status path has none. Templated.
    :param max_attempts: Attempts per status request that may fail for other reasons than rate
        limiting, the first included; what remains after them is logged and the sensor keeps waiting.
    :param max_retry_wait: Longest wait between two attempts, in seconds; also caps ``Retry-After``
        (not to be confused with the base sensor's ``max_wait`` between pokes).
    :param max_retry_time: Most seconds one status request may take, its retries and waits included.
    :param deferrable: Check once, then hand the polling to :class:`KlarStatusTrigger` on the
        triggerer, freeing the worker slot. Defaults to ``[operators] default_deferrable``.
    :param kwargs: Passed to ``BaseSensorOperator``: ``poke_interval`` (also the trigger's poll
        interval), ``timeout``, ``mode``, ``soft_fail``...
    """

    template_fields: Sequence[str] = ("resource", "since", "min_total", "klar_conn_id", "api_version")
    ui_color = "#dff3ec"

    def __init__(
        self,
        *,
        resource: str = "orders",
        since: datetime | str | None = None,
        min_total: int | str | None = None,
        fail_on_failure: bool = True,
        klar_conn_id: str = "klar_default",
        api_version: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        max_retry_time: float = DEFAULT_MAX_RETRY_TIME,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        try:
            check_retry_settings(max_attempts, max_retry_wait, max_retry_time)
        except ValueError as err:
            raise KlarConfigurationError(str(err)) from None
        super().__init__(**kwargs)
        self.resource = resource
        self.since = since
        self.min_total = min_total
        self.fail_on_failure = fail_on_failure
        self.klar_conn_id = klar_conn_id
        self.api_version = api_version
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self.max_retry_time = max_retry_time
        self.deferrable = deferrable
        self._hook: KlarHook | None = None
        self._deadline: float | None = None

    # -- the inputs, read after templates are rendered -------------------------------------------

    def _checked_resource(self) -> str:
        try:
            return get_resource(str(self.resource)).name
        except ValueError as err:
            raise KlarConfigurationError(str(err)) from None

    def _checked_min_total(self) -> int | None:
        if self.min_total is None or self.min_total == "":
            return None
        try:
            value = int(self.min_total)
        except (TypeError, ValueError):
            raise KlarConfigurationError(
                f"min_total={self.min_total!r} is not a whole number of objects."
            ) from None
        if value < 0:
            raise KlarConfigurationError(f"min_total={value} must not be negative.")
        return value

    def resolve_since(self, context: Context) -> datetime:
        """Return ``since`` as an aware UTC datetime; None means the start of the DAG run.

        :param context: The task's context (for the DAG run when ``since`` is None).
        :raises KlarConfigurationError: When ``since`` cannot be read as a time.
        """
        value = self.since
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            dag_run = context.get("dag_run")
            value = (
                getattr(dag_run, "start_date", None)
                or context.get("logical_date")
                or context.get("data_interval_start")
            )
            if value is None:
                raise KlarConfigurationError(
                    "since=None means the start of the DAG run, but this run has no start date, logical "
                    "date nor data interval; pass since explicitly."
                )
        if not isinstance(value, (str, datetime, date)):
            raise KlarConfigurationError(
                f"since must be a datetime, an ISO 8601 string or None, not {type(value).__name__}."
            )
        return to_utc(value)

    @property
    def hook(self) -> KlarHook:
        """The hook used by ``poke``, created on first use and closed when ``execute`` ends."""
        if self._hook is None:
            from airflow_provider_klar.hooks.klar import KlarHook

            self._hook = KlarHook(
                klar_conn_id=self.klar_conn_id,
                api_version=self.api_version,
                max_attempts=self.max_attempts,
                max_retry_wait=self.max_retry_wait,
                max_retry_time=self.max_retry_time,
            )
        return self._hook

    # -- poke, reschedule and the first check of deferrable mode ---------------------------------

    def execute(self, context: Context) -> Any:
        """Poke until done (poke and reschedule modes), or check once and defer (deferrable mode)."""
        # Wall-clock, so that a deferred trigger's deadline is the same instant as poke mode's timeout.
        self._deadline = time.time() + self.timeout
        parent = super().execute
        # Airflow 2's guard against operators calling each other's execute() wraps every execute and
        # warns when a subclass calls its parent's; calling the parent's own function skips that false alarm.
        run = getattr(parent, "__wrapped__", None)
        try:
            return run(self, context) if run is not None else parent(context)
        finally:
            if self._hook is not None:
                self._hook.close()
                self._hook = None

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Check Klar's status once; in deferrable mode, defer to the trigger when not done yet."""
        resource = self._checked_resource()
        since = self.resolve_since(context)
        min_total = self._checked_min_total()
        try:
            status = self.hook.get_status(resource)
        except (KlarTransientError, httpx.TransportError) as err:
            # Klar being briefly unreachable is no reason to fail; `timeout` bounds the wait.
            self.log.warning(
                "Klar's %s status is unavailable (%s: %s); will check again.",
                resource,
                type(err).__name__,
                err,
            )
        else:
            check = check_status(
                status, since=since, min_total=min_total, fail_on_failure=self.fail_on_failure
            )
            if check.state is StatusState.FAILED:
                raise KlarSubmissionFailedError(check.reason)
            if check.state is StatusState.DONE:
                self.log.info("%s", check.reason)
                return PokeReturnValue(is_done=True, xcom_value=status.to_dict())
            self.log.info("Not confirmed yet: %s", check.reason)
        if self.deferrable:
            self._defer(resource, since, min_total)
        return False

    def _defer(self, resource: str, since: datetime, min_total: int | None) -> None:
        deadline = self._deadline if self._deadline is not None else time.time() + self.timeout
        remaining = deadline - time.time()
        if remaining <= 0:
            raise AirflowSensorTimeout(
                f"Sensor has timed out: Klar confirmed no {resource} submission within "
                f"{self.timeout} seconds."
            )
        self.log.info(
            "Deferring: the triggerer checks Klar every %.1f s for %.0f s more.",
            self.poke_interval,
            remaining,
        )
        self.defer(
            trigger=KlarStatusTrigger(
                resource=resource,
                since=since,
                end_time=deadline,
                klar_conn_id=self.klar_conn_id,
                api_version=self.api_version,
                min_total=min_total,
                fail_on_failure=self.fail_on_failure,
                poll_interval=self.poke_interval,
                max_attempts=self.max_attempts,
                max_retry_wait=self.max_retry_wait,
                max_retry_time=self.max_retry_time,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=remaining + DEFERRAL_GRACE_S),
        )

    # -- deferrable mode: the trigger's event -----------------------------------------------------

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Turn the trigger's event into the task's result: the status dict, or the matching exception.

        :param context: The task's context.
        :param event: The payload fired by :class:`KlarStatusTrigger`.
        :raises AirflowException: When the event is not one the trigger fires.
        """
        if not isinstance(event, dict) or not isinstance(event.get("status"), str):
            raise AirflowException(f"KlarStatusTrigger fired an unexpected event: {event!r}.")
        kind, message = event["status"], str(event.get("message") or "")
        if kind == "success":
            klar_status = event.get("klar_status")
            if not isinstance(klar_status, dict) or "last_success" not in klar_status:
                raise AirflowException(f"KlarStatusTrigger's success event carries no status: {event!r}.")
            self.log.info("%s", message or "Klar confirmed the submission.")
            return klar_status
        if kind == "failed":
            raise KlarSubmissionFailedError(message)
        if kind == "timeout":
            raise AirflowSensorTimeout(f"Sensor has timed out: {message}")
        if kind == "error":
            error_type = _ERROR_TYPES.get(str(event.get("error_type")), KlarError)
            raise error_type(message or "KlarStatusTrigger failed without a message.")
        raise AirflowException(f"KlarStatusTrigger fired an event of unknown status {kind!r}: {event!r}.")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Apply ``soft_fail`` and ``never_fail`` to the resumed task exactly as poke mode does.

        Airflow's base sensor skips any error of a resumed task when ``soft_fail`` is set, but only
        timeouts when poking; this follows the poke-mode rule so every mode behaves the same.
        """
        try:
            try:
                # Skip BaseSensorOperator's own handling; its soft_fail rule is the one replaced here.
                return super(BaseSensorOperator, self).resume_execution(next_method, next_kwargs, context)
            except TaskDeferralTimeout as err:
                raise AirflowSensorTimeout(*err.args) from err
        except (AirflowSensorTimeout, AirflowTaskTimeout, AirflowFailException) as err:
            if self.soft_fail:
                raise AirflowSkipException("Skipping due to soft_fail is set to True.") from err
            if self.never_fail:
                raise AirflowSkipException("Skipping due to never_fail is set to True.") from err
            raise
        except AirflowSkipException:
            raise
        except Exception as err:
            if self.never_fail:
                raise AirflowSkipException("Skipping due to never_fail is set to True.") from err
            raise
