"""The main job: run the demo DAG against a local Klar sandbox, on a throw-away Airflow with SQLite.

Steps: start ``klar-sandbox`` on a free loopback port; create a temporary ``AIRFLOW_HOME`` and migrate
its SQLite database; write a few thousand generated orders (a few deliberately invalid), refunds and
logistics costs in a SQLite database; run ``airflow dags test klar_demo`` pointed at the sandbox through
``AIRFLOW_CONN_KLAR_DEFAULT``; print the upload summaries from XCom and what the sandbox stored; stop
the sandbox whatever happens. Exits non-zero when the DAG run fails.

Usage: ``make demo`` or ``.venv/bin/python scripts/demo.py [--orders N] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_klar.sandbox import SandboxClient

REPO = Path(__file__).resolve().parent.parent
TOKEN = "dev-token"
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception|Timeout): ")
LISTENING = re.compile(r"listening on (?P<url>http://\S+)")
#: Where the demo keeps the rejected orders file (the working folder with the original is removed).
KEPT_REJECTED = REPO / "demo-output" / "rejected-orders.jsonl"
UPLOAD_TASKS = ("upload_orders", "upload_refunds", "upload_logistics_costs")
RESOURCES = ("orders", "refunds", "logistics-costs")
SHOP_DB = "shop.db"


@contextmanager
def sandbox(work: Path) -> Iterator[SandboxClient]:
    """Run ``klar-sandbox`` as a subprocess on a free port; yield a client for it; always stop it."""
    from airflow_provider_klar.sandbox import SandboxClient

    log_path = work / "sandbox.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_klar.sandbox.cli", "--port", "0", "--token", TOKEN],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # The command's first line names its URL: "Klar sandbox listening on http://127.0.0.1:<port> ...".
        deadline = time.monotonic() + 60
        while (found := LISTENING.search(log_path.read_text(errors="replace"))) is None:
            if process.poll() is not None:
                raise SystemExit(f"The sandbox exited with code {process.returncode}:\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise SystemExit(f"The sandbox did not start within 60 s:\n{tail(log_path)}")
            time.sleep(0.1)
        with SandboxClient(found["url"], TOKEN) as client:
            yield client.wait_ready()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def failure_excerpt(path: Path, limit: int = 15) -> str:
    """Return the exception lines of an Airflow log (with their indented continuation), else its tail."""
    lines = path.read_text(errors="replace").splitlines()
    picked: list[str] = []
    for i, line in enumerate(lines):
        if EXCEPTION_LINE.match(line) and line not in picked:
            picked.append(line)
            picked.extend(
                more for more in lines[i + 1 : i + 11] if more.startswith("  ") and "File " not in more
            )
    return "\n".join(picked[:limit]) if picked else tail(path, limit)


def write_jsonl(path: Path, records: Iterator[Mapping[str, Any]] | list[dict[str, Any]]) -> int:
    """Write records as JSON Lines; return how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w") as out:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
            count += 1
    return count


def generate_data(data_dir: Path, n_orders: int) -> dict[str, int]:
    """Write the day's exports the demo DAG reads; return how many records of each kind."""
    from airflow_provider_klar.sandbox import fake_data

    files = 3
    per_file = n_orders // files
    written = 0
    for part in range(files):
        n = per_file if part < files - 1 else n_orders - per_file * (files - 1)
        orders = list(fake_data.fake_orders(n, seed=part, start=written))
        if part == files - 1:
            # Two classic mistakes, so the rejected path shows: a tax rate sent as a percentage, and
            # a timestamp in milliseconds.
            taxed = next(item for item in orders[-1]["lineItems"] if item.get("taxes"))
            taxed["taxes"][0]["taxRate"] = round(taxed["taxes"][0]["taxRate"] * 100, 2)
            orders[-2]["createdAt"] = orders[-2]["createdAt"] * 1000
        write_jsonl(data_dir / "orders" / f"orders-{part + 1:03d}.jsonl", orders)
        written += n

    n_refunds = max(1, n_orders // 10)
    write_jsonl(data_dir / "refunds.jsonl", fake_data.fake_refunds(n_refunds, seed=1))

    # The logistics costs live in the shop's database (SQLite here): the DAG reads them with sql=.
    costs = list(fake_data.fake_logistics_costs(n_orders, seed=2))
    data_dir.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(data_dir / SHOP_DB)) as conn, conn:
        conn.execute("DROP TABLE IF EXISTS logistics_costs")
        conn.execute("CREATE TABLE logistics_costs (order_id TEXT PRIMARY KEY, total_logistics_costs REAL)")
        conn.executemany(
            "INSERT INTO logistics_costs VALUES (?, ?)",
            ((row["orderId"], row["totalLogisticsCosts"]) for row in costs),
        )
    return {"orders": n_orders, "refunds": n_refunds, "logistics-costs": len(costs)}


def shop_connection(data_dir: Path) -> tuple[str, str]:
    """Return the environment variable and value of the demo DAG's ``klar_demo_shop`` connection: the
    SQLite database :func:`generate_data` writes."""
    value = json.dumps({"conn_type": "sqlite", "host": str(data_dir / SHOP_DB)})
    return "AIRFLOW_CONN_KLAR_DEMO_SHOP", value


