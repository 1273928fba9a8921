"""nlptransfer/outputs/run_folder.py and files.py: checks before writes, the lock, overwrite, umask-readable files."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nlptransfer.errors import CheckpointError, ConfigError
from nlptransfer.outputs import files, run_folder
from nlptransfer.outputs.folders import MARKER
from nlptransfer.outputs.run_folder import LOCK_FILE, RunFolder

fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
both_lock_kinds = pytest.mark.parametrize("flock", [True, False], ids=["flock", "pid-only"])


def use_lock_kind(monkeypatch, flock: bool) -> None:
    """pid-only: as where flock is unsupported (Windows, some network filesystems); forked racers inherit it."""
    if not flock:
        monkeypatch.setattr(run_folder, "fcntl", None)


def make_run(folder: Path, finished: bool = True) -> None:
    """A previous run's leftovers: what the library writes (in a folder it marked), plus a stray file."""
    (folder / MARKER).write_text('{"kind": "run"}')
    for name in ["checkpoints/step-0000001/COMPLETE.json", "model/config.json", "adapter/adapter_config.json",
                 "tensorboard/events.out", "export/model.onnx"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("old")
    for name in ["config.yaml", "train.log", "curves.png", "predictions.jsonl", ".stray"]:
        (folder / name).write_text("old")
    if finished:
        (folder / "metrics.json").write_text("{}")


def write_lock(folder: Path, pid: int, host: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host or socket.gethostname(), "started": "2024-01-01T00:00:00+00:00"}
    (folder / LOCK_FILE).write_text(json.dumps(record))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def snapshot(folder: Path) -> dict:
    """Every path under `folder` (and the folder) with its mtime and content, to show a refusal changed nothing."""
    paths = [folder, *sorted(folder.rglob("*"))]
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in paths}


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER)


