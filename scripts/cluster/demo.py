"""``make cluster-demo``: the upload mapped over many files on Airflow's CeleryExecutor with two workers.

Starts, on loopback and free ports, in one temporary folder: PostgreSQL (the metadata database), Redis
(the Celery broker), the local Klar sandbox, and Airflow (``db migrate``, api-server, scheduler,
dag-processor, two ``airflow celery worker`` processes named ``worker-1`` and ``worker-2``). Creates the
``klar`` pool with 2 slots, writes the order files, triggers ``klar_cluster_demo`` (one
``KlarUploadOperator`` mapped over the files, ``pool="klar"``), waits for the run and then checks and
prints:

- what each worker did (task instances, files, records), from the metadata database;
- the most task instances that ran at once (their start and end times, every try), against the pool;
- that every order arrived exactly once: the sandbox stores as many ids as the files hold, and no id
  was written twice (the sandbox counts writes per id) unless a request failed and was sent again.

Stops everything it started, also on failure or Ctrl-C. Exits 1 when a check fails.

Usage: ``make cluster-demo`` or ``.venv/bin/python scripts/cluster/demo.py [--files 12]
[--orders 3000] [--summary out.json] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the shared server helpers of the test suites (tests/...) and scripts/cluster

from airflow_provider_klar.sandbox import SandboxServer  # noqa: E402
from airflow_provider_klar.sandbox.fake_data import fake_orders  # noqa: E402
from scripts.cluster.services import CeleryStack, redis_server  # noqa: E402
from tests.postgres_server import PostgresServer, postgres_server  # noqa: E402

DAG_ID = "klar_cluster_demo"
TASK_ID = "upload_orders"
POOL, POOL_SLOTS = "klar", 2


@dataclass
class Summary:
    """What the demo found; ``--summary`` writes it as JSON (the CI test reads it)."""

    run_state: str = ""
    files: int = 0
    records_in_files: int = 0
    distinct_ids_in_files: int = 0
    stored_ids: int = 0
    ids_sent_twice: int = 0
    ids_resent_after_failed_request: int = 0
    post_requests: int = 0
    failed_post_requests: int = 0
    pool_slots: int = POOL_SLOTS
    max_instances_at_once: int = 0
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def write_files(folder: Path, files: int, orders: int) -> dict[str, int]:
    """Split ``orders`` generated orders (distinct ids) over ``files`` JSON Lines files.

    :returns: Records per file name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    per_file, counts = orders // files, {}
    for i in range(files):
        # The last file takes the remainder, so the files hold exactly ``orders`` records.
        n = per_file if i < files - 1 else orders - per_file * (files - 1)
        name = f"orders-{i:02d}.jsonl"
        with (folder / name).open("w") as out:
            for order in fake_orders(n, start=i * per_file):
                out.write(json.dumps(order) + "\n")
        counts[name] = n
    return counts


def ids_in_files(folder: Path, names: Iterable[str]) -> Counter[str]:
    """Count every order id in the files."""
    ids: Counter[str] = Counter()
    for name in names:
        with (folder / name).open() as lines:
            ids.update(json.loads(line)["id"] for line in lines if line.strip())
    return ids


