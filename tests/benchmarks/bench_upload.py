"""Upload throughput, client CPU and peak memory: the upload engine against what users write today.

A JSON Lines file of realistic orders (``fake_orders``, about 3 KB each) goes to a local server that
waits 50 ms per request (``_slow_server.py``, its own process). Each scenario runs in a fresh child
process so that its peak RSS (``ru_maxrss``) and CPU seconds (``getrusage``) are its own:

- ``baseline``: ``json.load`` of the whole file (a JSON array), chunks of 1000, ``requests.post`` one
  after another: the script a user writes today.
- ``engine``: the operator's upload engine (streaming reader, local validation, batches of 1000,
  ``max_concurrency=4``) through ``KlarHook``.
- ``engine-2proc``: the engine with ``validation_workers=2``: two worker processes (started by
  multiprocessing's forkserver, which the child stops at the end so that its CPU and its workers' count
  in ``RUSAGE_CHILDREN``) parse, validate and encode chunks of lines. Its CPU and wall time include the
  forkserver's start (once per process).
- ``engine-no-val``: the same with ``validate_locally=False``, to tell validation from the rest.
- ``bare-validate``: ``Order.model_validate(json.loads(line))`` for every line and nothing else: bare
  pydantic validation as users write it (parse, then validate). The CPU target (<= 1.5x) is measured
  against this one.
- ``bare-validate-json``: ``Order.model_validate_json(line)`` for every line: pydantic's own fastest way
  from JSON bytes to a validated model (parsing and validation in one Rust pass). Its ratio is printed
  too, as the stricter floor; no upload that must also report unknown fields and pitfalls reaches it.

Every scenario reads the same records (``fake_orders(n, seed=7)``, written once as JSON Lines and once
as a JSON array with the same ``json.dumps`` text per record).

Run: ``make bench`` (all benchmarks) or ``python -m tests.benchmarks.bench_upload [--quick]``.
Prints a table and the ratios against the targets; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TOKEN = "bench-token"
FULL_SIZES = (20_000, 200_000)
QUICK_SIZES = (20_000,)
DELAY_MS = 50.0


# -- children: each prints one JSON line with its figures ---------------------------------------------


def _usage(cpu_before: float, wall_before: float, rss_before: int, records: int) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Worker processes (engine-2proc) count once they have ended, which they have by now; the other
    # scenarios start none.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "records": records,
        "wall_s": time.perf_counter() - wall_before,
        "cpu_s": usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime - cpu_before,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "start_rss_mb": rss_before / 1024,
    }


def _start() -> tuple[float, float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, time.perf_counter(), usage.ru_maxrss


def child_baseline(array_file: str, url: str) -> dict[str, Any]:
    """What users write today: load everything, post chunks of 1000 one after another."""
    import requests

    cpu, wall, rss = _start()
    with open(array_file) as handle:
        orders = json.load(handle)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for i in range(0, len(orders), 1000):
        answer = requests.post(f"{url}/07.2025/orders/json", json=orders[i : i + 1000], headers=headers)
        answer.raise_for_status()
    return _usage(cpu, wall, rss, len(orders))


def child_engine(jsonl_file: str, url: str, *, validate: bool = True, workers: int = 1) -> dict[str, Any]:
    """The upload engine as the operator runs it: streamed, validated, 4 requests in flight."""
    os.environ["AIRFLOW_CONN_KLAR_DEFAULT"] = json.dumps(
        {"conn_type": "klar", "host": url, "password": TOKEN}
    )
    import logging

    from airflow_provider_klar.hooks.klar import KlarHook
    from airflow_provider_klar.models import RecordValidator
    from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine
    from airflow_provider_klar.upload.sources import iter_path

    quiet = logging.getLogger("bench.upload")
    quiet.setLevel(logging.WARNING)
    # Set-up the operator does once per task (connection lookup, client, file listing) is not per record.
    hook = KlarHook()
    hook.get_conn()
    source = iter_path(jsonl_file, resource="orders")
    settings = EngineSettings(
        resource="orders",
        api_version="07.2025",
        batch_size=1000,
        max_concurrency=4,
        validation_workers=workers,
    )
    validator = RecordValidator("orders", "07.2025") if validate else None
    engine = UploadEngine(settings, hook, validator=validator, log=quiet)
    cpu, wall, rss = _start()
    result = engine.run(source)
    hook.close()
    if workers > 1:
        _stop_forkserver()
    figures = _usage(cpu, wall, rss, result.tally.records)
    if result.tally.accepted != result.tally.records:
        raise SystemExit(f"Only {result.tally.accepted} of {result.tally.records} records were accepted.")
    return figures


def _stop_forkserver() -> None:
    # The workers are the forkserver's children, not ours: their CPU reaches RUSAGE_CHILDREN only once
    # the forkserver (which reaped them) has ended and been waited for. ``_stop`` does both.
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def child_bare(jsonl_file: str, url: str) -> dict[str, Any]:
    """Bare pydantic validation of the same records: parse each line, ``Order.model_validate`` it."""
    from airflow_provider_klar.models import Order

    cpu, wall, rss = _start()
    count = 0
    validate = Order.model_validate
    with open(jsonl_file, "rb") as handle:
        for line in handle:
            validate(json.loads(line))
            count += 1
    return _usage(cpu, wall, rss, count)


def child_bare_json(jsonl_file: str, url: str) -> dict[str, Any]:
    """Bare pydantic validation straight from JSON: ``Order.model_validate_json`` of each line."""
    from airflow_provider_klar.models import Order

    cpu, wall, rss = _start()
    count = 0
    validate = Order.model_validate_json
    with open(jsonl_file, "rb") as handle:
        for line in handle:
            validate(line)
            count += 1
    return _usage(cpu, wall, rss, count)


def child_engine_2proc(jsonl_file: str, url: str) -> dict[str, Any]:
    """The engine with two validation worker processes (``validation_workers=2``)."""
    return child_engine(jsonl_file, url, workers=2)


def child_engine_unvalidated(jsonl_file: str, url: str) -> dict[str, Any]:
    """The engine with ``validate_locally=False``: what streaming and concurrency alone achieve."""
    return child_engine(jsonl_file, url, validate=False)


CHILDREN = {
    "baseline": child_baseline,
    "engine": child_engine,
    "engine-2proc": child_engine_2proc,
    "engine-no-val": child_engine_unvalidated,
    "bare-validate": child_bare,
    "bare-validate-json": child_bare_json,
}


# -- the parent: data, server, children, table --------------------------------------------------------


def write_data(folder: Path, n: int) -> tuple[Path, Path]:
    """Write ``n`` fake orders as JSON Lines and as one JSON array; return both paths."""
    from airflow_provider_klar.sandbox.fake_data import fake_orders

    jsonl, array = folder / f"orders-{n}.jsonl", folder / f"orders-{n}.json"
    with jsonl.open("w") as lines, array.open("w") as whole:
        whole.write("[")
        for i, order in enumerate(fake_orders(n, seed=7)):
            text = json.dumps(order)
            lines.write(text + "\n")
            whole.write(("," if i else "") + text + "\n")
        whole.write("]")
    return jsonl, array


def run_child(kind: str, data_file: Path, url: str) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter; return its figures."""
    command = [sys.executable, "-m", "tests.benchmarks.bench_upload", "--child", kind, str(data_file), url]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"The {kind} child failed:\n{done.stderr[-3000:]}")
    return {"scenario": kind, **json.loads(done.stdout.strip().splitlines()[-1])}


