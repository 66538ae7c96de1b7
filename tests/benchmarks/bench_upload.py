"""Upload throughput, client CPU and peak memory: the upload engine beside what users write instead.

Fake records (``airflow_provider_klar.sandbox.fake_data``: Magento-like orders of 2 to 3 KB, and flat
transaction costs) go to a local server that waits 50 ms per request and parses nothing
(``_slow_server.py``, its own process). Each scenario runs in a fresh child process so that its peak RSS
(``ru_maxrss``) and CPU seconds (``getrusage``, its own plus its ended children's) are its own:

- ``naive``: ``json.load`` of the whole file (a JSON array), chunks of 1000, ``requests.post`` one
  after another.
- ``script``: the 20-line script: stream the lines, join 1000 raw lines into a body, ``httpx`` in 4
  threads, no checks at all.
- ``floor``: ``Order.model_validate_json(line)`` for every line and nothing else: pydantic's own floor
  (parsing and validation in one Rust pass). The CPU target is measured against it.
- ``engine``: the operator's upload engine with the operator's defaults (JSON Lines, local validation,
  pitfall warnings and unknown-field reports, batches of 1000, ``max_concurrency=4``) through ``KlarHook``.
- ``engine-1cpu``: the same with its process pinned to one CPU (``sched_setaffinity``), for how the
  figures scale from one core to two.
- ``engine-no-val``: the same with ``validate_locally=False``.
- ``engine-2proc``: the same with ``validation_workers=2`` (workers' CPU included: the child stops the
  forkserver before reading ``RUSAGE_CHILDREN``).
- ``engine-list``, ``engine-array``: the same orders from a list of dicts (as ``records=`` hands over an
  XCom; the list is built before the clock starts, so its memory counts in the peak RSS) and from one
  JSON array file. ``floor-list`` is pydantic's floor on that list (``Order.model_validate`` of each
  dict): 200,000 dicts take 3 GB, far beyond the CPU's caches, and reading them costs more than
  reading lines of a file in order, to pydantic as to the engine.
- ``floor-unknown``, ``engine-unknown``: the same orders carrying fields the models do not know
  (``storeId``, and ``magentoItemId`` on each line item): pydantic's floor and the engine, which reports
  them and sends them.
- ``floor-pitfalls``, ``engine-pitfalls``: the same orders with line totals that do not add up (every
  order trips two or more pitfall warnings, which the engine counts and quotes): pydantic's floor and
  the engine.
- ``floor-costs``, ``engine-costs``, ``engine-csv``: flat transaction costs: pydantic's floor, the engine
  on JSON Lines and the engine on a CSV file of the same records.

Besides the ratios against the targets, each source is compared with JSON Lines of the same records:
``engine-list`` and ``engine-array`` against ``engine``, ``engine-csv`` against ``engine-costs``.

Sizes: every scenario runs at the main size (200,000; ``KLAR_BENCH_RECORDS`` or ``--records``); the
engine alone also runs at the memory sizes (20,000; add 1,000,000 with ``KLAR_BENCH_1M=1`` or
``--million``; ``KLAR_BENCH_MEMORY_RECORDS`` or ``--memory-records`` to change them) for the growth of its
peak RSS.

Run: ``make bench`` (all benchmarks) or ``python -m tests.benchmarks bench_upload``. Prints a table and
the ratios against the targets of issue 11; asserts nothing about timing. On a machine shared with
other work the absolute figures are noisy: the ratios within one run are what count.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TOKEN = "bench-token"
MAIN_SIZE = 200_000
MEMORY_SIZES = (20_000,)
MILLION = 1_000_000
DELAY_MS = 50.0
COSTS = "transaction-costs"

#: The targets of issue 11: (ratio key, label, comparison, bound).
TARGETS = (
    ("cpu_engine_vs_floor", "client CPU per record, engine / floor", "<=", 1.5),
    ("throughput_engine_vs_naive", "throughput, engine / naive", ">=", 4.0),
    ("throughput_no_val_vs_script", "throughput, engine-no-val / script", ">=", 0.5),
    ("engine_rss_growth_mb", "peak RSS growth of the engine", "<", 100.0),
)

#: Further ratios, printed for information: (ratio key, label).
INFO = (
    ("throughput_engine_vs_1cpu", "throughput, engine on 2 cores / on 1 core"),
    ("cpu_2proc_vs_floor", "client CPU per record, engine-2proc / floor"),
    ("throughput_2proc_vs_naive", "throughput, engine-2proc / naive"),
    ("cpu_list_vs_floor", "client CPU per record, engine-list / floor"),
    ("cpu_list_vs_floor_list", "client CPU per record, engine-list / floor-list"),
    ("cpu_array_vs_floor", "client CPU per record, engine-array / floor"),
    ("cpu_costs_vs_floor", "client CPU per record, engine-costs / floor-costs"),
    ("cpu_csv_vs_floor", "client CPU per record, engine-csv / floor-costs"),
    ("cpu_unknown_vs_floor", "client CPU per record, engine-unknown / floor-unknown"),
    ("cpu_pitfalls_vs_floor", "client CPU per record, engine-pitfalls / floor-pitfalls"),
    # The same records from another source, against the engine on JSON Lines.
    ("cpu_list_vs_engine", "client CPU per record, engine-list / engine"),
    ("cpu_array_vs_engine", "client CPU per record, engine-array / engine"),
    ("cpu_csv_vs_costs", "client CPU per record, engine-csv / engine-costs"),
)


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
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    return cpu, time.perf_counter(), usage.ru_maxrss


def child_naive(folder: str, url: str) -> dict[str, Any]:
    """What users write first: load everything, post chunks of 1000 one after another."""
    import requests

    cpu, wall, rss = _start()
    with open(Path(folder, "orders.json")) as handle:
        orders = json.load(handle)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with requests.Session() as session:
        for i in range(0, len(orders), 1000):
            answer = session.post(f"{url}/07.2025/orders/json", json=orders[i : i + 1000], headers=headers)
            answer.raise_for_status()
    return _usage(cpu, wall, rss, len(orders))


def child_script(folder: str, url: str) -> dict[str, Any]:
    """The 20-line script: raw lines joined into bodies, 4 requests in flight, no checks."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import httpx

    cpu, wall, rss = _start()
    client = httpx.Client(
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        limits=httpx.Limits(max_connections=4),
    )

    def post(lines: list[bytes]) -> int:
        client.post(f"{url}/07.2025/orders/json", content=b"[" + b",".join(lines) + b"]").raise_for_status()
        return len(lines)

    def chunks() -> Iterator[list[bytes]]:
        with open(Path(folder, "orders.jsonl"), "rb") as handle:
            chunk: list[bytes] = []
            for line in handle:
                chunk.append(line.rstrip(b"\n"))
                if len(chunk) == 1000:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    count = 0
    pending: list[Future[int]] = []
    with ThreadPoolExecutor(4) as pool:
        for chunk in chunks():
            pending.append(pool.submit(post, chunk))
            if len(pending) >= 8:  # a bounded queue, as anyone who ran out of memory once writes it
                count += pending.pop(0).result()
        count += sum(f.result() for f in pending)
    client.close()
    return _usage(cpu, wall, rss, count)