@pytest.fixture
def sleeper():
    """A live process that is not a run: its pid in a lock looks alive."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield process.pid
    process.kill()
    process.wait()


def test_state_names_what_the_folder_holds(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert run.state() == "missing"
    run.path.mkdir()
    write_lock(run.path, dead_pid())
    assert run.state() == "empty"  # the lock is not a run's file
    (run.path / "config.yaml").write_text("x")
    (run.path / "train.log").write_text("x")
    assert run.state() == "started"
    (run.path / "checkpoints").mkdir()
    assert run.state() == "unfinished"
    (run.path / "metrics.json").write_text("{}")
    assert run.state() == "finished" and run.finished


def test_overwrite_removes_everything_the_previous_run_left(tmp_path, caplog):
    make_run(tmp_path)
    caplog.set_level(logging.INFO, logger="nlptransfer")
    with RunFolder(tmp_path).open(overwrite=True, resume=False) as run:
        assert listing(tmp_path) == sorted([".stray", LOCK_FILE])  # a file no run writes stays
        assert run.state() == "empty" and not run.finished
    assert listing(tmp_path) == [".stray"]
    assert ("overwrite=true: removed the previous run's files: adapter, checkpoints, config.yaml, curves.png, "
            "export, metrics.json, model, predictions.jsonl, tensorboard, train.log") in caplog.text
    assert "kept the files no run writes: .stray" in caplog.text


def test_finished_run_is_refused_without_overwrite(tmp_path):
    make_run(tmp_path)
    with pytest.raises(ConfigError, match="finished run.*overwrite=true"):
        RunFolder(tmp_path).open(overwrite=False, resume=False)


def test_unfinished_run_is_refused_without_resume_and_resumable_with_it(tmp_path):
    make_run(tmp_path, finished=False)
    with pytest.raises(ConfigError, match="unfinished run.*resume=auto.*overwrite=true"):
        RunFolder(tmp_path).open(overwrite=False, resume=False)
    before = listing(tmp_path)
    with RunFolder(tmp_path).open(overwrite=False, resume=True):
        assert listing(tmp_path) == sorted([*before, LOCK_FILE])  # a resume keeps the checkpoints


@pytest.mark.parametrize("leftovers", [[], ["config.yaml"], ["config.yaml", "train.log"]])
def test_resume_without_a_run_is_refused(tmp_path, leftovers):
    for name in leftovers:
        (tmp_path / name).write_text("x")
    with pytest.raises(CheckpointError, match="holds no run to resume"):
        RunFolder(tmp_path).open(overwrite=False, resume=True)
    with pytest.raises(CheckpointError, match="holds no run to resume"):
        RunFolder(tmp_path / "missing").open(overwrite=False, resume=True)
    assert not (tmp_path / "missing").exists()


def test_a_started_folder_is_reused_without_overwrite(tmp_path):
    (tmp_path / "config.yaml").write_text("old")
    (tmp_path / "train.log").write_text("old")
    with RunFolder(tmp_path).open(overwrite=False, resume=False) as run:
        run.write_config("new")
    assert (tmp_path / "config.yaml").read_text() == "new"


def test_a_missing_folder_is_created(tmp_path):
    with RunFolder(tmp_path / "a" / "b").open(overwrite=False, resume=False) as run:
        assert run.path.is_dir() and run.holds_lock
    assert listing(tmp_path / "a" / "b") == []


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("mine")
    for overwrite, resume in [(False, False), (True, False), (False, True)]:
        with pytest.raises(ConfigError, match="is a file"):
            RunFolder(tmp_path / "out").open(overwrite=overwrite, resume=resume)
    assert (tmp_path / "out").read_text() == "mine"


def test_overwrite_with_resume_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        RunFolder(tmp_path).open(overwrite=True, resume=True)


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    with RunFolder(tmp_path).open(overwrite=False, resume=False) as first:
        (tmp_path / "checkpoints").mkdir()
        for overwrite in (False, True):
            with pytest.raises(ConfigError, match="in use by another run"):
                RunFolder(tmp_path).open(overwrite=overwrite, resume=False)
        assert (tmp_path / "checkpoints").is_dir() and first.holds_lock


def hold_lock(folder: Path, ready, done) -> None:
    with RunFolder(folder).open(overwrite=False, resume=False):
        ready.set()
        done.wait(20)


@fork
@both_lock_kinds
def test_a_run_in_another_process_is_refused_and_its_lock_released_at_its_end(tmp_path, monkeypatch, flock):
    use_lock_kind(monkeypatch, flock)
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    holder = context.Process(target=hold_lock, args=(tmp_path, ready, done))
    holder.start()
    try:
        assert ready.wait(20)
        (tmp_path / "checkpoints").mkdir()
        before = snapshot(tmp_path)
        with pytest.raises(ConfigError, match=f"in use by another run \\(pid {holder.pid} on "):
            RunFolder(tmp_path).open(overwrite=True, resume=False)
        assert snapshot(tmp_path) == before
    finally:
        done.set()
        holder.join(20)
    assert listing(tmp_path) == ["checkpoints"]
    RunFolder(tmp_path).open(overwrite=True, resume=False).release()


@both_lock_kinds
def test_the_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog, monkeypatch, flock):
    use_lock_kind(monkeypatch, flock)
    pid = dead_pid()
    write_lock(tmp_path, pid)
    with RunFolder(tmp_path).open(overwrite=False, resume=False):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["started"]
    assert f"taking over the lock of a run that is no longer running (pid {pid}" in caplog.text
    assert [r.name for r in caplog.records if r.levelno == logging.WARNING] == ["nlptransfer"]


def test_an_unreadable_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    (tmp_path / LOCK_FILE).write_text('{"pid": 12')
    with RunFolder(tmp_path).open(overwrite=False, resume=False):
        pass
    assert "taking over the unreadable lock" in caplog.text


def test_a_lock_this_process_dropped_without_release_is_taken_over(tmp_path, caplog):
    RunFolder(tmp_path).open(overwrite=False, resume=False)  # dropped at once, as by a failing notebook cell
    with RunFolder(tmp_path).open(overwrite=False, resume=False) as run:
        assert run.holds_lock
    assert f"(pid {os.getpid()}" in caplog.text


def test_a_lock_naming_a_live_process_is_refused(tmp_path, sleeper):
    write_lock(tmp_path, sleeper)
    with pytest.raises(ConfigError, match=f"in use by another run \\(pid {sleeper} .*delete .*{LOCK_FILE}"):
        RunFolder(tmp_path).open(overwrite=True, resume=False)


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(tmp_path):
    write_lock(tmp_path, dead_pid(), host="elsewhere")
    with pytest.raises(ConfigError, match="pid .* on elsewhere.*no longer running, delete"):
        RunFolder(tmp_path).open(overwrite=False, resume=False)


def race_to_open(folder: Path, start, attempted, results) -> None:
    start.wait(20)
    try:
        run = RunFolder(folder).open(overwrite=True, resume=False)
    except ConfigError as error:
        results.put(("refused", str(error)))
        attempted.wait(20)
        return
    except Exception as error:  # reported, so that a failure says what went wrong
        results.put(("crashed", repr(error)))
        attempted.wait(20)
        return
    results.put(("won", ""))
    attempted.wait(20)  # hold the lock until every racer has tried
    run.release()


@fork
@both_lock_kinds
@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_racing_runs_have_exactly_one_winner(tmp_path, monkeypatch, flock, stale):
    use_lock_kind(monkeypatch, flock)
    if stale:
        write_lock(tmp_path, dead_pid())
    make_run(tmp_path)
    context = multiprocessing.get_context("fork")
    start, attempted, results = context.Barrier(8), context.Barrier(8), context.Queue()
    racers = [context.Process(target=race_to_open, args=(tmp_path, start, attempted, results)) for _ in range(8)]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=20) for _ in racers]
    for racer in racers:
        racer.join(20)
    assert sorted(outcome for outcome, _ in outcomes) == ["refused"] * 7 + ["won"], outcomes
    assert all("in use by another run" in message for outcome, message in outcomes if outcome == "refused")
    assert listing(tmp_path) == [".stray"]


@pytest.mark.parametrize("case", ["finished", "unfinished", "in use", "both flags", "file"])
def test_refusals_write_nothing(tmp_path, case):
    folder = tmp_path / "run"
    folder.mkdir()
    make_run(folder, finished=case != "unfinished")
    write_lock(folder, dead_pid())
    holder = RunFolder(folder).open(overwrite=False, resume=True) if case == "in use" else None
    target = folder / "config.yaml" if case == "file" else folder
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError):
        RunFolder(target).open(overwrite=case in ("in use", "both flags"), resume=case == "both flags")
    assert snapshot(tmp_path) == before
    assert (folder / "config.yaml").read_text() == "old"
    if holder:
        holder.release()


def test_release_removes_only_our_own_lock(tmp_path, sleeper):
    write_lock(tmp_path, sleeper)
    RunFolder(tmp_path).release()
    assert (tmp_path / LOCK_FILE).exists()
    (tmp_path / LOCK_FILE).unlink()
    with RunFolder(tmp_path).open(overwrite=False, resume=False) as run:
        RunFolder(tmp_path).release()
        assert (tmp_path / LOCK_FILE).exists() and run.holds_lock
        run.release()
        run.release()
        assert not (tmp_path / LOCK_FILE).exists() and not run.holds_lock


@fork
def test_a_forked_child_does_not_release_its_parents_lock(tmp_path):
    with RunFolder(tmp_path).open(overwrite=False, resume=False) as run:
        child = multiprocessing.get_context("fork").Process(target=run.release)  # fork: the child gets a copy
        child.start()
        child.join(20)
        assert child.exitcode == 0 and (tmp_path / LOCK_FILE).exists() and run.holds_lock
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_the_lock_is_released_when_the_run_fails(tmp_path, interruption):
    with pytest.raises(interruption), RunFolder(tmp_path).open(overwrite=False, resume=False):
        raise interruption()
    assert listing(tmp_path) == []


def test_finish_writes_the_marker_of_a_finished_run(tmp_path):
    with RunFolder(tmp_path).open(overwrite=False, resume=False) as run:
        run.write_config("strategy: lora\n")
        run.write_jsonl("predictions.jsonl", [{"label": "a"}, {"label": "b"}])
        run.write_text("notes/readme.txt", "hi")
        assert run.state() == "unfinished"
        run.finish({"test": {"accuracy": 1.0}})
        assert run.finished and run.state() == "finished"
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"test": {"accuracy": 1.0}}
    assert (tmp_path / "predictions.jsonl").read_text().splitlines() == ['{"label": "a"}', '{"label": "b"}']


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_files_are_readable_as_the_umask_allows(tmp_path, umask, file_mode, dir_mode):
    previous = os.umask(umask)
    try:
        files.write_json(tmp_path / "deep" / "metrics.json", {"a": 1})
        with RunFolder(tmp_path / "run").open(overwrite=False, resume=False) as run:
            run.write_config("x: 1\n")
            lock_mode = stat.S_IMODE((run.path / LOCK_FILE).stat().st_mode)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "deep" / "metrics.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "run" / "config.yaml").stat().st_mode) == file_mode
    assert lock_mode == file_mode
    assert stat.S_IMODE((tmp_path / "deep").stat().st_mode) == dir_mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    files.write_text(tmp_path / "config.yaml", "old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_text(tmp_path / "config.yaml", "new")
    assert (tmp_path / "config.yaml").read_text() == "old" and listing(tmp_path) == ["config.yaml"]
