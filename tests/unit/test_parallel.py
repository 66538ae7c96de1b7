"""Parallel validation (``validation_workers``): the same outcomes as in one process, in order, no leftovers.

Every comparison runs the engine twice on the same JSON Lines files, once in the task's process and once
with two workers (started by a forkserver, never forked from this process), and requires the same
batches, rejections (position, file, line, id, errors, record), counts and warnings.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_provider_klar.exceptions import KlarAuthError, KlarError, KlarSourceError, KlarTransientError
from airflow_provider_klar.models import RecordValidator
from airflow_provider_klar.upload import parallel
from airflow_provider_klar.upload.accounting import Rejection
from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine
from airflow_provider_klar.upload.prepare import make_preparer
from airflow_provider_klar.upload.sources import iter_path, iter_records
from tests.unit.test_fast_path import mixed_lines
from tests.unit.test_pipeline import FakeHook, MemoryCheckpoint

pytestmark = [
    pytest.mark.skipif(not parallel.workers_available(), reason="no way to start worker processes"),
    # A bound against a hang (the bug this module once had), not a measure of speed.
    pytest.mark.timeout(300),
]

#: Lines per chunk in these tests: a few dozen lines make many chunks, several in flight at once.
SMALL_CHUNK = 7


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "CHUNK_LINES", SMALL_CHUNK)


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def leftover_processes() -> list[psutil.Process]:
    """Worker processes still alive: children of this process, and what the forkserver forked.

    The forkserver and multiprocessing's resource tracker are one per process, started at the first use
    and kept for the next upload; they are not leftovers of one.
    """
    left = []
    for child in psutil.Process().children():
        command = _cmdline(child)
        if "multiprocessing.resource_tracker" in command:
            continue
        found = child.children(recursive=True)
        if "multiprocessing.forkserver" not in command:
            found.append(child)
        for process in found:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    left.append(process)
            except psutil.NoSuchProcess:
                pass
    return left


def no_children() -> bool:
    return not multiprocessing.active_children() and not leftover_processes()


def recipe(validator: RecordValidator | None, max_raw: int = 5_000_000) -> Any:
    """The picklable per-record step the engine hands to the workers."""
    return functools.partial(make_preparer, validator, "id", max_raw=max_raw)


def write_mixed(folder: Path) -> Path:
    """Two JSON Lines files (one gzipped) of every kind of line, with records Klar refuses (``bad``)."""
    folder.mkdir()
    lines = mixed_lines("07.2025")
    refused = json.loads(lines[0])
    refused["id"], refused["bad"] = "ORD-REFUSED", True  # valid locally, refused by the fake Klar
    first = [*lines, json.dumps(refused).encode(), b"", *lines[:5]]
    (folder / "a.jsonl").write_bytes(b"\n".join(first * 3) + b"\n")
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(b"\r\n".join(lines[::-1]) + b"\r\n"))
    return folder


class Run:
    """One engine run over ``path``; keeps what was sent, rejected and counted."""

    def __init__(
        self, path: Path, workers: int, *, hook: FakeHook | None = None, strict: bool = False, **kw: Any
    ) -> None:
        self.hook = hook or FakeHook(status=400)
        self.rejected: list[Rejection] = []
        self.log = logging.getLogger(f"test.parallel.{workers}")
        settings = EngineSettings(
            resource="orders",
            api_version="07.2025",
            batch_size=kw.pop("batch_size", 5),
            # One batch in flight: spans then finish in source order, so even the lists kept in the order
            # batches are answered (the first errors, the first rejected ids) must be equal.
            max_concurrency=kw.pop("max_concurrency", 1),
            validation_workers=workers,
        )
        self.engine = UploadEngine(
            settings,
            self.hook,
            validator=RecordValidator("orders", "07.2025", strict=strict),
            on_rejected=self.rejected.append,
            log=self.log,
            **kw,
        )
        self.path = path

    def run(self) -> Any:
        return self.engine.run(iter_path(self.path, resource="orders"))

    def outcome(self) -> dict[str, Any]:
        return {
            "sent": self.hook.calls,
            "rejected": [
                (r.ordinal, r.source, r.line, r.id, r.errors, r.origin, str(r.record)) for r in self.rejected
            ],
            "tally": self.engine.tally.to_state(),
            "warnings": sorted(self.engine.tally.warnings.messages()),
        }


@pytest.mark.parametrize("strict", [False, True])
def test_two_workers_give_the_same_outcomes_as_one_process(tmp_path: Path, strict: bool) -> None:
    folder = write_mixed(tmp_path / "data")
    one, two = Run(folder, 1, strict=strict), Run(folder, 2, strict=strict)
    one.run()
    two.run()
    assert two.outcome() == one.outcome()
    # The comparison covers every kind of outcome.
    outcome = one.outcome()
    origins = {r[5].value for r in outcome["rejected"]}
    assert origins == {"local", "klar"}
    assert any("Malformed record" in str(r[4]) for r in outcome["rejected"])
    assert any(r[1].endswith("b.jsonl.gz") for r in outcome["rejected"])
    assert outcome["warnings"]
    # The record with a pitfall (totals that do not add up) is sent with a warning unless strict.
    assert ("ORD-9" in {r[3] for r in outcome["rejected"]}) is strict
    assert outcome["tally"]["accepted"] > 30
    assert no_children()


def test_records_come_back_in_source_order_with_the_in_process_results(tmp_path: Path) -> None:
    folder = write_mixed(tmp_path / "data")
    validator = RecordValidator("orders", "07.2025")
    prepare = make_preparer(validator, "id", max_raw=5_000_000)
    expected = [(r.position, r.source, r.line, prepare(r)) for r in iter_path(folder)]
    reader = parallel.open_parallel(
        iter_path(folder), 2, recipe(validator), [], stop=threading.Event(), log=logging.getLogger("t")
    )
    assert reader is not None
    with reader:
        got = [(r.position, r.source, r.line, r.prepared) for r in reader]
    assert got == expected
    assert [g[0] for g in got] == list(range(len(expected)))
    assert no_children()


def test_a_retry_with_workers_resumes_from_the_checkpoint_as_in_one_process(tmp_path: Path) -> None:
    folder = write_mixed(tmp_path / "data")
    whole = Run(folder, 1)
    whole.run()
    outcomes = []
    for workers in (1, 2):
        store = MemoryCheckpoint()
        failing = FakeHook(status=400, fail_on={6: KlarTransientError("Klar answered 503 five times.")})
        first = Run(folder, workers, hook=failing, checkpoint=store)
        with pytest.raises(KlarTransientError):
            first.run()
        assert no_children()
        assert store.state is not None
        confirmed = store.state["confirmed"]
        second = Run(folder, workers, checkpoint=store)
        result = second.run()
        assert result.resumed_records == sum(b - a + 1 for a, b in confirmed) > 0
        # Both tries together account for every record exactly once.
        assert result.tally.records == whole.engine.tally.records
        assert (result.tally.accepted, result.tally.rejected) == (
            whole.engine.tally.accepted,
            whole.engine.tally.rejected,
        )
        outcomes.append((confirmed, first.outcome(), second.outcome()))
    assert outcomes[1] == outcomes[0]
    assert no_children()


def test_a_fatal_error_ends_the_workers(tmp_path: Path) -> None:
    folder = write_mixed(tmp_path / "data")
    hook = FakeHook(fail_on={1: KlarAuthError("Klar answered 401: check the token of klar_default.")})
    with pytest.raises(KlarAuthError, match="401"):
        Run(folder, 2, hook=hook).run()
    assert no_children()


def test_stopping_from_another_thread_ends_the_workers(tmp_path: Path) -> None:
    folder = write_mixed(tmp_path / "data")
    stop = threading.Event()
    hook = FakeHook()
    # What on_kill does: set the stop event while batches are being sent.
    hook.on_call = lambda number: stop.set() if number == 2 else None
    with pytest.raises(KlarError, match="stopped"):
        Run(folder, 2, hook=hook, stop=stop).run()
    assert no_children()


def test_sources_other_than_json_lines_files_use_the_in_process_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = EngineSettings(resource="orders", api_version="07.2025", batch_size=5, validation_workers=2)
    hook = FakeHook()
    records = [json.loads(line) for line in mixed_lines("07.2025")[:3]]
    with caplog.at_level(logging.INFO):
        result = UploadEngine(settings, hook, validator=RecordValidator("orders", "07.2025")).run(
            iter_records(records)
        )
    assert result.tally.accepted == 3
    assert "applies to JSON Lines files only" in caplog.text


@pytest.mark.parametrize("broken", ["no start method", "pool fails"])
def test_without_workers_the_upload_falls_back_with_a_warning(
    broken: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_mixed(tmp_path / "data")
    one = Run(folder, 1)
    one.run()
    if broken == "no start method":
        monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["fork"])
    else:

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise OSError("Resource temporarily unavailable")

        monkeypatch.setattr(multiprocessing.context.BaseContext, "Pool", refuse)
    two = Run(folder, 2)
    with caplog.at_level(logging.WARNING):
        two.run()
    assert "validating in the task's process" in caplog.text
    assert two.outcome() == one.outcome()


def test_a_gzip_file_cut_short_is_reported_at_the_same_place(tmp_path: Path) -> None:
    folder = tmp_path / "cut"
    folder.mkdir()
    body = gzip.compress(b"\n".join(mixed_lines("07.2025") * 4) + b"\n")
    (folder / "o.jsonl.gz").write_bytes(body[: len(body) * 2 // 3])
    one, two = Run(folder, 1), Run(folder, 2)
    with pytest.raises(KlarSourceError) as first:
        one.run()
    with pytest.raises(KlarSourceError) as second:
        two.run()
    # The records read before the break were sent and counted alike; the errors name the same line.
    assert two.outcome() == one.outcome()
    assert one.hook.calls
    assert str(second.value) == str(first.value)
    assert "cut short" in str(first.value)
    assert "The rest of" in str(first.value)


@pytest.mark.parametrize("workers", [0, 33, True, 1.5])
def test_validation_workers_must_be_a_sensible_count(workers: Any) -> None:
    with pytest.raises(ValueError, match="validation_workers"):
        EngineSettings(resource="orders", api_version="07.2025", validation_workers=workers)


def _dies_on_third_chunk(source: str, start: int, lines: list[tuple[int, bytes]]) -> list[Any]:
    # Runs in a worker, which imports this module afresh: the fixture's CHUNK_LINES is not set there.
    if start == 2 * SMALL_CHUNK:
        os._exit(3)  # what the kernel's OOM killer leaves behind
    return _work(source, start, lines)


_work = parallel._work


def test_a_worker_that_dies_fails_the_upload_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_mixed(tmp_path / "data")
    monkeypatch.setattr(parallel, "_work", _dies_on_third_chunk)
    with pytest.raises(KlarError, match=r"worker process ended unexpectedly \(exit code 3\)"):
        Run(folder, 2).run()
    assert no_children()


#: A lock the per-record step takes, held by another thread of this process during the test below.
HELD = threading.Lock()


def _locking_step(validator: RecordValidator) -> Any:
    prepare = make_preparer(validator, "id", max_raw=5_000_000)

    def step(src: Any) -> Any:
        with HELD:  # a fork of this process would find it held forever, and wait forever
            return prepare(src)

    return step


def test_workers_are_not_forked_from_a_process_whose_threads_hold_locks(tmp_path: Path) -> None:
    # What a task's process looks like: other threads, one of them in the middle of holding a lock. A
    # child forked from it inherits the lock held and no thread to release it (the classic deadlock);
    # a worker started by the forkserver or spawn imports this module afresh and finds it free.
    folder = write_mixed(tmp_path / "data")
    validator = RecordValidator("orders", "07.2025")
    expected = [(r.position, recipe(validator)()(r)) for r in iter_path(folder)]
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with HELD:
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(timeout=30)
    stop = threading.Event()
    # A bound against a regression hanging the suite: the reader then fails with "stopped".
    guard = threading.Timer(120, stop.set)
    guard.start()
    try:
        factory = functools.partial(_locking_step, validator)
        reader = parallel.open_parallel(
            iter_path(folder), 2, factory, [], stop=stop, log=logging.getLogger("t")
        )
        assert reader is not None
        with reader:
            got = [(r.position, r.prepared) for r in reader]
    finally:
        guard.cancel()
        release.set()
        holder.join()
    assert got == expected
    assert parallel.start_method() in {"forkserver", "spawn"}
    assert no_children()


def test_a_step_that_cannot_be_pickled_falls_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_mixed(tmp_path / "data")
    validator = RecordValidator("orders", "07.2025")
    with caplog.at_level(logging.WARNING):
        reader = parallel.open_parallel(
            iter_path(folder),
            2,
            lambda: make_preparer(validator, "id"),
            [],
            stop=threading.Event(),
            log=logging.getLogger("t"),
        )
    assert reader is None
    assert "needs a per-record step that can be pickled" in caplog.text
    assert no_children()


def test_the_per_record_step_travels_pickled_and_works_the_same(tmp_path: Path) -> None:
    import pickle

    folder = write_mixed(tmp_path / "data")
    validator = RecordValidator("orders", "07.2025", strict=True)
    again = pickle.loads(pickle.dumps(validator))
    assert (again.resource, again.version, again.strict) == ("orders", "07.2025", True)
    step, travelled = recipe(validator)(), pickle.loads(pickle.dumps(recipe(validator)))()
    records = list(iter_path(folder))
    assert [travelled(r) for r in records] == [step(r) for r in records]


#: A process like Airflow's task runner makes: its main module imports Airflow (as the ``airflow`` command
#: does), it has threads, and its environment names a database a fresh Airflow cannot even parse.
TASK_PROCESS = """
import airflow  # what the `airflow` command's main module does first

