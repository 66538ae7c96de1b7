"""Parquet reading: peak memory stays flat however many row groups a file has.

For each size, a Parquet file of realistic orders (``fake_orders``, nested line items, taxes,
discounts) is written with row groups of ``--row-group`` rows. A fresh child process then reads it
as an upload does (``iter_path`` -> local validation -> compact JSON encoding, everything but HTTP)
and reports its peak RSS growth (``VmHWM`` after reading minus before, on Linux), so each figure is
that process's own. Next to it stands what holding the file at once would take: the uncompressed
size of its pages (Arrow's own figure, from the file's metadata), a floor for ``pq.read_table``, and
several times less than the same rows as Python dicts.

Run: ``make bench`` (all) or ``python -m tests.benchmarks.bench_parquet [--rows 20000 200000]``.
Prints a table; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
FULL_SIZES = (20_000, 200_000)
ROW_GROUP = 10_000


def write_orders(path: Path, rows: int, row_group: int, distinct: int | None = None) -> dict[str, Any]:
    """Write ``rows`` fake orders to ``path``, ``row_group`` rows per row group, holding one group at a time.

    :param path: The file to write.
    :param rows: How many orders.
    :param row_group: Rows per row group.
    :param distinct: Make only this many orders and repeat them (a quick large file for tests).
    """
    import itertools

    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_klar.sandbox.fake_data import fake_orders

    if distinct is None or distinct >= rows:
        orders = fake_orders(rows, seed=11)
    else:
        orders = itertools.islice(itertools.cycle(list(fake_orders(distinct, seed=11))), rows)
    # One schema for every group: inferred from every key of a large sample so that rarely filled
    # fields are typed (Table.from_pylist would take the first order's keys only).
    sample = [next(orders) for _ in range(min(rows, max(row_group, 2000)))]
    schema = pa.Table.from_struct_array(pa.array(sample)).schema
    writer = pq.ParquetWriter(path, schema)
    try:
        pending = sample
        while pending:
            writer.write_table(pa.Table.from_pylist(pending, schema=schema), row_group_size=row_group)
            pending = [order for _, order in zip(range(row_group), orders, strict=False)]
    finally:
        writer.close()
    meta = pq.ParquetFile(path).metadata
    return {
        "rows": meta.num_rows,
        "row_groups": meta.num_row_groups,
        "file_mb": path.stat().st_size / 2**20,
        "uncompressed_mb": sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) / 2**20,
    }


def _status_mb(field: str) -> float:
    # VmHWM (peak RSS) rather than ru_maxrss: on Linux ru_maxrss survives exec, so a child started by a
    # parent that held the generated orders would report the parent's peak as its own.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"No {field} in /proc/self/status (Linux only).")


def child_read(path: str, row_group: int) -> dict[str, Any]:
    """Read, validate and encode every row as an upload does; return records and peak RSS growth.

    Also samples the current RSS at every row group's end, so a test can tell flat from growing.
    """
    from airflow_provider_klar.models import RecordValidator
    from airflow_provider_klar.upload.prepare import make_preparer
    from airflow_provider_klar.upload.sources import iter_path

    prepare = make_preparer(RecordValidator("orders", "07.2025"), "id")
    source = iter_path(path, resource="orders")
    # Imports done and the file listed: what the upload itself adds starts here.
    before = _status_mb("VmHWM")
    started, cpu = time.perf_counter(), time.process_time()
    records = valid = 0
    samples = []
    for src in source:
        records += 1
        valid += prepare(src).encoded is not None
        if records % row_group == 0:
            samples.append(_status_mb("VmRSS"))
    after = _status_mb("VmHWM")
    return {
        "records": records,
        "valid": valid,
        "read_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "start_rss_mb": before,
        "peak_rss_mb": after,
        "rss_growth_mb": after - before,
        "rss_by_row_group_mb": samples,
    }


def measure(rows: int, row_group: int, folder: Path, distinct: int | None = None) -> dict[str, Any]:
    """Write a file of ``rows`` orders and read it in a fresh child process; return its figures.

    :param rows: How many orders.
    :param row_group: Rows per row group.
    :param folder: Where to write the file.
    :param distinct: Make only this many orders and repeat them.
    """
    path = folder / f"orders-{rows}.parquet"
    figures = write_orders(path, rows, row_group, distinct)
    command = [sys.executable, "-m", "tests.benchmarks.bench_parquet", "--child", str(path)]
    done = subprocess.run(
        [*command, "--row-group", str(row_group)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    if figures["valid"] != figures["rows"]:
        raise SystemExit(f"Only {figures['valid']} of {figures['rows']} rows were valid orders.")
    path.unlink()
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure each size and print the table; return the figures."""
    parser = argparse.ArgumentParser(prog="bench_parquet")
    parser.add_argument("--rows", type=int, nargs="+", default=list(FULL_SIZES))
    parser.add_argument("--row-group", type=int, default=ROW_GROUP)
    parser.add_argument("--distinct", type=int, help="make only this many orders and repeat them")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)
    if args.child:
        print(json.dumps(child_read(args.child, args.row_group)))
        return {}
    with tempfile.TemporaryDirectory(prefix="klar-bench-parquet-") as tmp:
        rows = [measure(n, args.row_group, Path(tmp), args.distinct) for n in args.rows]
    print(
        f"{'rows':>9} {'row groups':>10} {'file MB':>8} {'pages MB':>9} {'CPU us/row':>10} "
        f"{'start RSS MB':>12} {'peak RSS MB':>11} {'growth MB':>9}"
    )
    for r in rows:
        print(
            f"{r['rows']:>9,} {r['row_groups']:>10} {r['file_mb']:>8.1f} {r['uncompressed_mb']:>9.1f} "
            f"{r['cpu_s'] / r['records'] * 1e6:>10.0f} {r['start_rss_mb']:>12.1f} "
            f"{r['peak_rss_mb']:>11.1f} {r['rss_growth_mb']:>9.1f}"
        )
    print("(pages MB: the uncompressed data of the whole file, which reading it at once would hold;")
    print(" CPU us/row: reading, validating and encoding one order, in the reading process)")
    return {"rows": rows}


if __name__ == "__main__":
    main(sys.argv[1:])