def _floor(path: Path, model: Any) -> dict[str, Any]:
    cpu, wall, rss = _start()
    count = 0
    validate = model.model_validate_json
    with open(path, "rb") as handle:
        for line in handle:
            validate(line)
            count += 1
    return _usage(cpu, wall, rss, count)


def child_floor(folder: str, url: str) -> dict[str, Any]:
    """Pydantic's floor: ``Order.model_validate_json`` of each line, nothing else."""
    from airflow_provider_klar.models import Order

    return _floor(Path(folder, "orders.jsonl"), Order)


def child_floor_list(folder: str, url: str) -> dict[str, Any]:
    """Pydantic's floor for a list of dicts: ``Order.model_validate(record)`` of each, the list built as
    ``engine-list`` builds it (before the clock)."""
    from airflow_provider_klar.models import Order

    with open(Path(folder, "orders.jsonl"), "rb") as handle:
        records = [json.loads(line) for line in handle]
    cpu, wall, rss = _start()
    validate = Order.model_validate
    for record in records:
        validate(record)
    return _usage(cpu, wall, rss, len(records))


def child_floor_unknown(folder: str, url: str) -> dict[str, Any]:
    """Pydantic's floor for the orders that carry fields the models do not know."""
    from airflow_provider_klar.models import Order

    return _floor(Path(folder, "orders-unknown.jsonl"), Order)


def child_floor_pitfalls(folder: str, url: str) -> dict[str, Any]:
    """Pydantic's floor for the orders whose line totals do not add up."""
    from airflow_provider_klar.models import Order

    return _floor(Path(folder, "orders-pitfalls.jsonl"), Order)


