"""State files and the resource lock."""
import os
import subprocess
import time

import pytest

from ocf_lib.ocf.state import StateDir, StateError, live_pid, pid_record


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("HA_RSCTMP", str(tmp_path / "rsctmp"))
    return StateDir("IPaddr2", "vip/../evil")


def test_names_are_confined_to_the_directory(state, tmp_path):
    assert os.path.dirname(state.path("lock")) == str(tmp_path / "rsctmp")
    assert "/" not in os.path.basename(state.path("lock"))


def test_write_read_remove(state):
    assert state.read("pid") is None
    state.write("pid", "123 456")
    assert state.read("pid") == "123 456"
    assert os.stat(state.path("pid")).st_mode & 0o777 == 0o600
    state.remove("pid")
    state.remove("pid")
    assert state.read("pid") is None


def test_symlinks_are_not_followed(state, tmp_path):
    target = tmp_path / "target"
    target.write_text("secret")
    state.ensure()
    os.symlink(target, state.path("pid"))
    assert state.read("pid") is None
    state.write("pid", "1 2")  # replaces the link, never writes through it
    assert target.read_text() == "secret"


def test_lock_waits_then_gives_up_at_the_deadline(state):
    state.ensure()
    holder = subprocess.Popen(["flock", "--no-fork", state.path("lock"), "sleep", "5"])
    try:
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(StateError, match="holds"):
            with state.lock(time.monotonic() + 0.3):
                pass
        assert time.monotonic() - started >= 0.3
    finally:
        holder.kill()
        holder.wait()
    with state.lock(time.monotonic() + 1):
        pass


def test_pid_record_recognises_only_the_same_process():
    proc = subprocess.Popen(["sleep", "5"])
    record = pid_record(proc.pid)
    assert live_pid(record) == proc.pid
    proc.kill()
    proc.wait()
    assert live_pid(record) is None
    assert live_pid(f"{os.getpid()} 1") is None, "same pid, other start time"
    assert live_pid("garbage") is None and live_pid(None) is None
