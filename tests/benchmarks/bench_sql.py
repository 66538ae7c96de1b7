"""Peak memory of an upload from PostgreSQL: 20,000 rows against 200,000, streamed and fetched whole.

A real PostgreSQL server (``tests/postgres_server.py``) holds a table of realistic orders (about 3 KB of
``jsonb`` each, ``fake_orders`` cycled with new ids). Each scenario runs in a fresh child process, so its
peak RSS (``ru_maxrss``) is its own, and uploads every order of the first N rows to a local stand-in
for Klar that answers at once (``_slow_server.py --delay-ms 0``):

- ``engine``: ``KlarUploadOperator``'s path: ``sql=`` through the Airflow connection's ``PostgresHook``
  (a server-side cursor, 1000 rows per fetch), local validation, batches of 1000, 4 requests in flight.
- ``fetchall``: the same engine fed from ``cursor.fetchall()`` of a plain cursor, the way a hand-written
  ``PostgresHook().get_records(sql)`` task reads: the whole result in the worker's memory first.

The figure that matters is the growth of the peak RSS from 20,000 to 200,000 rows for ``engine``: flat.
``fetchall`` runs only on sizes up to ``--fetchall-max`` (default 20,000: at about 18 KB of Python
objects per order, 200,000 rows would take some 3.5 GB of a machine others share); its memory above
the start per row is printed instead, with what the largest size would need.

Run: ``make bench`` (all benchmarks) or ``python -m tests.benchmarks.bench_sql [--rows 20000 200000]``.
Prints a table; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TOKEN = "bench-token"
SIZES = (20_000, 200_000)
TEMPLATES = 500
QUERY = "SELECT doc FROM bench_orders WHERE n <= {rows} ORDER BY n"


# -- children: each prints one JSON line with its figures ---------------------------------------------


def _engine(url: str) -> tuple[Any, Any]:
    os.environ["AIRFLOW_CONN_KLAR_DEFAULT"] = json.dumps(
        {"conn_type": "klar", "host": url, "password": TOKEN}
    )
    from airflow_provider_klar.hooks.klar import KlarHook
    from airflow_provider_klar.models import RecordValidator
    from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine

    quiet = logging.getLogger("bench.sql")
    quiet.setLevel(logging.WARNING)
    hook = KlarHook()
    settings = EngineSettings(resource="orders", api_version="07.2025", batch_size=1000, max_concurrency=4)
    return hook, UploadEngine(settings, hook, validator=RecordValidator("orders", "07.2025"), log=quiet)


def child(kind: str, rows: int, url: str) -> dict[str, Any]:
    """Upload the first ``rows`` rows; return the figures."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from airflow_provider_klar.upload._sql import SqlSource
    from airflow_provider_klar.upload.sources import iter_records

    logging.getLogger("airflow_provider_klar").setLevel(logging.WARNING)
    hook, engine = _engine(url)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    sql = QUERY.format(rows=rows)
    if kind == "engine":
        source: Any = SqlSource(sql, "bench_pg")
    else:
        # What a hand-written task does: the whole result first, then upload.
        fetched = PostgresHook(postgres_conn_id="bench_pg").get_records(sql)
        source = iter_records(row[0] for row in fetched)
    result = engine.run(source)
    hook.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if result.tally.accepted != rows:
        raise SystemExit(f"Only {result.tally.accepted} of {rows} rows were accepted.")
    return {
        "records": rows,
        "wall_s": time.perf_counter() - started,
        "start_rss_mb": before / 1024,  # kilobytes on Linux
        "peak_rss_mb": peak / 1024,
    }


# -- the parent: database, server, children, table ----------------------------------------------------


