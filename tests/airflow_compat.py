"""What the tests need of Airflow, imported the same way on the 2.11 and 3.x lines.

The provider itself imports through ``common-compat``; these are the test-only pieces it does not cover
(DAG bags, storing a DAG for ``dag.test()``, attaching a filesystem, reading stored asset events).
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

#: Whether the installed Airflow is of the 3.x line.
AIRFLOW_3 = Version(Version(AIRFLOW_VERSION).base_version) >= Version("3.0.0")


def dag_bag(dag_folder: str, **kwargs: Any) -> Any:
    """Return a ``DagBag`` of ``dag_folder`` (it moved in Airflow 3).

    :param dag_folder: The folder to parse.
    :param kwargs: Passed to ``DagBag``.
    """
    if AIRFLOW_3:
        from airflow.dag_processing.dagbag import DagBag
    else:
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=dag_folder, **kwargs)


def attach(protocol: str, *, fs: Any, conn_id: str | None = None) -> Any:
    """Attach an fsspec filesystem to ``ObjectStoragePath`` for ``protocol`` (and a connection id).

    :param protocol: The URL scheme, e.g. ``memory``.
    :param fs: The filesystem.
    :param conn_id: The connection the filesystem stands for, if any.
    """
    if AIRFLOW_3:
        from airflow.sdk.io.store import attach as _attach
    else:
        from airflow.io.store import attach as _attach
    return _attach(protocol, conn_id=conn_id, fs=fs)


def asset_event_count(uri: str, source_run_id: str) -> int:
    """Count the events of the asset ``uri`` (with or without its trailing slash) emitted by a DAG run.

    :param uri: The asset's URI, e.g. ``klar://orders``.
    :param source_run_id: The run that emitted them.
    """
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    if AIRFLOW_3:
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model

        key = Event.asset_id
    else:  # Airflow 2 calls assets datasets
        from airflow.models.dataset import DatasetEvent as Event
        from airflow.models.dataset import DatasetModel as Model

        key = Event.dataset_id
    uris = [uri.rstrip("/"), uri.rstrip("/") + "/"]
    with create_session() as session:
        query = (
            select(func.count())
            .select_from(Event)
            .join(Model, key == Model.id)
            .where(Model.uri.in_(uris), Event.source_run_id == source_run_id)
        )
        return int(session.scalar(query) or 0)


def reschedule_count(dag_id: str, task_id: str) -> int:
    """How many times the task instances of ``dag_id``.``task_id`` were rescheduled.

    :param dag_id: The DAG.
    :param task_id: The task.
    """
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        if AIRFLOW_3:  # reschedules point at the task instance's id
            from airflow.models.taskinstance import TaskInstance

            ids = [ti.id for ti in session.query(TaskInstance).filter_by(dag_id=dag_id, task_id=task_id)]
            return session.query(TaskReschedule).filter(TaskReschedule.ti_id.in_(ids)).count()
        return session.query(TaskReschedule).filter_by(dag_id=dag_id, task_id=task_id).count()


def import_string(path: str) -> Any:
    """Import a dotted path, as Airflow does when it rebuilds a trigger.

    :param path: ``module.attribute``.
    """
    if AIRFLOW_3:
        from airflow.sdk._shared.module_loading import import_string as _import
    else:
        from airflow.utils.module_loading import import_string as _import
    return _import(path)
