"""ocf_lib.adapters.haproxy_api: the runtime API client, on recorded answers of HAProxy 2.6
(Debian 12) and 3.0 (Debian 13, files named *_3.0.txt) and against the real haproxy of this
machine (and its master CLI) inside a test namespace."""
from __future__ import annotations

import _socket
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lab.haproxy import SERVERS, HaproxyLab, freeze, wait_for
from lab.netns import NetnsPool

from ocf_lib.adapters import haproxy_api as api
from ocf_lib.adapters import process
from ocf_lib.adapters.haproxy_api import MasterProcess, RuntimeApiError
from ocfshim import modules_loaded_by

DATA = Path(__file__).parent / "data" / "haproxy"


def _recorded(name: str) -> str:
    return (DATA / name).read_text()


# --- recorded answers ------------------------------------------------------------------

def test_show_info_is_read_as_name_value_pairs() -> None:
    info = api.parse_info(_recorded("show_info.txt"))
    assert info["Name"] == "HAProxy" and info["Version"].startswith("2.6.")
    assert info["Pid"].isdigit() and info["Stopping"] == "0"
    assert info["Unstoppable Jobs"] == "0" and info["Listeners"] == "3"


def test_show_stat_rows_are_keyed_by_the_header_names() -> None:
    rows = api.parse_stat(_recorded("show_stat.txt"))
    assert [(r["pxname"], r["svname"], r["type"]) for r in rows][:3] == [
        ("kube-apiserver", "FRONTEND", "0"), ("kube-apiserver", "kube-mast01", "2"),
        ("kube-apiserver", "kube-mast02", "2")]
    assert rows[1]["status"] == "UP" and rows[1]["check_status"] == "L4OK"
    assert rows[1]["addr"] == "198.18.2.1:6443"
    assert "" not in rows[0]          # the trailing comma names no column


def test_show_stat_reads_a_quoted_field_with_commas_and_quotes() -> None:
    """A failed HTTP check copies the server's reason phrase into last_chk, quoted."""
    w2 = next(r for r in api.parse_stat(_recorded("show_stat.txt")) if r["svname"] == "w2")
    assert w2["last_chk"] == 'Down, "for" maintenance'
    assert (w2["status"], w2["check_status"], w2["addr"]) == ("DOWN", "L7STS",
                                                              "198.18.2.2:8080")


def test_show_stat_follows_the_header_when_columns_move() -> None:
    text = "# svname,status,pxname,type,\nsrv1,UP,be,2,\nsrv2,DOWN,be,2,\n\n"
    assert api.backend_servers_up(api.parse_stat(text)) == {"be": (1, 2)}


def test_backend_servers_up_counts_up_and_no_check_servers_per_backend() -> None:
    rows = api.parse_stat(_recorded("show_stat.txt"))
    assert api.backend_servers_up(rows) == {"kube-apiserver": (2, 4), "web": (1, 2)}


def test_drained_and_maintenance_servers_are_not_up() -> None:
    rows = api.parse_stat(_recorded("show_stat_paused_drain_maint.txt"))
    assert api.backend_servers_up(rows) == {"kube-apiserver": (1, 4), "web": (0, 2)}


def test_a_server_going_down_still_counts_as_up_until_it_is_down() -> None:
    text = "# pxname,svname,status,type,\nbe,a,UP 1/2,2,\nbe,b,DOWN 1/2,2,\nbe,c,NOLB,2,\n"
    assert api.backend_servers_up(api.parse_stat(text)) == {"be": (1, 3)}


def test_closed_frontends_names_paused_frontends_only() -> None:
    assert api.closed_frontends(api.parse_stat(_recorded("show_stat.txt"))) == []
    rows = api.parse_stat(_recorded("show_stat_paused_drain_maint.txt"))
    assert api.closed_frontends(rows) == ["kube-apiserver"]


