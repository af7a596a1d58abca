"""ocf_lib.adapters.haproxy_config: the facts an agent needs from haproxy.cfg, with HAProxy's own
word splitting (checked against `.notice` lines that haproxy -c prints back)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from lab.guide import GUIDE_CFG
from lab.haproxy import HAPROXY

from ocf_lib.adapters.haproxy_config import Bind, ConfigReadError, StatsSocket, parse_address, \
    read_config, split_line

RECORDED_CFG = Path(__file__).parent / "data" / "haproxy" / "recorded.cfg"


def _write(tmp_path: Path, text: str, name: str = "haproxy.cfg") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_guides_config_gives_what_the_agent_needs() -> None:
    config = read_config(GUIDE_CFG)
    assert (config.daemon, config.master_worker, config.pidfile) == (True, False, None)
    assert (config.user, config.group, config.chroot) == ("haproxy", "haproxy",
                                                          "/var/lib/haproxy")
    assert config.stats_sockets == [StatsSocket("/run/haproxy/admin.sock", level="admin",
                                                mode=0o660)]
    assert config.binds == [Bind("frontend", "kube-apiserver", "ipv4", "0.0.0.0", 6443, 6443),
                            Bind("listen", "stats", "ipv4", "0.0.0.0", 32700, 32700)]
    assert (config.frontends, config.listens, config.backends) == (
        ["kube-apiserver"], ["stats"], ["kube-apiserver"])


def test_the_guides_config_names_a_user_and_group_of_this_node() -> None:
    import grp
    import pwd
    uid, gid = read_config(GUIDE_CFG).ids()
    assert (uid, gid) == (pwd.getpwnam("haproxy").pw_uid, grp.getgrnam("haproxy").gr_gid)


def test_ids_are_unchanged_without_user_and_numeric_with_uid(tmp_path: Path) -> None:
    assert read_config(_write(tmp_path, "global\n    daemon\n")).ids() == (-1, -1)
    config = read_config(_write(tmp_path, "global\n    uid 104\n    gid 107\n"))
    assert config.ids() == (104, 107)


def test_an_unknown_user_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigReadError, match="user 'kuth-nobody' .* does not exist"):
        read_config(_write(tmp_path, "global\n    user kuth-nobody\n")).ids()


def test_the_recorded_config_has_master_worker_facts(tmp_path: Path) -> None:
    text = RECORDED_CFG.read_text() + "global\n    master-worker\n"
    config = read_config(_write(tmp_path, text))
    assert config.master_worker and config.pidfile == "/run/haproxy/h.pid"
    [sock] = config.stats_sockets
    assert sock.expose_fd_listeners and sock.level == "admin"
    assert config.backends == ["kube-apiserver", "web"]


@pytest.mark.parametrize("address, parsed", [
    ("*:6443", ("ipv4", "0.0.0.0", 6443, 6443)),
    (":6443", ("ipv4", "0.0.0.0", 6443, 6443)),
    ("198.18.1.1:6443", ("ipv4", "198.18.1.1", 6443, 6443)),
    (":::6443", ("ipv6", "::", 6443, 6443)),
    ("2001:2::1:443", ("ipv6", "2001:2::1", 443, 443)),
    ("[2001:2::1]:443", ("ipv6", "2001:2::1", 443, 443)),
    ("ipv4@:80", ("ipv4", "0.0.0.0", 80, 80)),
    ("ipv6@:80", ("ipv6", "::", 80, 80)),
    ("ipv6@*:80", ("ipv6", "::", 80, 80)),
    ("198.18.1.1:8000-8010", ("ipv4", "198.18.1.1", 8000, 8010)),
    ("unix@/run/haproxy/fe.sock", ("unix", "/run/haproxy/fe.sock", None, None)),
    ("/run/haproxy/fe.sock", ("unix", "/run/haproxy/fe.sock", None, None)),
    ("abns@fe", ("abns", "fe", None, None)),
    ("fd@3", ("fd", "3", None, None))])
def test_bind_addresses_in_every_form_haproxy_accepts(address: str,
                                                      parsed: tuple[object, ...]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["198.18.1.1", "198.18.1.1:http", "*:"])
def test_an_address_without_a_port_is_an_error(address: str) -> None:
    with pytest.raises(ConfigReadError, match="port"):
        parse_address(address)


def test_bind_lines_with_several_addresses_and_options(tmp_path: Path) -> None:
    config = read_config(_write(tmp_path, """\
frontend fe   # a comment
    bind 198.18.1.1:80,198.18.1.2:80 name web v4v6
    bind :::443 v4v6
listen ls
    bind unix@/run/haproxy/ls.sock mode 600
backend be
    bind 198.18.1.9:1   # not a listener: binds belong to frontends and listens
peers p
    bind 198.18.1.9:2