def fill(server: Any, rows: int) -> None:
    """Create ``bench_orders(n, doc)`` with ``rows`` orders: ``TEMPLATES`` fake orders cycled, new ids."""
    from airflow_provider_klar.sandbox.fake_data import fake_orders

    with server.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS bench_templates, bench_orders")
        conn.execute("CREATE TABLE bench_templates (k int PRIMARY KEY, doc jsonb)")
        with conn.cursor().copy("COPY bench_templates (k, doc) FROM STDIN") as copy:
            for k, order in enumerate(fake_orders(TEMPLATES, seed=7)):
                copy.write_row((k, json.dumps(order)))
        conn.execute(
            "CREATE TABLE bench_orders AS "
            "SELECT g AS n, jsonb_set(t.doc, '{id}', to_jsonb('ORD-' || g)) AS doc "
            f"FROM generate_series(1, {rows}) AS g JOIN bench_templates AS t ON t.k = g % {TEMPLATES}"
        )
        conn.execute("CREATE UNIQUE INDEX ON bench_orders (n)")
        conn.execute("VACUUM ANALYZE bench_orders")


def run_child(kind: str, rows: int, url: str, pg_uri: str) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter; return its figures."""
    command = [sys.executable, "-m", "tests.benchmarks.bench_sql", "--child", kind, str(rows), url]
    env = {**os.environ, "AIRFLOW_CONN_BENCH_PG": pg_uri}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"The {kind} child failed:\n{done.stderr[-3000:]}")
    return {"scenario": kind, **json.loads(done.stdout.strip().splitlines()[-1])}


def measure(sizes: tuple[int, ...], fetchall_max: int = SIZES[0]) -> dict[str, Any]:
    """Fill the table, run both scenarios on every size; return the rows and the RSS growth of each."""
    from tests.postgres_server import postgres_server

    rows: list[dict[str, Any]] = []
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_slow_server.py"), "--delay-ms", "0"],
        stdin=subprocess.PIPE,  # it serves until its stdin closes
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}"
        with postgres_server() as pg:
            fill(pg, max(sizes))
            for n in sizes:
                rows.append(run_child("engine", n, url, pg.uri))
                if n <= fetchall_max:
                    rows.append(run_child("fetchall", n, url, pg.uri))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
    peaks = [r["peak_rss_mb"] for r in rows if r["scenario"] == "engine"]
    growth = {"engine_rss_growth_mb": peaks[-1] - peaks[0]}
    whole = [r for r in rows if r["scenario"] == "fetchall"]
    if whole:
        per_row_kb = (whole[-1]["peak_rss_mb"] - whole[-1]["start_rss_mb"]) * 1024 / whole[-1]["records"]
        growth["fetchall_kb_per_row"] = per_row_kb
        growth["fetchall_mb_for_largest"] = per_row_kb * max(sizes) / 1024
    return {"rows": rows, "growth": growth}


def report(result: dict[str, Any]) -> None:
    print(f"{'scenario':<10}{'rows':>9}{'wall s':>9}{'start MB':>10}{'peak MB':>9}")
    for r in result["rows"]:
        print(
            f"{r['scenario']:<10}{r['records']:>9,}{r['wall_s']:>9.1f}{r['start_rss_mb']:>10.0f}{r['peak_rss_mb']:>9.0f}"
        )
    sizes = sorted({r["records"] for r in result["rows"]})
    growth = result["growth"]
    change = growth["engine_rss_growth_mb"]
    print(f"engine: peak RSS growth from {sizes[0]:,} to {sizes[-1]:,} rows: {change:+.0f} MB")
    if "fetchall_kb_per_row" in growth:
        print(
            f"fetchall: {growth['fetchall_kb_per_row']:.1f} KB per row above the start; "
            f"{sizes[-1]:,} rows would need about {growth['fetchall_mb_for_largest']:,.0f} MB"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (or, with ``--child``, one scenario); print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--fetchall-max", type=int, default=SIZES[0], help="largest size fetched whole")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "ROWS", "URL"))
    args = parser.parse_args(argv)
    if args.child:
        kind, rows, url = args.child
        print(json.dumps(child(kind, int(rows), url)))
        return {}
    result = measure(tuple(sorted(args.rows)), args.fetchall_max)
    report(result)
    return result


if __name__ == "__main__":
    main()