def test_closed_frontends_reports_stopped_listeners_and_keeps_full_ones_open() -> None:
    text = ("# pxname,svname,status,type,\nfe,FRONTEND,FULL,0,\nfe,sock-1,OPEN,3,\n"
            "fe,sock-2,STOP,3,\nother,FRONTEND,STOP,0,\n")
    assert api.closed_frontends(api.parse_stat(text)) == ["fe/sock-2", "other"]


def test_show_proc_lists_master_and_worker() -> None:
    procs = api.parse_proc(_recorded("show_proc.txt"))
    assert [(p.role, p.reloads, p.failed_reloads, p.old) for p in procs] == [
        ("master", 0, 0, False), ("worker", 0, None, False)]
    assert procs[0].version.startswith("2.6.") and procs[1].uptime == "0d00h00m01s"


def test_show_proc_marks_old_workers_after_a_reload() -> None:
    procs = api.parse_proc(_recorded("show_proc_reloaded.txt"))
    assert [(p.pid, p.role, p.reloads, p.old) for p in procs] == [
        (27583, "master", 1, False), (27610, "worker", 0, False), (27584, "worker", 1, True)]


@pytest.mark.parametrize("text,seconds", [("0d00h00m08s", 8), ("1d02h03m04s", 93784),
                                          ("12s", 12), ("", 0), ("8 s", 0), ("d", 0)])
def test_uptime_in_seconds(text: str, seconds: int) -> None:
    assert api.uptime_seconds(text) == seconds


def test_an_old_worker_is_old_since_the_first_reload_after_its_start() -> None:
    """show_proc_reloaded.txt: old worker 27584 (1 reload, up 3 s) was replaced by 27610
    (0 reloads, up 1 s): old for 1 s. After a second, failed reload (27584: 2 reloads, up 8 s;
    27610: 1, up 6 s) it has been old for 6 s, not 8."""
    assert api.old_worker_ages(api.parse_proc(_recorded("show_proc_reloaded.txt"))) == {27584: 1}
    assert api.old_worker_ages(api.parse_proc(_recorded("show_proc_failed_reload.txt"))) == {
        27584: 6}
    assert api.old_worker_ages(api.parse_proc(_recorded("show_proc.txt"))) == {}


def test_show_proc_counts_a_failed_reload() -> None:
    """A reload with a broken config keeps the running worker; only this counter says so."""
    master = api.parse_proc(_recorded("show_proc_failed_reload.txt"))[0]
    assert (master.reloads, master.failed_reloads) == (2, 1)


def test_show_proc_of_haproxy_3_0_reads_like_2_6s() -> None:
    """3.0 adds a `# programs` heading after the workers; old workers keep theirs."""
    procs = api.parse_proc(_recorded("show_proc_3.0.txt"))
    assert [(p.role, p.reloads, p.failed_reloads, p.old) for p in procs] == [
        ("master", 0, 0, False), ("worker", 0, None, False)]
    assert procs[0].version == "3.0.11-1+deb13u5"
    reloaded = api.parse_proc(_recorded("show_proc_reloaded_3.0.txt"))
    assert [(p.pid, p.reloads, p.old) for p in reloaded] == [
        (20725, 1, False), (20734, 0, False), (20727, 1, True)]
    assert api.old_worker_ages(reloaded) == {20727: 0}
    failed = api.parse_proc(_recorded("show_proc_failed_reload_3.0.txt"))[0]
    assert (failed.reloads, failed.failed_reloads) == (2, 1)


@pytest.mark.parametrize("version, answers", [
    ("2.6.12-1+deb12u4", False), ("2.6.22", False), ("1.8.19", False), ("2.7.0", True),
    ("2.7-dev5", True), ("3.0.11-1+deb13u5", True), ("10.0.1", True), ("", False),
    ("haproxy", False)])
def test_masters_from_2_7_on_answer_reload(version: str, answers: bool) -> None:
    assert api.answers_reload(version) is answers