import functools, json, logging, os, sys, threading
from pathlib import Path


def main(folder):
    from airflow_provider_klar.models import RecordValidator
    from airflow_provider_klar.upload import parallel
    from airflow_provider_klar.upload.prepare import make_preparer
    from airflow_provider_klar.upload.sources import iter_path

    # What airflow.sdk.execution_time.supervisor.block_orm_access() does in every task process.
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "airflow-db-not-allowed:///"
    busy = threading.Event()
    threading.Thread(target=busy.wait, daemon=True).start()
    warnings = []

    class Log:
        def info(self, *args): pass
        def warning(self, message, *args): warnings.append(message % args)

    validator = RecordValidator("orders", "07.2025")
    recipe = functools.partial(make_preparer, validator, "id", max_raw=5_000_000)
    expected = [(r.position, recipe()(r)) for r in iter_path(folder)]
    reader = parallel.open_parallel(iter_path(folder), 2, recipe, [], stop=threading.Event(), log=Log())
    assert reader is not None, warnings
    with reader:
        got = [(r.position, r.prepared) for r in reader]
    assert got == expected
    print("workers ok", len(got), parallel.start_method())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
"""


def test_workers_start_in_a_task_process_whose_environment_breaks_a_fresh_airflow(tmp_path: Path) -> None:
    # Under Airflow's task runner, a fresh interpreter that imports Airflow (or the `airflow` command
    # as main module) dies: the workers must import neither.
    import subprocess
    import sys

    folder = write_mixed(tmp_path / "data")
    script = tmp_path / "task_process.py"
    script.write_text(TASK_PROCESS)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, str(script), str(folder)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "workers ok" in done.stdout


def test_the_workers_import_path_does_not_import_airflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"for name in {parallel._PRELOAD!r} + ['airflow_provider_klar.upload._json']:\n"
        "    __import__(name)\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
