"""ocf_lib.adapters.process: identity from /proc, pidfiles, signals and waiting, and finding a real
haproxy by its binary and configuration."""
from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lab.haproxy import HAPROXY, HaproxyLab, freeze
from lab.netns import NetnsPool

from ocf_lib.adapters import process
from ocf_lib.adapters.process import ProcessInfo
from ocfshim import modules_loaded_by


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A running `sleep 60`, once its exec is done: in the middle of it the kernel already
    shows the new exe while cmdline still reads empty (seen once in Debian 13's run)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while _cmdline(proc.pid) != b"sleep\x0060\x00" and time.monotonic() < deadline:
            time.sleep(0.005)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as raw:
        return raw.read()


def _haproxy(cmdline: list[str], exe: str = "/usr/sbin/haproxy") -> ProcessInfo:
    return ProcessInfo(1234, 1, "S", exe, cmdline, 100)


# --- process_info ----------------------------------------------------------------------

def test_process_info_describes_a_running_process(sleeper: subprocess.Popen[bytes]) -> None:
    info = process.process_info(sleeper.pid)
    assert info is not None
    assert (info.pid, info.ppid, info.exe, info.cmdline) == (
        sleeper.pid, os.getpid(), os.path.realpath(shutil.which("sleep") or ""),
        ["sleep", "60"])
    assert info.state in "RSD" and info.start_time > 0  # D: still paging in after exec
    again = process.process_info(sleeper.pid)
    assert again is not None and again.start_time == info.start_time


def test_process_info_reads_a_command_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "a) b ("
    shutil.copy(shutil.which("sleep") or "", odd)
    proc = subprocess.Popen([str(odd), "60"])
    try:
        info = process.process_info(proc.pid)
        assert info is not None and info.ppid == os.getpid() and info.exe == str(odd)
    finally:
        proc.kill()
        proc.wait()


def test_process_info_is_none_for_a_pid_that_does_not_exist() -> None:
    assert process.process_info(2 ** 22 + 1) is None


def test_exe_of_a_replaced_binary_is_its_path_without_deleted(tmp_path: Path) -> None:
    """After a package upgrade the kernel shows '/usr/sbin/haproxy (deleted)'."""
    binary = tmp_path / "haproxy"
    shutil.copy(shutil.which("sleep") or "", binary)
    proc = subprocess.Popen([str(binary), "60"])
    try:
        binary.unlink()
        assert os.readlink(f"/proc/{proc.pid}/exe").endswith(" (deleted)")
        assert process.process_info(proc.pid).exe == str(binary)  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()


def test_a_zombie_is_not_alive(sleeper: subprocess.Popen[bytes]) -> None:
    os.kill(sleeper.pid, signal.SIGKILL)
    while process.process_info(sleeper.pid).state != "Z":  # type: ignore[union-attr]
        time.sleep(0.01)
    assert not process.alive(sleeper.pid)
    assert process.wait_gone([sleeper.pid], time.monotonic() + 1) == []


# --- a process ending while it is read (issue 23) ----------------------------------------

@pytest.fixture
def reaped(sleeper: subprocess.Popen[bytes]) -> Iterator[Callable[[str], Callable[[], object]]]:
    """Stale handles: reaped(NAME), called while the sleeper runs, opens its /proc file
    NAME and returns what opens it again after the test has killed and reaped the sleeper:
    a read through it then fails as a read after the reaping does (ESRCH)."""
    fds: list[int] = []

    def stale(name: str) -> Callable[[], object]:
        fds.append(os.open(f"/proc/{sleeper.pid}/{name}", os.O_RDONLY | os.O_CLOEXEC))
        fd = fds[-1]
        return lambda: open(os.dup(fd), "rb")

    try:
        yield stale
    finally:
        for fd in fds:
            os.close(fd)


def _kill_and_reap(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def _opening(monkeypatch: pytest.MonkeyPatch, pid: int,
             files: dict[str, Callable[[], object]]) -> None:
    """process's open() gives files[name]() for /proc/PID/name, and opens anything else."""
    def fake_open(path: str, *args: object, **kwargs: object) -> object:
        name = path.removeprefix(f"/proc/{pid}/")
        return files[name]() if name in files else open(path, *args, **kwargs)
    monkeypatch.setattr(process, "open", fake_open, raising=False)


@pytest.mark.parametrize("name", ["stat", "cmdline"])
def test_a_process_reaped_between_open_and_read_is_gone(
        sleeper: subprocess.Popen[bytes], reaped: Callable[[str], Callable[[], object]],
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The kernel answers the read with ESRCH: process_info and alive say gone, never
    raise."""
    stale = reaped(name)
    _kill_and_reap(sleeper)
    _opening(monkeypatch, sleeper.pid, {name: stale})
    assert process.process_info(sleeper.pid) is None
    if name == "stat":
        assert not process.alive(sleeper.pid)


def test_a_zombie_reaped_while_its_threads_are_listed_is_not_alive(
        sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure of issue 23: stop failed with ProcessLookupError on '/proc/PID/task',
    listed the moment its parent reaped the zombie. wait_gone takes it for gone."""
    os.kill(sleeper.pid, signal.SIGKILL)
    while process.process_info(sleeper.pid).state != "Z":  # type: ignore[union-attr]
        time.sleep(0.01)
    listdir = os.listdir

    def reaped_while_listed(path: str = ".") -> list[str]:
        if path == f"/proc/{sleeper.pid}/task":
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH), path)
        return listdir(path)

    monkeypatch.setattr(os, "listdir", reaped_while_listed)
    assert not process.alive(sleeper.pid)
    assert process.wait_gone([sleeper.pid], time.monotonic() + 1) == []


def test_a_stat_read_that_cannot_be_parsed_is_read_again(
        sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    reads = [b"", f"{sleeper.pid} (sle".encode()]
    _opening(monkeypatch, sleeper.pid, {
        "stat": lambda: io.BytesIO(reads.pop(0)) if reads else open(
            f"/proc/{sleeper.pid}/stat", "rb")})
    assert process.process_info(sleeper.pid) is None, "twice unreadable: unidentified"
    assert process.process_info(sleeper.pid).cmdline == [  # type: ignore[union-attr]
        "sleep", "60"], "read again, it parses"


def test_a_process_whose_stat_cannot_be_parsed_stays_alive_until_it_is_gone(
        sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing proves it ended: stop keeps waiting for it, and ends it."""
    _opening(monkeypatch, sleeper.pid, {"stat": lambda: io.BytesIO(b"garbage")})
    assert process.alive(sleeper.pid)
    assert process.process_info(sleeper.pid) is None
    _kill_and_reap(sleeper)
    monkeypatch.undo()
    assert not process.alive(sleeper.pid)


def test_an_ending_process_with_an_empty_command_line_runs_no_config(
        sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """Once an ending process's memory is gone its cmdline reads empty: it is described,
    and found running nothing."""
    _opening(monkeypatch, sleeper.pid, {"cmdline": lambda: io.BytesIO(b"")})
    info = process.process_info(sleeper.pid)
    assert info is not None and info.cmdline == []
    assert not process.runs_config(info, info.exe, "/etc/haproxy/haproxy.cfg")


def test_children_of_a_reaped_process_are_none(
        sleeper: subprocess.Popen[bytes], reaped: Callable[[str], Callable[[], object]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    stale = reaped(f"task/{sleeper.pid}/children")
    _kill_and_reap(sleeper)
    _opening(monkeypatch, sleeper.pid, {f"task/{sleeper.pid}/children": stale})
    assert process.children(sleeper.pid) == []
    monkeypatch.undo()
    assert process.children(sleeper.pid) == []


def test_wait_gone_copes_with_a_process_reaped_before_its_pidfd_opens(
        sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    pidfd_open = os.pidfd_open

    def reaped_first(pid: int, *flags: int) -> int:
        if pid == sleeper.pid:
            _kill_and_reap(sleeper)
        return pidfd_open(pid, *flags)

    monkeypatch.setattr(os, "pidfd_open", reaped_first)
    started = time.monotonic()
    assert process.wait_gone([sleeper.pid], started + 2) == []
    assert time.monotonic() - started < 0.5


def test_signals_reach_a_zombie_and_skip_a_reaped_process(
        sleeper: subprocess.Popen[bytes]) -> None:
    os.kill(sleeper.pid, signal.SIGKILL)
    while process.process_info(sleeper.pid).state != "Z":  # type: ignore[union-attr]
        time.sleep(0.01)
    assert process.signal_all([sleeper.pid], process.SIGTERM) == [sleeper.pid]
    sleeper.wait()
    assert process.signal_all([sleeper.pid], process.SIGTERM) == []


# --- pidfiles --------------------------------------------------------------------------

@pytest.mark.parametrize("content, pids", [
    ("1234\n", [1234]), ("1234", [1234]), ("1234\n1240\n", [1234, 1240]),
    ("", []), ("\n", []), ("12ab\n", []), ("1234\nxyz\n", []), ("-5\n", []), ("0\n", []),
    ("1\n", []), ("1234 5678\n", [1234, 5678]), ("\x00\xff", [])])
def test_read_pidfile_gives_pids_or_nothing(tmp_path: Path, content: str,
                                            pids: list[int]) -> None:
    path = tmp_path / "haproxy.pid"
    path.write_bytes(content.encode("latin-1"))
    assert process.read_pidfile(str(path)) == pids


def test_read_pidfile_ignores_a_missing_file_and_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.pid"
    real.write_text("1234\n")
    (tmp_path / "link.pid").symlink_to(real)
    assert process.read_pidfile(str(tmp_path / "link.pid")) == []
    assert process.read_pidfile(str(tmp_path / "missing.pid")) == []
    assert process.read_pidfile(str(tmp_path / "real.pid" / "x")) == []


def test_read_pidfile_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "haproxy.pid"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert process.read_pidfile(str(fifo)) == []
    assert time.monotonic() - started < 1


def test_write_pidfile_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = str(tmp_path / "haproxy.pid")
    process.write_pidfile(path, [1234])
    process.write_pidfile(path, [1234, 1240])
    assert process.read_pidfile(path) == [1234, 1240]
    assert os.listdir(tmp_path) == ["haproxy.pid"]


# --- runs_config on command lines ------------------------------------------------------

@pytest.mark.parametrize("cmdline", [
    ["haproxy", "-f", "{cfg}"],
    ["haproxy", "-Ws", "-f", "{cfg}", "-p", "/run/haproxy.pid", "-S", "/run/haproxy-master.sock"],
    ["haproxy", "-sf", "27584", "-x", "sockpair@3", "-W", "-f", "{cfg}"],
    ["haproxy", "-f", "/etc/haproxy/other.cfg", "-f", "{cfg}"],
    ["haproxy", "-f", "{dir}"],
    ["haproxy", "-f", "/etc/haproxy/other.cfg", "--", "/x.cfg", "{cfg}"],
    ["haproxy", "-f", "{link}"]])
def test_runs_config_accepts_every_way_to_name_the_config(tmp_path: Path,
                                                          cmdline: list[str]) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n")
    (tmp_path / "link.cfg").symlink_to(cfg)
    argv = [arg.format(cfg=cfg, dir=tmp_path, link=tmp_path / "link.cfg") for arg in cmdline]
    assert process.runs_config(_haproxy(argv), HAPROXY, str(cfg))


@pytest.mark.parametrize("cmdline, exe", [
    (["haproxy", "-f", "{other}"], "/usr/sbin/haproxy"),
    (["haproxy", "-p", "{cfg}"], "/usr/sbin/haproxy"),
    (["haproxy", "{cfg}"], "/usr/sbin/haproxy"),
    (["haproxy", "-f"], "/usr/sbin/haproxy"),
    (["haproxy", "-f", "{cfg}"], "/usr/bin/python3.11"),
    (["haproxy", "-f", "{cfg}"], "")])
def test_runs_config_rejects_other_configs_and_other_programs(tmp_path: Path,
                                                              cmdline: list[str],
                                                              exe: str) -> None:
    cfg = tmp_path / "haproxy.cfg"
    argv = [arg.format(cfg=cfg, other=tmp_path / "other.cfg") for arg in cmdline]
    assert not process.runs_config(_haproxy(argv, exe), HAPROXY, str(cfg))


def test_runs_config_takes_a_directory_only_for_its_cfg_files(tmp_path: Path) -> None:
    (tmp_path / "haproxy.conf").write_text("global\n")
    info = _haproxy(["haproxy", "-f", str(tmp_path)])
    assert not process.runs_config(info, HAPROXY, str(tmp_path / "haproxy.conf"))


def test_runs_config_resolves_the_binary_path() -> None:
    """Debian 12 merges /usr: /sbin/haproxy is /usr/sbin/haproxy."""
    info = _haproxy(["haproxy", "-f", "/etc/haproxy/haproxy.cfg"],
                    os.path.realpath(HAPROXY))
    assert process.runs_config(info, "/sbin/haproxy", "/etc/haproxy/haproxy.cfg")


# --- signals and waiting ---------------------------------------------------------------

def test_signal_all_reports_only_the_processes_it_reached(
        sleeper: subprocess.Popen[bytes]) -> None:
    assert process.signal_all([sleeper.pid, 2 ** 22 + 1], 0) == [sleeper.pid]


def test_wait_gone_returns_survivors_at_the_deadline(sleeper: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    assert process.wait_gone([sleeper.pid], started + 0.2) == [sleeper.pid]
    assert 0.2 <= time.monotonic() - started < 0.5
    process.signal_all([sleeper.pid], process.SIGTERM)
    assert process.wait_gone([sleeper.pid], time.monotonic() + 2) == []


def test_a_detached_helper_is_named_and_nicer_than_its_caller(tmp_path: Path) -> None:
    """A helper an action leaves behind yields the CPU to the failover it was born in."""
    seen = tmp_path / "seen"
    pid = process.spawn_detached(lambda: seen.write_text(
        f"{os.nice(0)} {Path('/proc/self/comm').read_text().strip()}"), name="kuth-test")
    deadline = time.monotonic() + 5
    while not seen.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    niceness, name = seen.read_text().split()
    assert (int(niceness), name) == (os.nice(0) + process.BACKGROUND_NICE, "kuth-test")
    assert pid != os.getpid()


def test_a_hurried_helper_and_its_child_get_their_callers_priority_back(
        tmp_path: Path, needs_root: None) -> None:  # a nice value lowered again
    """The tickler, once its start has announced the address: itself and the attrd_updater
    it started meanwhile run as the agent did."""
    seen = tmp_path / "seen"

    def helper() -> None:
        child = subprocess.Popen(["sleep", "5"])
        process.hurry(child.pid)
        seen.write_text(f"{os.nice(0)} {os.getpriority(os.PRIO_PROCESS, child.pid)}")
        child.kill()
        child.wait()

    process.spawn_detached(helper)
    deadline = time.monotonic() + 5
    while not seen.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen.read_text().split() == [str(os.nice(0))] * 2


def test_monitor_path_imports_no_costly_module() -> None:
    loaded = modules_loaded_by("import ocf_lib.adapters.process")
    assert not loaded & {"re", "enum", "json", "socket", "subprocess", "logging",
                                 "typing", "dataclasses", "signal", "csv", "psutil"}


# --- a real haproxy --------------------------------------------------------------------

@pytest.fixture
def lab(netns_pool: NetnsPool, tmp_path: Path) -> Iterator[HaproxyLab]:
    lab = HaproxyLab(netns_pool.new(), tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def test_find_haproxy_finds_a_daemon_by_binary_and_config(lab: HaproxyLab) -> None:
    [pid] = lab.start()
    found = process.find_haproxy(HAPROXY, str(lab.config))
    assert [info.pid for info in found] == [pid]
    assert process.runs_config(found[0], HAPROXY, str(lab.config))


def test_find_haproxy_finds_master_and_worker(lab: HaproxyLab) -> None:
    [master] = lab.start(master_worker=True)
    found = process.find_haproxy(HAPROXY, str(lab.config))
    assert [info.pid for info in found][0] == master and len(found) == 2
    assert found[1].ppid == master


def test_find_haproxy_ignores_the_same_config_copied_elsewhere(lab: HaproxyLab,
                                                               tmp_path: Path) -> None:
    lab.start()
    assert process.find_haproxy(HAPROXY, str(tmp_path / "copy" / "haproxy.cfg")) == []


def test_find_haproxy_ignores_another_program_naming_the_config(
        lab: HaproxyLab) -> None:
    other = subprocess.Popen(["sleep", "60", "-f", str(lab.config)])
    try:
        assert process.find_haproxy(HAPROXY, str(lab.config)) == []
    finally:
        other.kill()
        other.wait()


def test_a_stopped_haproxy_is_alive_and_stopped(lab: HaproxyLab) -> None:
    [pid] = lab.start()
    freeze(pid)
    try:
        info = process.process_info(pid)
        assert process.alive(pid) and info is not None and info.state == "T"
    finally:
        os.kill(pid, signal.SIGCONT)


def test_soft_stop_then_wait_gone(lab: HaproxyLab) -> None:
    pids = lab.start()
    assert process.signal_all(pids, process.SIGUSR1) == pids
    assert process.wait_gone(pids, time.monotonic() + 5) == []
    assert process.find_haproxy(HAPROXY, str(lab.config)) == []