def measure(sizes: tuple[int, ...], delay_ms: float = DELAY_MS) -> dict[str, Any]:
    """Run every scenario on every size; return the rows and the ratios against the targets."""
    rows: list[dict[str, Any]] = []
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_slow_server.py"), "--delay-ms", str(delay_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().split()[1]}"
        with tempfile.TemporaryDirectory(prefix="klar-bench-") as tmp:
            for n in sizes:
                jsonl, array = write_data(Path(tmp), n)
                rows.append(run_child("baseline", array, url))
                rows.append(run_child("engine", jsonl, url))
                rows.append(run_child("engine-2proc", jsonl, url))
                rows.append(run_child("engine-no-val", jsonl, url))
                rows.append(run_child("bare-validate", jsonl, url))
                rows.append(run_child("bare-validate-json", jsonl, url))
                array.unlink()
                jsonl.unlink()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
    for row in rows:
        row["records_per_s"] = row["records"] / row["wall_s"]
        row["cpu_us_per_record"] = row["cpu_s"] / row["records"] * 1e6
    return {"rows": rows, "ratios": ratios(rows, sizes)}


def ratios(rows: list[dict[str, Any]], sizes: tuple[int, ...]) -> dict[str, Any]:
    """The figures the targets are about, for the largest size (and growth between sizes)."""

    def row(kind: str, n: int) -> dict[str, Any]:
        return next(r for r in rows if r["scenario"] == kind and r["records"] == n)

    big, small = max(sizes), min(sizes)
    out: dict[str, Any] = {
        "throughput_vs_baseline": row("engine", big)["records_per_s"] / row("baseline", big)["records_per_s"],
        "cpu_per_record_vs_bare_validation": row("engine", big)["cpu_us_per_record"]
        / row("bare-validate", big)["cpu_us_per_record"],
        "cpu_per_record_vs_bare_validate_json": row("engine", big)["cpu_us_per_record"]
        / row("bare-validate-json", big)["cpu_us_per_record"],
        "throughput_2proc_vs_baseline": row("engine-2proc", big)["records_per_s"]
        / row("baseline", big)["records_per_s"],
        "cpu_per_record_2proc_vs_bare_validation": row("engine-2proc", big)["cpu_us_per_record"]
        / row("bare-validate", big)["cpu_us_per_record"],
        "cpu_per_record_2proc_vs_engine": row("engine-2proc", big)["cpu_us_per_record"]
        / row("engine", big)["cpu_us_per_record"],
    }
    if big != small:
        out["engine_rss_growth_mb"] = row("engine", big)["peak_rss_mb"] - row("engine", small)["peak_rss_mb"]
        out["baseline_rss_growth_mb"] = (
            row("baseline", big)["peak_rss_mb"] - row("baseline", small)["peak_rss_mb"]
        )
    return out


