"""iter_records over what Airflow 3 hands a task for an upstream XCom: a list, and the lazy sequence of a
mapped task's results (records, or lists of records), inside a real ``dag.test()`` run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _dag(dag_id: str, out: Path) -> Any:
    from airflow.providers.common.compat.sdk import DAG, task

    from airflow_provider_klar.upload import iter_records

    with DAG(dag_id, schedule=None, catchup=False) as dag:

        @task
        def one_list() -> list[dict[str, Any]]:
            return [{"id": "L-0", "n": 0}, {"id": "L-1", "n": 1.5}]

        @task
        def one_order(i: int) -> dict[str, Any]:
            return {"id": f"M-{i}", "n": i}

        @task
        def a_page(page: int) -> list[dict[str, Any]]:
            return [{"id": f"P-{page}-{k}"} for k in range(page)]

        @task
        def read(listed: Any, mapped: Any, pages: Any) -> None:
            seen = {
                "listed_type": type(listed).__name__,
                "mapped_type": type(mapped).__name__,
                "listed": [(r.position, r.record) for r in iter_records(listed)],
                "mapped": [(r.position, r.record) for r in iter_records(mapped)],
                "pages": [(r.position, r.record["id"]) for r in iter_records(pages)],
            }
            out.write_text(json.dumps(seen))

        read(one_list(), one_order.expand(i=[0, 1, 2]), a_page.expand(page=[1, 0, 2]))
    return dag


def test_iter_records_reads_xcom_lists_and_lazy_mapped_results(
    store_dag: Callable[[Any], None], tmp_path: Path
) -> None:
    out = tmp_path / "seen.json"
    dag = _dag(f"klar_sources_xcom_{time.time_ns()}", out)
    store_dag(dag)

    run = dag.test()

    assert str(getattr(run.state, "value", run.state)) == "success"
    seen = json.loads(out.read_text())
    # LazyXComSequence on Airflow 3, LazyXComSelectSequence on 2.11: lazy either way, never a list.
    assert seen["mapped_type"].startswith("LazyXCom")
    assert seen["listed"] == [[0, {"id": "L-0", "n": 0}], [1, {"id": "L-1", "n": 1.5}]]
    assert seen["mapped"] == [
        [0, {"id": "M-0", "n": 0}],
        [1, {"id": "M-1", "n": 1}],
        [2, {"id": "M-2", "n": 2}],
    ]
