"""The active-learning folder keeps every label given: a kill mid-write, a kill -9 between writes, a full disk, a
second loop on the same folder."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nlptransfer.active import state
from nlptransfer.active.state import ActiveFolder
from nlptransfer.errors import ConfigError, DataError


def test_labels_append_take_back_and_resume(tmp_path):
    with ActiveFolder(tmp_path / "al").open() as folder:
        folder.add_label("good day", "pos", "terminal", 0)
        folder.add_label("bad day", "neg", "terminal", 0)
        folder.add_label("good day", None, "terminal", 0)  # undo
        folder.add_label("good day", "neu", "terminal", 0)
    again = ActiveFolder(tmp_path / "al")
    assert again.labels() == {"bad day": "neg", "good day": "neu"}
    assert len(again.records()) == 4


def test_a_line_torn_by_a_kill_mid_write_is_skipped_then_cut(tmp_path):
    with ActiveFolder(tmp_path / "al").open() as folder:
        folder.add_label("one", "pos", "file", 0)
        with open(folder.path / state.LABELS, "ab") as file:
            file.write(b'{"text": "two", "lab')  # what a kill in the middle of a write leaves
        assert folder.labels() == {"one": "pos"}
        folder.add_label("three", "neg", "file", 0)
        assert folder.labels() == {"one": "pos", "three": "neg"}
        assert len((folder.path / state.LABELS).read_bytes().splitlines()) == 2


def test_a_full_disk_keeps_every_label_before_it(tmp_path, monkeypatch):
    folder = ActiveFolder(tmp_path / "al").open()
    folder.add_label("one", "pos", "file", 0)
    before = (folder.path / state.LABELS).read_bytes()
    real_write = os.write

    def half_then_full(handle, data):
        real_write(handle, data[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state.os, "write", half_then_full)
    with pytest.raises(DataError, match="no space left.*every label given before is kept"):
        folder.add_label("two", "neg", "file", 0)
    monkeypatch.undo()
    assert (folder.path / state.LABELS).read_bytes() == before
    folder.close()


def test_kill_9_between_labels_loses_none_acknowledged(tmp_path):
    """A child appends labels as fast as it can and says each one after it returns; SIGKILL it, then every label it
    said is on disk, and the file reads."""
    child = textwrap.dedent(f"""
        import sys
        from nlptransfer.active.state import ActiveFolder
        folder = ActiveFolder({str(tmp_path / "al")!r}).open()
        for i in range(100000):
            folder.add_label(f"text {{i}}", "pos", "terminal", 0)
            print(i, flush=True)
    """)
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=env)
    said = [int(process.stdout.readline()) for _ in range(200)]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    labels = ActiveFolder(tmp_path / "al").labels()
    assert all(f"text {i}" in labels for i in said)
    with ActiveFolder(tmp_path / "al").open() as folder:  # the dead loop's lock is taken over
        folder.add_label("after", "neg", "terminal", 0)
        assert "after" in folder.labels()


def test_a_second_loop_on_the_folder_is_refused(tmp_path):
    with ActiveFolder(tmp_path / "al").open():
        with pytest.raises(ConfigError, match="in use by another run"):
            ActiveFolder(tmp_path / "al").open()


def test_a_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="did not write"):
        ActiveFolder(tmp_path / "mine").open()
    assert sorted(os.listdir(tmp_path / "mine")) == ["notes.txt"]