def task_tries(postgres: PostgresServer, run_id: str) -> list[dict[str, Any]]:
    """Every try of the mapped upload in the run, from the metadata database (earlier tries included)."""
    query = """
        SELECT map_index, try_number, state, hostname, start_date, end_date FROM task_instance
         WHERE dag_id = %(dag)s AND run_id = %(run)s AND task_id = %(task)s
        UNION ALL
        SELECT map_index, try_number, state, hostname, start_date, end_date FROM task_instance_history
         WHERE dag_id = %(dag)s AND run_id = %(run)s AND task_id = %(task)s
        ORDER BY map_index, try_number
    """
    with postgres.connect() as db, db.cursor() as cursor:
        cursor.execute(query, {"dag": DAG_ID, "run": run_id, "task": TASK_ID})
        columns = [c.name for c in cursor.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def most_at_once(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals that overlap at one instant (an end at t comes before a start at t)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    # Sorting (time, -1) before (time, +1): a slot freed at t is free for an instance starting at t.
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def check_sandbox(klar: SandboxServer, file_ids: Counter[str], summary: Summary) -> None:
    """Every id stored once; an id sent twice only when a request carrying it failed before."""
    summary.stored_ids = klar.count("orders")
    missing = [i for i in file_ids if klar.get("orders", i) is None]
    if summary.stored_ids != summary.distinct_ids_in_files or missing:
        summary.problems.append(
            f"Klar stores {summary.stored_ids} orders, the files hold {summary.distinct_ids_in_files} "
            f"distinct ids; missing: {missing[:5]}."
        )
    # The request log keeps counts, not ids; the store counts how often each id was written.
    writes = {i: (klar.stored("orders", i) or {}).get("writes", 0) for i in file_ids}
    twice = sorted(i for i, n in writes.items() if n > 1)
    posts = [r for r in klar.requests() if "/orders/" in r["path"] and r["path"].endswith("/json")]
    summary.post_requests = len(posts)
    summary.failed_post_requests = sum(1 for r in posts if r["status"] is None or r["status"] >= 300)
    if summary.failed_post_requests:
        # A request that failed or was dropped is sent again (the documented retry): it may write twice.
        summary.ids_resent_after_failed_request = len(twice)
    else:
        summary.ids_sent_twice = len(twice)
    if summary.ids_sent_twice:
        summary.problems.append(
            f"{summary.ids_sent_twice} ids were stored more than once though no request failed, "
            f"e.g. {twice[:5]}."
        )


def report_workers(tries: list[dict[str, Any]], files: dict[str, int], summary: Summary) -> None:
    """Per worker: the instances it ran (final tries), their files and records."""
    names = sorted(files)
    final = {t["map_index"]: t for t in tries if t["state"] == "success"}
    by_worker: dict[str, dict[str, Any]] = defaultdict(lambda: {"instances": 0, "files": [], "records": 0})
    for map_index, ti in sorted(final.items()):
        worker = by_worker[ti["hostname"] or "?"]
        worker["instances"] += 1
        worker["files"].append(names[map_index])
        worker["records"] += files[names[map_index]]
    summary.workers = dict(sorted(by_worker.items()))
    if len(final) != len(files):
        summary.problems.append(f"{len(final)} of {len(files)} mapped instances succeeded.")
    idle = [w for w in ("worker-1", "worker-2") if w not in by_worker]
    if idle:
        summary.problems.append(f"{', '.join(idle)} ran no task instance: the work was not spread.")


def run(args: argparse.Namespace, work: Path, summary: Summary) -> None:
    """Start everything, run the DAG, check (into ``summary``); stop everything on the way out."""
    data = work / "data"
    files = write_files(data, args.files, args.orders)
    file_ids = ids_in_files(data, files)
    summary.records_in_files = sum(file_ids.values())
    summary.distinct_ids_in_files = len(file_ids)
    with ExitStack() as stack:
        print(f"Working folder: {work}")
        postgres = stack.enter_context(postgres_server())
        print(f"PostgreSQL (metadata database) on 127.0.0.1:{postgres.port}")
        broker = stack.enter_context(redis_server(work))
        print(f"Redis (Celery broker) at {broker}")
        klar = stack.enter_context(SandboxServer())
        print(f"Klar sandbox on {klar.url}")
        name, value = klar.env_var("klar_default")
        home = work / "airflow-home"
        home.mkdir()
        airflow = CeleryStack.create(
            home,
            sql_alchemy_conn=f"postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/postgres",
            broker_url=broker,
            extra_env={name: value, "KLAR_CLUSTER_DATA": str(data), "KLAR_CLUSTER_FILES": str(args.files)},
        )
        stack.callback(airflow.stop)
        print("Migrating the metadata database; starting api-server, scheduler, dag-processor, 2 workers...")
        airflow.airflow("db", "migrate")
        # The pool recipe: every mapped instance takes one of its slots, whichever worker runs it.
        airflow.airflow("pools", "set", POOL, str(POOL_SLOTS), "Requests to Klar, across all workers")
        airflow.start(timeout=args.timeout)
        print(f"Airflow API on {airflow.url}; logs in {home}")
        run_id = airflow.trigger(DAG_ID)
        print(f"Triggered {DAG_ID} run {run_id}: {args.files} files, {args.orders} orders; waiting...")
        summary.run_state = airflow.wait_for_run(DAG_ID, run_id, timeout=args.timeout)
        if summary.run_state != "success":
            summary.problems.append(f"The run ended {summary.run_state}.")
        tries = task_tries(postgres, run_id)
        report_workers(tries, files, summary)
        finished = [(t["start_date"], t["end_date"]) for t in tries if t["start_date"] and t["end_date"]]
        summary.max_instances_at_once = most_at_once(finished)
        if summary.max_instances_at_once > POOL_SLOTS:
            summary.problems.append(
                f"{summary.max_instances_at_once} instances ran at once; the pool has {POOL_SLOTS} slots."
            )
        check_sandbox(klar, file_ids, summary)
        if summary.problems and not args.quiet_logs:
            for component in airflow.processes:
                print(f"--- end of {component}.log ---\n{airflow.log_tail(component)}")


def print_summary(summary: Summary) -> None:
    """The human-readable report."""
    print(f"\nRun state: {summary.run_state}")
    for worker, did in summary.workers.items():
        print(
            f"  {worker}: {did['instances']} task instances, {did['records']} records, "
            f"files {', '.join(did['files'])}"
        )
    print(
        f"Pool '{POOL}' ({summary.pool_slots} slots): at most {summary.max_instances_at_once} upload "
        "instances ran at once (start and end times of every try, metadata database)."
    )
    print(
        f"Klar stores {summary.stored_ids} orders; the {summary.files} files hold "
        f"{summary.records_in_files} records, {summary.distinct_ids_in_files} distinct ids; "
        f"{summary.post_requests} POSTs ({summary.failed_post_requests} failed); ids stored twice: "
        f"{summary.ids_sent_twice} (+ {summary.ids_resent_after_failed_request} after a failed request)."
    )
    for problem in summary.problems:
        print(f"PROBLEM: {problem}")
    print("OK: every record arrived exactly once." if not summary.problems else "FAILED")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the demo, print the report; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=12, help="order files (mapped instances)")
    parser.add_argument("--orders", type=int, default=3000, help="orders in all the files")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for each stage")
    parser.add_argument("--summary", type=Path, help="also write the findings as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, data)")
    parser.add_argument("--quiet-logs", action="store_true", help="on failure, do not print the log ends")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="klar-cluster-"))
    summary = Summary(files=args.files)
    try:
        run(args, work, summary)
    except KeyboardInterrupt:
        print("Interrupted: everything started was stopped.", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as error:
        summary.problems.append(str(error))
    finally:
        if args.keep:
            print(f"Kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(summary)
    if args.summary:
        args.summary.write_text(json.dumps(asdict(summary), indent=2, default=str))
    return 1 if summary.problems or summary.run_state != "success" else 0


if __name__ == "__main__":
    sys.exit(main())