def child_floor_costs(folder: str, url: str) -> dict[str, Any]:
    """Pydantic's floor for the flat cost records (``TransactionCosts.model_validate_json``)."""
    from airflow_provider_klar.models.costs import TransactionCosts

    return _floor(Path(folder, "costs.jsonl"), TransactionCosts)


def _engine(
    url: str,
    source_of: Callable[[], Any],
    *,
    resource_name: str = "orders",
    validate: bool = True,
    workers: int = 1,
) -> dict[str, Any]:
    """The upload engine as the operator runs it: streamed, validated, 4 requests in flight."""
    os.environ["AIRFLOW_CONN_KLAR_DEFAULT"] = json.dumps(
        {"conn_type": "klar", "host": url, "password": TOKEN}
    )
    import logging

    from airflow_provider_klar.hooks.klar import KlarHook
    from airflow_provider_klar.models import RecordValidator
    from airflow_provider_klar.resources import get_resource
    from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine

    quiet = logging.getLogger("bench.upload")
    quiet.setLevel(logging.WARNING)
    row = get_resource(resource_name)
    # Set-up the operator does once per task (connection lookup, client, file listing) is not per record.
    hook = KlarHook()
    hook.get_conn()
    try:
        from airflow.providers.common.compat.sdk import get_hook_lineage_collector

        # Loaded once per task process (it reads the plugins) when the first file is opened.
        get_hook_lineage_collector()
    except ImportError:
        pass
    settings = EngineSettings(
        resource=row.name,
        api_version=row.default_version,
        id_field=row.id_field,
        key_fields=row.key_fields,
        validation_workers=workers,
    )
    validator = RecordValidator(row.name, row.default_version) if validate else None
    engine = UploadEngine(settings, hook, validator=validator, log=quiet)
    source = source_of()
    cpu, wall, rss = _start()
    result = engine.run(source)
    hook.close()
    if workers > 1:
        _stop_forkserver()
    figures = _usage(cpu, wall, rss, result.tally.records)
    if result.tally.accepted != result.tally.records or not result.tally.records:
        raise SystemExit(f"Only {result.tally.accepted} of {result.tally.records} records were accepted.")
    return figures


def _stop_forkserver() -> None:
    # The workers are the forkserver's children, not ours: their CPU reaches RUSAGE_CHILDREN only once
    # the forkserver (which reaped them) has ended and been waited for. ``_stop`` does both.
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def _path_source(path: Path, resource_name: str = "orders") -> Callable[[], Any]:
    def make() -> Any:
        from airflow_provider_klar.upload.sources import iter_path

        # As the operator reads files: JSON Lines lines unparsed, checked in one pass over their bytes.
        return iter_path(str(path), resource=resource_name, lazy=True)

    return make


def child_engine(folder: str, url: str) -> dict[str, Any]:
    """The engine with the operator's defaults on the JSON Lines file."""
    return _engine(url, _path_source(Path(folder, "orders.jsonl")))


