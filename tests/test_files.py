"""Atomic writes under unique temporary names, and the run-folder lock."""

import json
import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

from lottery_prior.errors import LipError
from lottery_prior.files import RunLock, atomic_path, remove_temporaries, write_json


def test_atomic_path_writes_through_a_unique_hidden_temporary(tmp_path):
    target = tmp_path / "sub" / "data.txt"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b and a.parent == b.parent == target.parent
        assert a.name.startswith(".data.txt.") and str(os.getpid()) in a.name
        a.write_text("a")
        b.write_text("b")
        assert not target.exists()
    assert target.read_text() == "a"  # the last to finish wins, whole
    assert os.listdir(target.parent) == ["data.txt"]


def test_atomic_path_leaves_nothing_when_the_write_fails(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["data.txt"]


def test_files_get_ordinary_permissions_even_from_private_writers(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "x") as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as tempfile would
            os.close(fd)
        write_json(tmp_path / "y.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "x").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "y.json").st_mode) == 0o640


def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    target = tmp_path / "record.json"
    errors = []

    def write(i):
        try:
            for j in range(50):
                write_json(target, {"writer": i, "n": j})
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(target.read_text())["n"] == 49
    assert os.listdir(tmp_path) == ["record.json"]


def test_leftover_temporaries_are_removed(tmp_path):
    (tmp_path / "round-01").mkdir()
    (tmp_path / "round-01" / ".record.json.123.abcd.tmp").write_text("{")
    (tmp_path / "keep.json").write_text("{}")
    assert remove_temporaries(tmp_path) == 1
    assert os.listdir(tmp_path / "round-01") == []
    assert (tmp_path / "keep.json").exists()


def test_a_live_holder_makes_the_lock_refuse_at_once(tmp_path):
    with RunLock(tmp_path) as held:
        holder = json.loads(held.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(LipError, match=rf"in use by process {os.getpid()}; wait for it"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / RunLock.NAME).exists()  # released
    with RunLock(tmp_path):  # and free again
        pass


def test_the_lock_is_released_on_exceptions(tmp_path):
    with pytest.raises(KeyboardInterrupt), RunLock(tmp_path):
        raise KeyboardInterrupt
    assert not (tmp_path / RunLock.NAME).exists()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lock_of_a_dead_process_is_taken_over(tmp_path):
    lock_file = tmp_path / RunLock.NAME
    lock_file.write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    with RunLock(tmp_path):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()


def test_a_lock_of_another_host_or_unreadable_is_never_taken_over(tmp_path):
    lock_file = tmp_path / RunLock.NAME
    lock_file.write_text(json.dumps({"pid": dead_pid(), "host": "elsewhere.example"}))
    with pytest.raises(LipError, match="on host elsewhere.example"):
        RunLock(tmp_path).acquire()
    lock_file.write_text("")
    with pytest.raises(LipError, match="in use"):
        RunLock(tmp_path).acquire()
    assert lock_file.exists()


def test_releasing_never_removes_a_lock_that_is_not_ours(tmp_path):
    lock = RunLock(tmp_path).acquire()
    (tmp_path / RunLock.NAME).write_text(json.dumps({"pid": 1, "host": "other"}))
    lock.release()
    assert (tmp_path / RunLock.NAME).exists()