"""))
    assert [(b.section, b.name, b.address, b.port) for b in config.binds] == [
        ("frontend", "fe", "198.18.1.1", 80), ("frontend", "fe", "198.18.1.2", 80),
        ("frontend", "fe", "::", 443), ("listen", "ls", "/run/haproxy/ls.sock", None)]


def test_stats_sockets_with_owner_level_and_tcp(tmp_path: Path) -> None:
    """unix-bind does not reach stats sockets in HAProxy 2.6: nothing is prefixed."""
    config = read_config(_write(tmp_path, """\
global
    stats socket /run/haproxy/a.sock
    unix-bind prefix /run/kuth/ mode 640 group haproxy
    stats socket unix@/run/kuth/admin.sock level admin user haproxy mode 600 expose-fd listeners
    stats socket ipv4@127.0.0.1:9999 level operator
"""))
    assert config.stats_sockets == [
        StatsSocket("/run/haproxy/a.sock"),
        StatsSocket("/run/kuth/admin.sock", level="admin", mode=0o600,
                    expose_fd_listeners=True, user="haproxy"),
        StatsSocket("ipv4@127.0.0.1:9999", unix=False)]
    assert [s.path for s in config.unix_stats_sockets(level="admin")] == [
        "/run/kuth/admin.sock"]


@pytest.mark.parametrize("line, words", [
    (r"stats realm HAProxy\ Statistics", ["stats", "realm", "HAProxy Statistics"]),
    ("bind :80 # comment", ["bind", ":80"]),
    ("bind x#y", ["bind", "x"]),
    ('a"b c"d', ["ab cd"]),
    ("'$HOME' $HOME", ["$HOME", "$HOME"]),
    ('"${KUTH_IP}:80" "$KUTH_IP"', ["198.18.1.1:80", "198.18.1.1"]),
    ('"${KUTH_UNSET}"', [""]),
    ('""', [""]),
    (r'"a\"b" \x41\#', ['a"b', "A#"]),
    ("\tindented\t words ", ["indented", "words"])])
def test_lines_split_the_way_haproxy_splits_them(line: str, words: list[str]) -> None:
    assert split_line(line, {"KUTH_IP": "198.18.1.1"}) == words


def test_word_splitting_agrees_with_haproxy_itself(tmp_path: Path) -> None:
    """haproxy -c echoes `.notice` words back: compare with ours for tricky lines."""
    messages = [r'"a\"b"', r"\x41\ B", "x#y", 'a"b c"d', "'$HOME'", '"${HOME}"']
    path = _write(tmp_path, "global\n" + "".join(f"    .notice {m}\n" for m in messages))
    out = subprocess.run([HAPROXY, "-c", "-f", path], capture_output=True, text=True).stderr
    echoed = [line.split("]: '", 1)[1][:-2] for line in out.splitlines()
              if ".cfg:" in line and "]: '" in line]
    assert echoed == [split_line(m)[0] for m in messages]


def test_a_directory_is_read_in_haproxy_order(tmp_path: Path) -> None:
    _write(tmp_path, "frontend b\n    bind :2\n", "20-b.cfg")
    _write(tmp_path, "global\n    daemon\nfrontend a\n    bind :1\n", "10-a.cfg")
    _write(tmp_path, "frontend ignored\n", "30-c.cfg.orig")
    config = read_config(str(tmp_path))
    assert config.daemon and config.frontends == ["a", "b"]


@pytest.mark.parametrize("text, reason", [
    ("global\n    stats realm 'open\n", r"haproxy.cfg:2: unmatched quote"),
    ("frontend fe\n    bind\n", r"haproxy.cfg:2: bind without an address in frontend fe"),
    ("frontend fe\n    bind 198.18.1.1\n", "has no port"),
    ("global\n    stats socket\n", "stats socket without a path"),
    ("global\n    stats socket /x.sock mode rw\n", "mode 'rw' is not octal"),
    ("global\n    uid haproxy\n", "uid 'haproxy' is not a number"),
    (".if defined(X)\nglobal\n.endif\n", r"conditional block \.if is not supported"),
    ("global\n    log \\q\n", r"unknown escape \\q")])
def test_what_cannot_be_read_is_a_config_error_with_file_and_line(
        tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigReadError, match=reason):
        read_config(_write(tmp_path, text))


def test_a_missing_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigReadError, match="cannot read .*/none.cfg: No such file"):
        read_config(str(tmp_path / "none.cfg"))


def test_the_sample_configs_are_valid_for_haproxy(tmp_path: Path) -> None:
    """The configs these tests read are ones haproxy itself accepts."""
    for cfg in (GUIDE_CFG, str(RECORDED_CFG)):
        result = subprocess.run([HAPROXY, "-c", "-q", "-f", cfg],
                                capture_output=True, text=True, env={**os.environ})
        assert result.returncode == 0, (cfg, result.stderr)