def run(cmd: list[str], env: Mapping[str, str], log: Path, timeout: float) -> tuple[int, float]:
    """Run ``cmd`` with its output appended to ``log``; return the exit code and the seconds it took.

    A command still running after ``timeout`` seconds is killed and reported with exit code 124.
    """
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        try:
            code = subprocess.run(
                cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, check=False, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\nKilled after {timeout:.0f} s.\n")
            code = 124
    return code, time.monotonic() - started


def read_xcom(db: Path, dag_id: str) -> tuple[str | None, dict[str, Any]]:
    """Return the state of the latest run of ``dag_id`` and its tasks' ``return_value`` XComs."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if row is None:
            return None, {}
        run_id, state = row
        values: dict[str, Any] = {}
        for task_id, value in conn.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'",
            (dag_id, run_id),
        ):
            values[task_id] = json.loads(value) if isinstance(value, (str, bytes)) else value
        return state, values


def print_summaries(summaries: Mapping[str, Any]) -> None:
    """Print one line per upload task, then the rejected records."""
    print("\nUpload summaries (XCom of each upload task):")
    print(
        f"  {'task':<24}{'resource':<17}{'records':>8}{'batches':>9}"
        f"{'accepted':>10}{'rejected':>10}{'seconds':>9}"
    )
    for task_id in UPLOAD_TASKS:
        s = summaries.get(task_id)
        if not isinstance(s, Mapping):
            print(f"  {task_id:<24}(no summary)")
            continue
        print(
            f"  {task_id:<24}{s.get('resource', '?'):<17}{s.get('records', 0):>8}{s.get('batches', 0):>9}"
            f"{s.get('accepted', 0):>10}{s.get('rejected', 0):>10}{float(s.get('duration_s') or 0):>9.2f}"
        )
    orders = summaries.get("upload_orders")
    if isinstance(orders, Mapping) and orders.get("rejected"):
        print(f"  Rejected orders: {', '.join(map(str, orders.get('rejected_ids') or []))}")
        rejected_file = Path(str(orders.get("rejected_path") or ""))
        if rejected_file.is_file():
            # The working folder is removed at the end: keep a copy where the user can open it later.
            KEPT_REJECTED.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(rejected_file, KEPT_REJECTED)
            print(f"  The rejected records and their errors (JSON Lines) are kept in {KEPT_REJECTED}:")
            for line in rejected_file.read_text().splitlines()[:4]:
                entry = json.loads(line)
                errors = entry.get("errors") or []
                first = errors[0] if errors else {}
                print(f"    {entry.get('id')}: {first.get('path')}: {first.get('message')}")
    status = summaries.get("wait_for_orders")
    if isinstance(status, Mapping):
        print(
            f"\nKlarStatusSensor wait_for_orders: Klar reports total={status.get('total')}, "
            f"last_batch_count={status.get('last_batch_count')}, last_success={status.get('last_success')}"
        )


def print_sandbox(client: SandboxClient) -> None:
    """Print what the sandbox stored, per resource, from its inspection API."""
    counts = client.counts()
    print("\nWhat the Klar sandbox stored (distinct records per resource):")
    for resource, count in counts.items():
        print(f"  {resource:<19}{count:>6}")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=3000, help="how many orders to generate (default 3000)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, data, database)"
    )
    args = parser.parse_args(argv)
    if args.orders < 10:
        parser.error("--orders must be at least 10 (two of them are made invalid on purpose)")

    work = Path(tempfile.mkdtemp(prefix="klar-demo-"))
    home, data_dir, log = work / "airflow-home", work / "data", work / "airflow.log"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "KLAR_DEMO_DATA_DIR": str(data_dir),
        # The demo DAG reads the logistics costs from the shop's SQLite database through this connection.
        "AIRFLOW_CONN_KLAR_DEMO_SHOP": shop_connection(data_dir)[1],
        "PYTHONWARNINGS": "ignore",
    }
    airflow = [sys.executable, "-m", "airflow"]
    print(f"Working folder: {work} (removed at the end unless --keep or a failure)")
    code = 1
    try:
        with sandbox(work) as client:
            url = client.url
            print(f"Klar sandbox listening on {url} (token {TOKEN!r})")
            env["AIRFLOW_CONN_KLAR_DEFAULT"] = json.dumps(
                {"conn_type": "klar", "host": url, "password": TOKEN}
            )

            migrated, seconds = run([*airflow, "db", "migrate"], env, log, timeout=600)
            if migrated != 0:
                print(f"`airflow db migrate` failed:\n{tail(log)}")
                return 1
            print(f"Migrated a fresh SQLite Airflow database in {seconds:.1f} s")

            counts = generate_data(data_dir, args.orders)
            print(
                f"Generated {counts['orders']} orders (2 of them deliberately invalid), {counts['refunds']} "
                f"refunds and {counts['logistics-costs']} logistics costs in {data_dir}"
            )

            print("Running `airflow dags test klar_demo` (uploads, then the deferrable sensor)...")
            code, seconds = run([*airflow, "dags", "test", "klar_demo"], env, log, timeout=900)
            state, summaries = read_xcom(home / "airflow.db", "klar_demo")
            print(f"DAG run klar_demo finished in {seconds:.1f} s: {state}")
            print_summaries(summaries)
            print_sandbox(client)
            if code != 0 or state != "success":
                print(f"\nThe DAG run failed ({log} has the whole log):\n{failure_excerpt(log)}")
                code = code or 1
    finally:
        if args.keep or code != 0:
            print(f"\nKept {work} (airflow.log, sandbox.log, data/, airflow-home/)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if code == 0:
        print(
            "\nDone. To send the same DAG to the real Klar, change the klar_default connection "
            "(see docs/demo.md)."
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
