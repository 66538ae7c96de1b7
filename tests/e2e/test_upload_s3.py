"""KlarUploadOperator on real object storage: ``s3://`` paths against an S3-compatible server on loopback.

moto's server mode (``tests/s3_server.py``) plays S3; the Amazon provider's filesystem reaches it through
an ``aws`` connection whose extra ``endpoint_url`` points at it, as users point it at MinIO or any
S3-compatible store. Source files, the rejected file and the checkpoint all live in the bucket. Klar is
the sandbox (``klar_sandbox``), or, for the resume test, the scripted server of ``_dags.py``.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_klar.sandbox.fake_data import fake_orders
from tests.e2e import _dags
from tests.e2e._dags import ScriptedKlar, run_upload, upload_summary
from tests.s3_server import SECRET_KEY, S3Server, s3_server

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BUCKET = "exports"
CONN = "klar_s3"

# The scripted Klar of the resume tests, as a fixture of this module.
scripted_klar = _dags.scripted_klar


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An empty bucket, and the ``klar_s3`` Airflow connection pointing at the server; emptied after."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", s3.connection())
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def put_jsonl_gz(client: Any, key: str, records: list[Any]) -> None:
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    client.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(lines.encode()))


def keys(client: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def read_object(client: Any, key: str) -> str:
    return str(client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


def test_a_glob_of_gzipped_json_lines_with_the_rejected_file_and_checkpoint_on_s3(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    bucket: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    orders: list[Any] = list(fake_orders(150))
    orders[40]["cancelledAt"] = 0  # rejected locally
    for part in range(3):
        put_jsonl_gz(bucket, f"orders/daily/part-{part:04d}.jsonl.gz", orders[part * 50 : part * 50 + 50])
    # Spark's bookkeeping and a file of another kind: not matched, or skipped.
    bucket.put_object(Bucket=BUCKET, Key="orders/daily/_SUCCESS", Body=b"")
    bucket.put_object(Bucket=BUCKET, Key="orders/daily/README.txt", Body=b"not data")
    # A line that is not JSON, in a fourth file.
    put_jsonl_gz(bucket, "orders/daily/part-0003.jsonl.gz", ['{"id": "BROKEN", ', orders[0]])

    dag_run = run_upload(
        "klar_e2e_s3_glob",
        store_dag,
        path=f"s3://{CONN}@{BUCKET}/orders/daily/*.jsonl.gz",
        batch_size=40,
        max_rejected=2,
        rejected_path=f"s3://{CONN}@{BUCKET}/rejected/{{{{ ds }}}}.jsonl",
        checkpoint=f"s3://{CONN}@{BUCKET}/checkpoints",
    )

    assert dag_run.state == "success"
    summary = upload_summary(dag_run)
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (152, 150, 2)
    assert klar_sandbox.count("orders") == 149  # ORD-0 twice: Klar keeps one per id
    assert klar_sandbox.get("orders", "ORD-149") == orders[149]
    assert klar_sandbox.get("orders", "ORD-40") is None
    # The rejected file is on S3 (its URL in the summary carries no connection id), one line per record.
    ds = dag_run.logical_date.strftime("%Y-%m-%d") if dag_run.logical_date else None
    assert summary["rejected_path"] == f"s3://{BUCKET}/rejected/{ds}.jsonl"
    rejected = [json.loads(line) for line in read_object(bucket, f"rejected/{ds}.jsonl").splitlines()]
    assert sorted((r["id"], r["source"], r["line"]) for r in rejected) == [
        ("BROKEN", f"s3://{BUCKET}/orders/daily/part-0003.jsonl.gz", 1),
        ("ORD-40", f"s3://{BUCKET}/orders/daily/part-0000.jsonl.gz", 41),
    ]
    # A successful task leaves no checkpoint behind.
    assert keys(bucket, "checkpoints/") == []
    assert SECRET_KEY not in capfd.readouterr().out


def test_parquet_files_on_s3_with_the_connection_in_source_conn_id(
    store_dag: Callable[[Any], None],
    klar_sandbox: SandboxServer,
    airflow_db: Path,
    bucket: Any,
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    orders = list(fake_orders(120, seed=3))
    for part in range(2):
        buffer = io.BytesIO()
        chunk = orders[part * 60 : part * 60 + 60]
        pq.write_table(pa.Table.from_struct_array(pa.array(chunk)), buffer, row_group_size=25)
        bucket.put_object(Bucket=BUCKET, Key=f"unload/orders_{part}.parquet", Body=buffer.getvalue())

    dag_run = run_upload(
        "klar_e2e_s3_parquet",
        store_dag,
        path=f"s3://{BUCKET}/unload/",
        source_conn_id=CONN,
        batch_size=50,
        checkpoint=None,
    )

    assert dag_run.state == "success"
    summary = upload_summary(dag_run)
    assert (summary["records"], summary["accepted"], summary["rejected"]) == (120, 120, 0)
    assert klar_sandbox.count("orders") == 120
    stored = klar_sandbox.get("orders", "ORD-77")
    assert stored is not None
    assert stored["lineItems"] == orders[77]["lineItems"]


def test_a_retried_try_resumes_from_a_checkpoint_on_s3(
    store_dag: Callable[[Any], None],
    scripted_klar: ScriptedKlar,
    airflow_db: Path,
    bucket: Any,
) -> None:
    orders = list(fake_orders(200))
    put_jsonl_gz(bucket, "orders/all.jsonl.gz", orders)
    seen_at_second_try: list[str] = []

    def fail(number: int) -> int | None:
        if number == 5:  # the second try's first request: the first try's checkpoint must be on S3
            seen_at_second_try.extend(keys(bucket, "checkpoints/"))
        # The first try gets 401 on its 4th request (auth errors are not retried inside the hook).
        return 401 if number == 4 else None

    scripted_klar.fail = fail

    dag_run = run_upload(
        "klar_e2e_s3_resume",
        store_dag,
        path=f"s3://{CONN}@{BUCKET}/orders/all.jsonl.gz",
        batch_size=25,
        max_concurrency=1,
        checkpoint=f"s3://{CONN}@{BUCKET}/checkpoints/",
        retries=1,
        retry_delay=timedelta(0),
    )

    assert dag_run.state == "success"
    ti = dag_run.get_task_instance("upload")
    assert ti is not None
    assert ti.try_number == 2
    assert len(seen_at_second_try) == 1
    assert seen_at_second_try[0].startswith("checkpoints/")
    assert seen_at_second_try[0].endswith(".json")
    # Try 1: batches 1-3 confirmed, batch 4 refused; try 2 starts at ORD-75 and sends the rest once.
    assert scripted_klar.answers == [201, 201, 201, 401, *[201] * 5]
    sent = [i for batch in scripted_klar.received for i in batch]
    assert scripted_klar.received[3][0] == "ORD-75"
    assert sorted(sent) == sorted(f"ORD-{i}" for i in range(200))
    summary = upload_summary(dag_run)
    assert (summary["records"], summary["accepted"], summary["resumed_records"]) == (200, 200, 75)
    assert keys(bucket, "checkpoints/") == []