def test_a_2_6_reload_answers_nothing() -> None:
    assert api.parse_reload("") is None and api.parse_reload("\n") is None


def test_a_3_0_reload_answers_its_success_and_the_new_workers_messages() -> None:
    answer = api.parse_reload(_recorded("master_reload_3.0.txt"))
    assert answer is not None and answer.success
    assert "New worker (19641) forked" in answer.messages
    assert "Success" not in answer.messages and not answer.messages.startswith("--")


@pytest.mark.parametrize("name, alert", [
    ("master_reload_config_refused_3.0.txt",
     "/tmp/rec30/haproxy.cfg:14: unknown keyword 'bogus-keyword' in 'global' section"),
    ("master_reload_bind_failed_3.0.txt",
     "/tmp/rec30/haproxy.cfg:10: binding for frontend fe: protocol tcpv4: cannot bind "
     "socket (Cannot assign requested address) for [198.18.9.9:6443]."),
    ("master_reload_3.0.txt", "")])
def test_a_3_0_reload_haproxy_refuses_carries_its_first_alert(name: str, alert: str) -> None:
    """The refusal's reason is HAProxy's own first [ALERT], as the agent's exit reason."""
    from ocf_lib.logic.haproxy_runtime import first_alert
    answer = api.parse_reload(_recorded(name))
    assert answer is not None and answer.success == (alert == "")
    assert first_alert(answer.messages) == alert


@pytest.mark.parametrize("text", ["Success=2\n--\n", "Success=1\n", "Unknown command.\n"])
def test_a_reload_answer_of_another_form_is_an_error(text: str) -> None:
    with pytest.raises(RuntimeApiError, match="unexpected answer to 'reload'"):
        api.parse_reload(text)


@pytest.mark.parametrize("parse, name", [
    (api.parse_info, "unknown_command.txt"), (api.parse_stat, "permission_denied.txt"),
    (api.parse_stat, "master_bad_route.txt"), (api.parse_proc, "show_info.txt")])
def test_parsers_reject_an_answer_that_is_not_theirs(parse: Callable[[str], object],
                                                     name: str) -> None:
    with pytest.raises(RuntimeApiError, match="unexpected answer"):
        parse(_recorded(name))


@pytest.mark.parametrize("cmd", ["show info; shutdown sessions", "show info\nshow stat", "",
                                 "show info\r"])
def test_command_refuses_anything_but_one_command(cmd: str) -> None:
    with pytest.raises(ValueError):
        api.command("/nonexistent.sock", cmd, timeout=1)


@pytest.mark.parametrize("route", ["1", "@1 show", ""])
def test_command_refuses_a_malformed_route(route: str) -> None:
    with pytest.raises(ValueError):
        api.command("/nonexistent.sock", "show info", timeout=1, route=route)


def test_monitor_path_imports_no_costly_module() -> None:
    loaded = modules_loaded_by("import ocf_lib.adapters.haproxy_api")
    assert not loaded & {"re", "enum", "json", "socket", "subprocess", "logging",
                                 "typing", "dataclasses", "signal", "csv", "psutil"}


# --- sockets without haproxy -----------------------------------------------------------

def test_a_missing_socket_is_reported_as_missing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeApiError, match=r"stats socket .*/none.sock does not exist"):
        api.show_info(str(tmp_path / "none.sock"), timeout=1)


def test_a_socket_nobody_listens_on_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    stale = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    with pytest.raises(RuntimeApiError, match="refuses connections"):
        api.show_info(path, timeout=1)


