"""ocf_lib.logic.haproxy_runtime's decisions, in the unit tier: which paths and extraconf an
Instance accepts, the command line it runs haproxy with and when that changed, which file
may serve as its pidfile, which listener names an address this node lacks, and which node
attributes a monitor publishes. Nothing is started; attrd is replaced. test_haproxy_agent.py
runs the agent and haproxy in namespaces."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocf_lib.logic import haproxy_runtime as runtime
from ocf_lib.logic.haproxy_runtime import ConfigInvalid, Instance, NotInstalled, UnsafeFile
from ocf_lib.ocf.log import Logger


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The agents' state directory (HA_RSCTMP) of this test alone."""
    state = tmp_path / "rsctmp"
    state.mkdir()
    monkeypatch.setenv("HA_RSCTMP", str(state))
    return state


def instance(binpath: str = "/usr/sbin/haproxy", conffile: str = "/etc/haproxy/haproxy.cfg",
             extraconf: str = "", pidfile: str = "", stats_socket: str = "") -> Instance:
    return Instance("haproxy-rsc", binpath, conffile, extraconf, pidfile, stats_socket)


# -- parameters --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["binpath", "conffile", "pidfile", "stats_socket"])
@pytest.mark.parametrize("value", ["haproxy", "./haproxy.cfg", "/x\0y", "/x\ny"])
def test_paths_must_be_absolute_and_plain(name: str, value: str) -> None:
    with pytest.raises(ConfigInvalid, match=f"{name} .* must be an absolute path"):
        instance(**{name: value})


def test_the_pidfile_is_in_the_state_directory_unless_given(state_dir: Path) -> None:
    assert instance().pidfile == str(state_dir / "kuth-haproxy-haproxy-rsc.pid")
    assert instance(pidfile="/run/haproxy.pid").pidfile == "/run/haproxy.pid"


def test_extraconf_is_split_as_a_shell_would_without_one() -> None:
    ours = instance(extraconf="-f '/etc/haproxy/with space.cfg' -V -L node1")
    assert ours.extra_args() == ["-f", "/etc/haproxy/with space.cfg", "-V", "-L", "node1"]
    assert instance(extraconf="").extra_args() == []


@pytest.mark.parametrize("extraconf, words", [
    ("-D", "may not contain -D"), ("-V -sf 12 -x /run/s", "may not contain -sf, -x"),
    ("-Ws", "-Ws"), ("-db", "-db"), ("-p /tmp/p", "-p"), ("-c", "-c"),
    ("-f 'unclosed", "cannot be split"),
])
def test_extraconf_may_not_take_what_the_agent_sets(extraconf: str, words: str) -> None:
    with pytest.raises(ConfigInvalid, match=words):
        instance(extraconf=extraconf).extra_args()


def test_the_command_line_is_master_worker_with_the_agents_socket_and_pidfile() -> None:
    ours = instance(extraconf="-f /etc/haproxy/extra.cfg")
    assert ours.argv() == ["/usr/sbin/haproxy", "-W", "-D", "-p", ours.pidfile,
                           "-S", f"{ours.master_socket},mode,600",
                           "-f", "/etc/haproxy/haproxy.cfg", "-f", "/etc/haproxy/extra.cfg"]
    assert ours.argv("/run/accepted.cfg")[7:9] == ["-f", "/run/accepted.cfg"]


def test_only_binpath_extraconf_or_pidfile_change_the_command_line() -> None:
    """Compared with the command line the running master was started with, also when that
    ran the accepted copy in conffile's place."""
    started = instance(extraconf="-V")
    started.state.write("argv", "\0".join(started.argv("/run/accepted.cfg")))
    assert started.running_config() == "/run/accepted.cfg"
    assert not instance(extraconf="-V").command_line_changed()
    assert instance(extraconf="").command_line_changed()
    assert instance(binpath="/usr/local/sbin/haproxy", extraconf="-V").command_line_changed()
    assert instance(extraconf="-V", pidfile="/run/other.pid").command_line_changed()


def test_without_a_recorded_start_the_running_config_is_conffile() -> None:
    assert instance().running_config() == "/etc/haproxy/haproxy.cfg"


# -- files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, refused", [(None, False), ("", False), ("4242\n", False),
                                              ("4242\n4243\n", False), ("hello\n", True)])
def test_a_pidfile_holds_pids_or_nothing(tmp_path: Path, content: str | None,
                                         refused: bool) -> None:
    """An empty file counts as one: a crash may leave it."""
    path = tmp_path / "haproxy.pid"
    if content is not None:
        path.write_text(content)
    assert runtime._not_a_pidfile(str(path)) == refused


def test_a_link_or_a_directory_is_no_pidfile(tmp_path: Path) -> None:
    (tmp_path / "pid").write_text("4242\n")
    (tmp_path / "link").symlink_to(tmp_path / "pid")
    assert runtime._not_a_pidfile(str(tmp_path / "link"))
    assert runtime._not_a_pidfile(str(tmp_path))


def test_check_files_accepts_a_binary_and_a_configuration_of_roots() -> None:
    instance(binpath="/bin/sh", conffile="/etc/passwd").check_files()