def child_engine_1cpu(folder: str, url: str) -> dict[str, Any]:
    """The engine with defaults, its process pinned to one CPU: how the figures scale from 1 core to 2."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        return _engine(url, _path_source(Path(folder, "orders.jsonl")))
    finally:  # (the smoke test runs the scenarios in its own process)
        os.sched_setaffinity(0, cpus)


def child_engine_no_val(folder: str, url: str) -> dict[str, Any]:
    """The engine with ``validate_locally=False``: what streaming and concurrency alone cost."""
    return _engine(url, _path_source(Path(folder, "orders.jsonl")), validate=False)


def child_engine_2proc(folder: str, url: str) -> dict[str, Any]:
    """The engine with two validation worker processes (``validation_workers=2``)."""
    return _engine(url, _path_source(Path(folder, "orders.jsonl")), workers=2)


def child_engine_list(folder: str, url: str) -> dict[str, Any]:
    """The engine on a list of dicts, as ``records=`` gets them from an XCom (built before the clock)."""
    from airflow_provider_klar.upload.sources import iter_records

    with open(Path(folder, "orders.jsonl"), "rb") as handle:
        records = [json.loads(line) for line in handle]
    # This frame holds the list until the clock has stopped, as the operator's ``records`` attribute
    # holds it for the whole task and ``floor-list`` holds its own. Held only by the iterator, the list
    # would be freed when the iterator ends, inside the clock: freeing 200,000 orders' dicts costs about
    # 6 µs a record, and it is not the upload's.
    return _engine(url, lambda: iter_records(records))


def child_engine_array(folder: str, url: str) -> dict[str, Any]:
    """The engine on one JSON array file."""
    return _engine(url, _path_source(Path(folder, "orders.json")))


def child_engine_unknown(folder: str, url: str) -> dict[str, Any]:
    """The engine on orders that carry fields the models do not know (reported, and sent)."""
    return _engine(url, _path_source(Path(folder, "orders-unknown.jsonl")))


def child_engine_pitfalls(folder: str, url: str) -> dict[str, Any]:
    """The engine on orders whose line totals do not add up (warned about, counted, and sent)."""
    return _engine(url, _path_source(Path(folder, "orders-pitfalls.jsonl")))


def child_engine_costs(folder: str, url: str) -> dict[str, Any]:
    """The engine on flat transaction costs in JSON Lines."""
    return _engine(url, _path_source(Path(folder, "costs.jsonl"), COSTS), resource_name=COSTS)


def child_engine_csv(folder: str, url: str) -> dict[str, Any]:
    """The engine on the same transaction costs in a CSV file."""
    return _engine(url, _path_source(Path(folder, "costs.csv"), COSTS), resource_name=COSTS)


CHILDREN: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "naive": child_naive,
    "script": child_script,
    "floor": child_floor,
    "engine": child_engine,
    "engine-1cpu": child_engine_1cpu,
    "engine-no-val": child_engine_no_val,
    "engine-2proc": child_engine_2proc,
    "floor-list": child_floor_list,
    "engine-list": child_engine_list,
    "engine-array": child_engine_array,
    "floor-unknown": child_floor_unknown,
    "engine-unknown": child_engine_unknown,
    "floor-pitfalls": child_floor_pitfalls,
    "engine-pitfalls": child_engine_pitfalls,
    "floor-costs": child_floor_costs,
    "engine-costs": child_engine_costs,
    "engine-csv": child_engine_csv,
}


# -- the parent: data, server, children, table --------------------------------------------------------


def write_data(folder: Path, n: int, *, costs: bool = True) -> None:
    """Write ``n`` fake orders as JSON Lines and as one JSON array, the same with unknown fields and
    with line totals that do not add up, and ``n`` transaction costs as JSON Lines and CSV, into
    ``folder`` (``orders.jsonl``, ``orders.json``, ``orders-unknown.jsonl``, ``orders-pitfalls.jsonl``,
    ``costs.jsonl``, ``costs.csv``)."""
    from airflow_provider_klar.sandbox.fake_data import fake_orders, fake_transaction_costs

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "orders.jsonl").open("w") as lines, (folder / "orders.json").open("w") as whole:
        whole.write("[")
        for i, order in enumerate(fake_orders(n, seed=7)):
            text = json.dumps(order)
            lines.write(text + "\n")
            whole.write(("," if i else "") + text + "\n")
        whole.write("]")
    if not costs:
        return
    with (folder / "orders-unknown.jsonl").open("w") as lines:
        # Fields a shop's export may carry that Klar's models do not know: reported, and sent.
        for order in fake_orders(n, seed=7):
            order["storeId"] = 1
            for item in order.get("lineItems") or ():
                item["magentoItemId"] = f"M{item['id']}"
            lines.write(json.dumps(order) + "\n")
    with (folder / "orders-pitfalls.jsonl").open("w") as lines:
        # Totals a shop computed its own way: each line's gross no longer productGmv x quantity, its
        # net not gross less discounts and taxes. Warned about, counted, and sent.
        for order in fake_orders(n, seed=7):
            for item in order.get("lineItems") or ():
                item["productGmv"] = round(item["productGmv"] * 0.5, 2)
                item["totalAmountAfterTaxesAndDiscounts"] = round(
                    item["totalAmountAfterTaxesAndDiscounts"] * 1.37, 2
                )
            lines.write(json.dumps(order) + "\n")
    with (folder / "costs.jsonl").open("w") as lines, (folder / "costs.csv").open("w", newline="") as table:
        writer = csv.writer(table)
        writer.writerow(["orderId", "transactionCosts"])
        for record in fake_transaction_costs(n, seed=7):
            lines.write(json.dumps(record) + "\n")
            writer.writerow([record["orderId"], record["transactionCosts"]])


def run_child(kind: str, folder: Path, url: str, *, in_process: bool = False) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter (or in this one, for a smoke test); return its figures."""
    if in_process:
        return {"scenario": kind, **CHILDREN[kind](str(folder), url)}
    command = [sys.executable, "-m", "tests.benchmarks.bench_upload", "--child", kind, str(folder), url]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"The {kind} child failed:\n{done.stderr[-3000:]}")
    row = {"scenario": kind, **json.loads(done.stdout.strip().splitlines()[-1])}
    print(f"  {kind} on {row['records']:,} records: {row['wall_s']:.1f} s", file=sys.stderr, flush=True)
    return row