def print_table(result: dict[str, Any]) -> None:
    """Print the rows and the ratios with their targets."""
    header = f"{'scenario':<14}{'records':>9}{'wall s':>9}{'records/s':>11}{'CPU s':>8}{'CPU µs/rec':>12}"
    print(header + f"{'peak RSS MB':>13}{'start RSS MB':>14}")
    for r in result["rows"]:
        print(
            f"{r['scenario']:<14}{r['records']:>9,}{r['wall_s']:>9.2f}{r['records_per_s']:>11,.0f}"
            f"{r['cpu_s']:>8.2f}{r['cpu_us_per_record']:>12.1f}{r['peak_rss_mb']:>13.0f}{r['start_rss_mb']:>14.0f}"
        )
    q = result["ratios"]
    print(f"throughput, engine / baseline:            {q['throughput_vs_baseline']:.2f}x   (target >= 3x)")
    print(
        f"client CPU per record, engine / bare:     {q['cpu_per_record_vs_bare_validation']:.2f}x   "
        "(target <= 1.5x; bare = json.loads + Order.model_validate)"
    )
    print(
        f"client CPU per record, engine / bare-json: {q['cpu_per_record_vs_bare_validate_json']:.2f}x  "
        "(for reference; bare-json = Order.model_validate_json)"
    )
    print(
        f"throughput, engine-2proc / baseline:      {q['throughput_2proc_vs_baseline']:.2f}x   (target >= 3x)"
    )
    print(
        f"client CPU per record, engine-2proc / bare: {q['cpu_per_record_2proc_vs_bare_validation']:.2f}x   "
        f"(engine-2proc / engine: {q['cpu_per_record_2proc_vs_engine']:.2f}x; workers' CPU included)"
    )
    if "engine_rss_growth_mb" in q:
        sizes = sorted({r["records"] for r in result["rows"]})
        span = f"{sizes[0]:,} -> {sizes[-1]:,}"
        engine, baseline = q["engine_rss_growth_mb"], q["baseline_rss_growth_mb"]
        print(f"peak RSS growth {span}, engine:    {engine:+.0f} MB (target < 100 MB)")
        print(f"peak RSS growth {span}, baseline:  {baseline:+.0f} MB (grows with the file)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (``--quick``: 20,000 records only; ``--records N``: N only) and print the table."""
    parser = argparse.ArgumentParser(prog="bench_upload")
    parser.add_argument("--quick", action="store_true", help="20,000 records only")
    parser.add_argument("--records", type=int, nargs="*", help="sizes to run instead of 20,000 and 200,000")
    parser.add_argument("--delay-ms", type=float, default=DELAY_MS)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "FILE", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)
    if args.child:
        kind, data_file, url = args.child
        print(json.dumps(CHILDREN[kind](data_file, url)), flush=True)
        return {}
    sizes = tuple(args.records) if args.records else (QUICK_SIZES if args.quick else FULL_SIZES)
    result = measure(sizes, args.delay_ms)
    print_table(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