def test_a_silent_listener_times_out_within_the_bound(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")
    silent = _listener(path, 1)
    started = time.monotonic()
    with pytest.raises(RuntimeApiError, match=r"did not answer 'show info' .* 0.3 s"):
        api.show_info(path, timeout=0.3)
    assert time.monotonic() - started < 0.6
    silent.close()


def test_a_full_backlog_times_out_within_the_bound(tmp_path: Path) -> None:
    """connect() on a unix socket whose backlog is full fails with EAGAIN at once: the
    client keeps trying until its deadline instead of misreporting or hanging."""
    path = str(tmp_path / "full.sock")
    held = [_listener(path, 0)]
    while True:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.setblocking(False)
        held.append(sock)
        try:
            sock.connect(path)
        except BlockingIOError:
            break
    started = time.monotonic()
    with pytest.raises(RuntimeApiError, match="did not answer"):
        api.command(path, "show info", timeout=0.3)
    assert 0.25 < time.monotonic() - started < 0.6
    for sock in held:
        sock.close()


def _listener(path: str, backlog: int) -> _socket.socket:
    """A unix socket that accepts into its backlog and never answers."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(backlog)
    return sock


# --- a real haproxy --------------------------------------------------------------------

@pytest.fixture
def lab(netns_pool: NetnsPool, tmp_path: Path) -> Iterator[HaproxyLab]:
    """The guide's config in a namespace, kube-mast01 served (UP), 02 and 03 not (DOWN)."""
    lab = HaproxyLab(netns_pool.new(), tmp_path)
    try:
        lab.start_server(SERVERS[0])
        yield lab
    finally:
        lab.close()


def _servers_up(path: str) -> dict[str, tuple[int, int]]:
    return api.backend_servers_up(api.show_stat(path, timeout=2))


def test_show_info_answers_with_the_pid_haproxy_wrote(lab: HaproxyLab) -> None:
    [pid] = lab.start()
    info = api.show_info(lab.socket, timeout=2)
    assert info["Pid"] == str(pid) and info["Stopping"] == "0"


def test_backend_counts_follow_servers_going_down_and_up(lab: HaproxyLab) -> None:
    lab.start()
    wait_for(lambda: _servers_up(lab.socket) == {"kube-apiserver": (1, 3)}, what="1 of 3 UP")
    lab.start_server(SERVERS[1])
    wait_for(lambda: _servers_up(lab.socket) == {"kube-apiserver": (2, 3)}, what="2 of 3 UP")
    lab.stop_server(SERVERS[0])
    lab.stop_server(SERVERS[1])
    wait_for(lambda: _servers_up(lab.socket) == {"kube-apiserver": (0, 3)}, what="all DOWN")


def test_an_unknown_command_is_an_error(lab: HaproxyLab) -> None:
    lab.start()
    with pytest.raises(RuntimeApiError, match="Unknown command"):
        api.command(lab.socket, "show nothing", timeout=2)


def test_an_operator_level_socket_refuses_set_server(lab: HaproxyLab) -> None:
    """`level admin` is what set server needs; the default level is operator."""
    operator = str(lab.workdir / "operator.sock")
    lab.config.write_text(lab.config.read_text().replace(
        "    stats timeout", f"    stats socket {operator}\n    stats timeout"))
    lab.start()
    assert api.show_info(operator, timeout=2)["Pid"]
    with pytest.raises(RuntimeApiError, match="Permission denied"):
        api.command(operator, "set server kube-apiserver/kube-mast01 state drain", timeout=2)


def test_a_disabled_frontend_is_reported_closed(lab: HaproxyLab) -> None:
    lab.start()
    assert api.closed_frontends(api.show_stat(lab.socket, timeout=2)) == []
    api.command(lab.socket, "disable frontend kube-apiserver", timeout=2)
    assert api.closed_frontends(api.show_stat(lab.socket, timeout=2)) == ["kube-apiserver"]


def test_a_frozen_haproxy_is_an_error_in_bounded_time_even_with_a_full_backlog(
        lab: HaproxyLab) -> None:
    """SIGSTOP: the kernel still queues connections, nothing answers; after a dozen
    monitors the queue is full and connect fails at once -- both end at the timeout."""
    [pid] = lab.start()
    freeze(pid)
    for _ in range(15):
        started = time.monotonic()
        with pytest.raises(RuntimeApiError, match="did not answer 'show info'"):
            api.show_info(lab.socket, timeout=0.2)
        assert time.monotonic() - started < 0.5
    os.kill(pid, signal.SIGCONT)
    assert wait_for(lambda: api.show_info(lab.socket, timeout=2))


def test_a_killed_haproxy_leaves_a_socket_that_refuses(lab: HaproxyLab) -> None:
    [pid] = lab.start()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not process.alive(pid), what="haproxy gone")
    with pytest.raises(RuntimeApiError, match="refuses connections"):
        api.show_info(lab.socket, timeout=1)