def measure(
    main_size: int,
    memory_sizes: tuple[int, ...],
    delay_ms: float = DELAY_MS,
    *,
    skip: tuple[str, ...] = (),
    in_process: bool = False,
) -> dict[str, Any]:
    """Run every scenario at ``main_size`` and the engine alone at ``memory_sizes``; return the rows and
    the ratios against the targets.

    :param skip: Scenarios not to run (their ratios are left out).
    :param in_process: Run the scenarios in this process, one after another: quick (no interpreter
        start per scenario) but their RSS and CPU figures are not their own. For smoke tests only.
    """
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
            folder = Path(tmp, str(main_size))
            write_data(folder, main_size)
            for kind in CHILDREN:
                if kind not in skip:
                    rows.append(run_child(kind, folder, url, in_process=in_process))
            for n in memory_sizes:
                if n == main_size:
                    continue
                folder = Path(tmp, str(n))
                write_data(folder, n, costs=False)
                rows.append(run_child("engine", folder, url, in_process=in_process))
                (folder / "orders.json").unlink()
                (folder / "orders.jsonl").unlink()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
    for row in rows:
        row["records_per_s"] = row["records"] / row["wall_s"]
        row["cpu_us_per_record"] = row["cpu_s"] / row["records"] * 1e6
    return {"rows": rows, "ratios": ratios(rows, main_size)}