def test_check_files_says_what_is_not_installed(tmp_path: Path) -> None:
    with pytest.raises(NotInstalled, match="haproxy binary /nonexistent/haproxy is not"):
        instance(binpath="/nonexistent/haproxy", conffile="/etc/passwd").check_files()
    with pytest.raises(NotInstalled, match="cannot be read on this node: No such file"):
        instance(binpath="/bin/sh", conffile=str(tmp_path / "missing.cfg")).check_files()
    with pytest.raises(NotInstalled, match="directory /nonexistent of pidfile"):
        instance(binpath="/bin/sh", conffile="/etc/passwd",
                 pidfile="/nonexistent/haproxy.pid").check_files()


def test_check_files_refuses_a_configuration_others_may_change(tmp_path: Path) -> None:
    conffile = tmp_path / "haproxy.cfg"
    conffile.write_text("global\n")
    conffile.chmod(0o666)  # also not root's, unless the test runs as root
    with pytest.raises(UnsafeFile, match="can be changed by others than root"):
        instance(binpath="/bin/sh", conffile=str(conffile)).check_files()


def test_check_files_refuses_a_pidfile_that_is_another_file(tmp_path: Path) -> None:
    (tmp_path / "planted").write_text("not a pid\n")
    with pytest.raises(UnsafeFile, match="is not a pidfile"):
        instance(binpath="/bin/sh", conffile="/etc/passwd",
                 pidfile=str(tmp_path / "planted")).check_files()


# -- listeners on addresses this node lacks ----------------------------------------------------

@pytest.mark.parametrize("binds, missing", [
    (["127.0.0.1:6443"], ""),
    (["198.18.0.10:6443"], "listen kube: bind 198.18.0.10:6443"),
    (["127.0.0.1:6443", "[2001:2::10]:6443"], "listen kube: bind 2001:2::10:6443"),
    (["*:6443", ":::6443", "0.0.0.0:6443"], ""),          # wildcards
    (["198.18.0.10:6443 transparent"], ""),                # haproxy's to judge
    (["unix@/run/kube.sock"], ""),
])
def test_the_first_listener_on_an_address_this_node_lacks(tmp_path: Path, binds: list[str],
                                                          missing: str) -> None:
    """198.18.0.10 and 2001:2::10 are the tests' addresses: never the machine's own."""
    conffile = tmp_path / "haproxy.cfg"
    conffile.write_text("listen kube\n" + "".join(f"    bind {b}\n" for b in binds)
                        + "    mode tcp\n    server s1 127.0.0.1:1\n")
    assert instance(conffile=str(conffile)).missing_addresses() == missing


def test_an_unreadable_configuration_is_left_to_haproxy(tmp_path: Path) -> None:
    assert instance(conffile=str(tmp_path / "missing.cfg")).missing_addresses() == ""


# -- node attributes ------------------------------------------------------------------------------

@pytest.fixture
def attrd(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str | None]]]:
    """attrd_updater's calls (name, value or None for a deletion)."""
    calls: list[tuple[str, str | None]] = []

    def updater(name: str, value: str | None, log: Logger) -> bool:
        calls.append((name, value))
        return True
    monkeypatch.setattr(runtime, "_attrd_updater", updater)
    yield calls


def publish(ours: Instance, counts: dict[str, tuple[int, int]], old_workers: int = 0,
            refused: str | None = None) -> None:
    runtime.publish_attributes(ours.state, "web:1", counts, old_workers, refused,
                               Logger("haproxy"))


def test_attributes_are_published_once_and_then_only_when_they_change(attrd) -> None:
    ours = instance()
    publish(ours, {"kube": (2, 3), "api": (1, 1)})
    assert sorted(attrd) == [("web-api-up", "1"), ("web-kube-up", "2"), ("web-old-workers", "0")]
    attrd.clear()
    publish(ours, {"kube": (2, 3), "api": (1, 1)})
    assert attrd == []
    publish(ours, {"kube": (3, 3)}, old_workers=1, refused="haproxy.cfg:39:  unknown\n keyword")
    assert sorted(attrd, key=str) == sorted([
        ("web-api-up", None), ("web-kube-up", "3"), ("web-old-workers", "1"),
        ("web-config-refused", "haproxy.cfg:39: unknown keyword")], key=str)


def test_after_a_failed_update_the_next_monitor_sends_every_value_again(
        attrd, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = ["web-kube-up"]  # attrd_updater fails once for it

    def updater(name: str, value: str | None, log: Logger) -> bool:
        attrd.append((name, value))
        if name in failing:
            failing.remove(name)
            return False
        return True
    monkeypatch.setattr(runtime, "_attrd_updater", updater)
    ours = instance()
    publish(ours, {"kube": (1, 1)})
    attrd.clear()
    publish(ours, {"kube": (1, 1)})
    assert sorted(attrd) == [("web-kube-up", "1"), ("web-old-workers", "0")]
    attrd.clear()
    publish(ours, {"kube": (1, 1)})
    assert attrd == []


def test_clearing_deletes_every_published_attribute(attrd) -> None:
    ours = instance()
    publish(ours, {"kube": (1, 1)})
    attrd.clear()
    runtime.clear_backend_attributes(ours.state, Logger("haproxy"))
    assert sorted(attrd) == [("web-kube-up", None), ("web-old-workers", None)]
    assert ours.state.read("attributes") is None