# --- the master CLI (master-worker mode) -----------------------------------------------

def test_master_cli_lists_its_worker_and_forwards_commands(lab: HaproxyLab) -> None:
    [master_pid] = lab.start(master_worker=True)
    procs = api.show_proc(lab.master_socket, timeout=2)
    assert [(p.pid, p.role) for p in procs][0] == (master_pid, "master")
    [worker] = [p for p in procs if p.role == "worker"]
    for route in (api.CURRENT_WORKER, api.worker_route(worker.pid)):
        assert api.show_info(lab.master_socket, timeout=2, route=route)["Pid"] == str(worker.pid)
    assert api.show_info(lab.socket, timeout=2)["Pid"] == str(worker.pid)
    rows = api.show_stat(lab.master_socket, timeout=2, route=api.CURRENT_WORKER)
    assert "kube-apiserver" in api.backend_servers_up(rows)


def test_master_cli_refuses_a_route_to_no_process(lab: HaproxyLab) -> None:
    lab.start(master_worker=True)
    with pytest.raises(RuntimeApiError, match="Can't find the target PID"):
        api.show_info(lab.master_socket, timeout=2, route=api.worker_route(1))


def test_master_cli_with_a_frozen_worker_times_out_but_show_proc_answers(
        lab: HaproxyLab) -> None:
    """The master waits for the worker without a limit of its own: only our deadline
    ends the forwarded command. The master itself keeps answering."""
    lab.start(master_worker=True)
    [worker] = [p for p in api.show_proc(lab.master_socket, timeout=2) if p.role == "worker"]
    freeze(worker.pid)
    started = time.monotonic()
    with pytest.raises(RuntimeApiError, match="did not answer '@1 show info'"):
        api.show_info(lab.master_socket, timeout=0.3, route=api.CURRENT_WORKER)
    assert time.monotonic() - started < 0.6
    assert [p.pid for p in api.show_proc(lab.master_socket, timeout=1)
            if p.role == "worker"] == [worker.pid]
    os.kill(worker.pid, signal.SIGCONT)


def test_master_cli_reload_starts_a_new_worker(lab: HaproxyLab) -> None:
    """`reload` answers nothing in 2.6 and `Success=1` with the loading's messages from 2.7
    on; the master re-executes itself, and in 2.6 its socket refuses connections for a moment
    meanwhile."""
    lab.start(master_worker=True)
    procs = api.show_proc(lab.master_socket, timeout=2)
    [old] = [p for p in procs if p.role == "worker"]
    answer = api.reload(lab.master_socket, timeout=5)
    if api.answers_reload(procs[0].version):
        assert answer is not None and answer.success, answer
    else:
        assert answer is None

    def new_worker() -> list[MasterProcess]:
        try:
            procs = api.show_proc(lab.master_socket, timeout=2)
        except RuntimeApiError:
            return []
        return [p for p in procs if p.role == "worker" and not p.old and p.pid != old.pid]
    [new] = wait_for(new_worker, what="a new worker")  # type: ignore[misc]
    master = api.show_proc(lab.master_socket, timeout=2)[0]
    assert (master.reloads, master.failed_reloads) == (1, 0)
    assert api.show_info(lab.master_socket, timeout=2, route=api.CURRENT_WORKER)["Pid"] == \
        str(new.pid)