def ratios(rows: list[dict[str, Any]], main_size: int) -> dict[str, float]:
    """The figures the targets are about, at the main size, and the engine's RSS growth over all sizes."""

    at_main = {r["scenario"]: r for r in rows if r["records"] == main_size}
    wanted = {
        # key: (figure, scenario, its reference)
        "cpu_engine_vs_floor": ("cpu_us_per_record", "engine", "floor"),
        "throughput_engine_vs_naive": ("records_per_s", "engine", "naive"),
        "throughput_no_val_vs_script": ("records_per_s", "engine-no-val", "script"),
        "throughput_engine_vs_1cpu": ("records_per_s", "engine", "engine-1cpu"),
        "cpu_2proc_vs_floor": ("cpu_us_per_record", "engine-2proc", "floor"),
        "throughput_2proc_vs_naive": ("records_per_s", "engine-2proc", "naive"),
        "cpu_list_vs_floor": ("cpu_us_per_record", "engine-list", "floor"),
        "cpu_list_vs_floor_list": ("cpu_us_per_record", "engine-list", "floor-list"),
        "cpu_array_vs_floor": ("cpu_us_per_record", "engine-array", "floor"),
        "cpu_costs_vs_floor": ("cpu_us_per_record", "engine-costs", "floor-costs"),
        "cpu_csv_vs_floor": ("cpu_us_per_record", "engine-csv", "floor-costs"),
        "cpu_unknown_vs_floor": ("cpu_us_per_record", "engine-unknown", "floor-unknown"),
        "cpu_pitfalls_vs_floor": ("cpu_us_per_record", "engine-pitfalls", "floor-pitfalls"),
        "cpu_list_vs_engine": ("cpu_us_per_record", "engine-list", "engine"),
        "cpu_array_vs_engine": ("cpu_us_per_record", "engine-array", "engine"),
        "cpu_csv_vs_costs": ("cpu_us_per_record", "engine-csv", "engine-costs"),
    }
    out = {
        # A floor too quick to register any CPU (tiny smoke-test inputs) must not divide by zero.
        key: float(at_main[kind][figure]) / max(float(at_main[ref][figure]), 1e-9)
        for key, (figure, kind, ref) in wanted.items()
        if kind in at_main and ref in at_main
    }
    engine = sorted((r for r in rows if r["scenario"] == "engine"), key=lambda r: r["records"])
    if len(engine) > 1:
        out["engine_rss_growth_mb"] = engine[-1]["peak_rss_mb"] - engine[0]["peak_rss_mb"]
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    """Return the rows and the ratios against the targets as Markdown tables (what ``--readme`` writes)."""
    lines = [
        "| scenario | records | wall s | records/s | CPU s | CPU µs/record | peak RSS MB |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['scenario']} | {r['records']:,} | {r['wall_s']:.2f} | {r['records_per_s']:,.0f} "
            f"| {r['cpu_s']:.2f} | {r['cpu_us_per_record']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    q = result["ratios"]
    lines += ["", "| ratio | measured | target |", "|---|--:|--:|"]
    for key, label, op, bound in TARGETS:
        unit = " MB" if key.endswith("_mb") else "x"
        if key not in q:
            lines.append(f"| {label} | not measured | {op} {bound:g}{unit} |")
            continue
        met = q[key] <= bound if op == "<=" else q[key] >= bound if op == ">=" else q[key] < bound
        verdict = "met" if met else "NOT met"
        lines.append(f"| {label} | {q[key]:.2f}{unit} | {op} {bound:g}{unit}, {verdict} |")
    for key, label in INFO:
        if key in q:
            lines.append(f"| {label} | {q[key]:.2f}x | |")
    return lines


def print_table(result: dict[str, Any]) -> None:
    """Print the rows and the ratios with their targets (Markdown)."""
    print("\n".join(markdown(result)))


#: The README's block of figures lies between these lines; ``--readme`` rewrites what is in between.
README_START = "<!-- bench_upload:start -->"
README_END = "<!-- bench_upload:end -->"


def write_readme(path: Path, result: dict[str, Any], command: str) -> None:
    """Replace the figures between :data:`README_START` and :data:`README_END` in ``path``.

    :param path: The README.
    :param result: What :func:`measure` returned.
    :param command: The command that produced the figures, quoted above them.
    """
    text = path.read_text()
    head, start, rest = text.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not (start and end):
        raise SystemExit(f"{path} has no {README_START} ... {README_END} block to rewrite.")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    when = time.strftime("%Y-%m-%d", time.gmtime())
    about = (
        f"Figures of {when} (`{command}`) on a machine with {os.cpu_count()} cores, load average {load} "
        "when the run ended:"
    )
    block = "\n".join(["", about, "", *markdown(result), ""])
    path.write_text(head + start + block + "\n" + end + tail)


def _sizes_from_env() -> tuple[int, tuple[int, ...]]:
    main_size = int(os.environ.get("KLAR_BENCH_RECORDS", MAIN_SIZE))
    memory = os.environ.get("KLAR_BENCH_MEMORY_RECORDS")
    sizes = tuple(int(s) for s in memory.split(",") if s.strip()) if memory else MEMORY_SIZES
    if os.environ.get("KLAR_BENCH_1M", "") not in ("", "0"):
        sizes += (MILLION,)
    return main_size, sizes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print the table; return the rows and ratios."""
    main_size, memory_sizes = _sizes_from_env()
    parser = argparse.ArgumentParser(prog="bench_upload")
    parser.add_argument("--records", type=int, default=main_size, help="records of every scenario")
    parser.add_argument(
        "--memory-records", type=int, nargs="*", default=memory_sizes, help="more sizes for the engine alone"
    )
    parser.add_argument("--million", action="store_true", help="add a 1,000,000 record engine row")
    parser.add_argument("--delay-ms", type=float, default=DELAY_MS)
    parser.add_argument("--skip", nargs="*", default=[], choices=list(CHILDREN), help="scenarios not to run")
    parser.add_argument("--in-process", action="store_true", help="smoke test: no child processes")
    parser.add_argument("--readme", type=Path, help="rewrite this README's block of figures with the results")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "FOLDER", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)
    if args.child:
        kind, folder, url = args.child
        print(json.dumps(CHILDREN[kind](folder, url)), flush=True)
        return {}
    memory = tuple(args.memory_records) + ((MILLION,) if args.million and MILLION not in memory_sizes else ())
    result = measure(args.records, memory, args.delay_ms, skip=tuple(args.skip), in_process=args.in_process)
    print_table(result)
    if args.readme is not None:
        command = " ".join(["python -m tests.benchmarks.bench_upload", *(argv or [])])
        write_readme(args.readme, result, command.replace(f" --readme {args.readme}", ""))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
