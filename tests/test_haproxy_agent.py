"""ocf:kuth:haproxy driven for real: Debian's haproxy inside a node with its own network
namespace and a fresh /run (as after boot: no /run/haproxy), the guide's configuration with
test addresses (frontend 198.18.1.1, kube-apiserver stand-ins on 198.18.2.1-3)."""
import contextlib
import os
import subprocess
import time

import pytest

from lab.haproxy import FRONT, SERVERS, SOCKET, freeze, guide_config_for_test, wait_for

from ocf_lib.adapters import haproxy_api as api
from ocfshim import (HEAVY_MODULES, STATE_DIR, HaAgentNode, assert_clean_failure,
                     imported_modules, public_agent, run_agent)


@pytest.fixture
def ha(netns_pool, tmp_path):
    node = netns_pool.host()
    ha = HaAgentNode(node, tmp_path)
    for address in SERVERS[:2]:
        ha.lab.start_server(address)
    try:
        yield ha
    finally:
        ha.agent("stop")
        ha.lab.close()


def test_start_on_fresh_run_monitor_stop(ha):
    assert not os.path.exists(f"/proc/{ha.node.holder.pid}/root/run/haproxy")
    out = ha.agent("start")
    assert out.rc == 0, out
    made = os.stat(f"/proc/{ha.node.holder.pid}/root/run/haproxy")
    assert (made.st_mode & 0o7777, made.st_gid) == (0o2775, _gid("haproxy"))
    assert ha.http(32700) == "200", "the stats page answers"
    assert ha.agent("monitor", interval_ms=20000).rc == 0
    assert ha.agent("monitor", interval_ms=20000, extra={"OCF_CHECK_LEVEL": "10"}).rc == 0
    assert ha.agent("start").rc == 0, "start is idempotent"
    assert len(ha.haproxy_pids()) == 2, "one master, one worker"
    assert ha.agent("stop").rc == 0
    assert ha.haproxy_pids() == []
    assert ha.agent("monitor", interval_ms=20000).rc == 7
    assert ha.agent("stop").rc == 0, "stop is idempotent"


def test_ocf_tester_passes_with_the_guides_config(ha):
    """ocf-tester runs meta-data as nobody: the agent is the copy any user can read."""
    proc = ha.node.run("ocf-tester", "-n", "haproxy-resource", "-o", f"conffile={ha.config}",
                       public_agent("haproxy"), check=False, timeout=300,
                       env={**os.environ, "HA_RSCTMP": STATE_DIR})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed all tests" in proc.stdout
    assert ha.haproxy_pids() == []


def test_config_without_daemon_or_stats_socket_is_monitored_through_the_master(ha):
    text = guide_config_for_test(SOCKET)
    text = "\n".join(line for line in text.splitlines()
                     if "stats socket" not in line and line.strip() != "daemon") + "\n"
    ha.write_config(text)
    assert ha.agent("start").rc == 0
    assert ha.agent("monitor", interval_ms=20000).rc == 0
    assert ha.http(32700) == "200"
    for pid in ha.haproxy_pids():
        os.kill(pid, 9)
    assert ha.agent("monitor", interval_ms=20000).rc == 7


def test_killed_haproxy_is_not_running(ha):
    assert ha.agent("start").rc == 0
    for pid in ha.haproxy_pids():
        os.kill(pid, 9)
    wait_for(lambda: not ha.haproxy_pids(), what="haproxy gone")
    assert ha.agent("monitor", interval_ms=20000).rc == 7
    assert ha.agent("stop").rc == 0


def test_frozen_haproxy_is_an_error_well_inside_the_timeout(ha):
    assert ha.agent("start").rc == 0
    for pid in ha.haproxy_pids():
        freeze(pid)
    try:
        started = time.monotonic()
        out = ha.agent("monitor", interval_ms=20000, timeout_ms=8000)
        took = time.monotonic() - started
        assert_clean_failure(out, 1)
        assert "does not answer" in out.reason
        assert took < 6, f"monitor took {took:.1f} s of its 8 s"
    finally:
        for pid in ha.haproxy_pids():
            os.kill(pid, 18)  # SIGCONT, so that stop can end it
    assert ha.agent("stop").rc == 0


def test_stale_pidfile_of_an_unrelated_process_is_neither_trusted_nor_killed(ha, tmp_path):
    sleeper = ha.node.popen("sleep", "300")
    try:
        pidfile = tmp_path / "stale.pid"
        pidfile.write_text(f"{sleeper.pid}\n")
        assert ha.agent("monitor", interval_ms=20000, pidfile=str(pidfile)).rc == 7
        assert ha.agent("monitor", interval_ms=0, pidfile=str(pidfile)).rc == 7
        assert ha.agent("stop", pidfile=str(pidfile)).rc == 0
        assert sleeper.poll() is None, "stop left the unrelated process alone"
        assert ha.agent("start", pidfile=str(pidfile)).rc == 0
        assert sleeper.poll() is None, "start left the unrelated process alone"
        assert ha.agent("monitor", interval_ms=20000, pidfile=str(pidfile)).rc == 0
        assert ha.agent("stop", pidfile=str(pidfile)).rc == 0
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


BROKEN = "frontend broken\n    bind-it-all\n"  # `haproxy -c` refuses it
# `haproxy -c` accepts it; running it fails: this node lacks the address
CANNOT_BIND = ("listen elsewhere\n    bind 198.18.9.9:32702\n    mode tcp\n"
               "    server none 198.18.2.1:1\n")
ADDED = f"listen added\n    bind {FRONT}:32701\n    mode http\n    stats enable\n    stats uri /\n"


def assert_degraded(out, *words):
    """Monitor says degraded (190), with haproxy's own words in its exit reason."""
    assert out.rc == 190, out
    assert out.reason, out
    for word in words:
        assert word in out.reason, out


def test_a_refused_file_leaves_haproxy_serving_degraded_until_a_fixed_one_is_applied(
        ha, fake_attrd):
    calls, extra = fake_attrd
    assert ha.agent("start").rc == 0
    before = ha.haproxy_pids()
    ha.write_config(guide_config_for_test(SOCKET) + BROKEN)
    out = ha.agent("validate-all")
    assert_clean_failure(out, 2)  # this node's file, not a parameter that works nowhere
    assert "haproxy -c" in out.reason and "bind-it-all" in out.reason, out.reason
    for action in ("start", "reload"):
        assert ha.agent(action, reload_token="2").rc == 0, action
    assert ha.haproxy_pids() == before
    assert ha.http(32700) == "200"
    out = ha.agent("monitor", interval_ms=20000, extra=extra)
    assert_degraded(out, f"{ha.config}:39: unknown keyword 'bind-it-all'")  # haproxy's words
    assert ha.agent("monitor", interval_ms=0).rc == 0, "a probe finds it running"
    assert f"-n test-rsc-config-refused -U haproxy -c: {ha.config}:39:" in calls.read_text()
    ha.write_config(guide_config_for_test(SOCKET) + ADDED)
    assert ha.agent("reload", reload_token="3").rc == 0
    assert ha.haproxy_pids()[0] == before[0], "the master stayed"
    assert ha.http(32701, auth=False) == "200", "the fixed file runs"
    assert ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0
    assert "-n test-rsc-config-refused -D" in calls.read_text()


def test_an_undone_edit_clears_the_mark_without_a_reload(ha):
    assert ha.agent("start").rc == 0
    good = open(ha.config).read()
    ha.write_config(good + BROKEN)
    assert ha.agent("reload", reload_token="2").rc == 0
    assert ha.agent("monitor", interval_ms=20000).rc == 190
    ha.write_config(good)
    assert ha.agent("monitor", interval_ms=20000).rc == 0


def test_a_reload_on_an_address_this_node_lacks_is_refused_before_haproxy_tries(ha):
    """A listener on an address this node lacks passes `haproxy -c` (which binds nothing);
    haproxy itself would refuse it only after pausing the running listeners. The agent
    refuses it first, with the listener named, and haproxy serves on untouched."""
    assert ha.agent("start").rc == 0
    before = ha.haproxy_pids()
    ha.write_config(guide_config_for_test(SOCKET) + CANNOT_BIND)
    assert ha.agent("reload", reload_token="2").rc == 0
    out = ha.agent("monitor", interval_ms=20000)
    assert_degraded(out, "listen elsewhere: bind 198.18.9.9:32702: no such address")
    assert ha.haproxy_pids() == before, "haproxy was not even asked"
    assert ha.http(32700) == "200", "the running configuration still serves"


def test_a_transparent_listener_on_a_foreign_address_is_left_to_haproxy(ha):
    """With `transparent` haproxy binds an address the node lacks: the agent's check
    leaves that line to it, and the reload applies the file."""
    assert ha.agent("start").rc == 0
    ha.write_config(guide_config_for_test(SOCKET)
                    + CANNOT_BIND.replace(":32702", ":32702 transparent"))
    assert ha.agent("reload", reload_token="2").rc == 0
    assert ha.agent("monitor", interval_ms=20000).rc == 0


def test_a_reload_haproxy_itself_refuses_keeps_the_running_one_and_says_why(ha):
    """A port another process holds: the agent's check does not see it (it tells
    addresses only), haproxy refuses the reload. HAProxy >= 2.7 says why, and the exit
    reason is its first alert; 2.6 only counts a failed reload."""
    with port_held(ha, 32702):
        assert ha.agent("start").rc == 0
        master = ha.haproxy_pids()[0]
        ha.write_config(guide_config_for_test(SOCKET)
                        + CANNOT_BIND.replace("198.18.9.9", FRONT))
        assert ha.agent("reload", reload_token="2").rc == 0
        out = ha.agent("monitor", interval_ms=20000)
        assert_degraded(out, "haproxy refused the new configuration")
        if api.answers_reload(_haproxy_version()):
            assert "cannot bind socket" in out.reason, out
        assert ha.haproxy_pids()[0] == master, "the master stayed"
        assert ha.http(32700) == "200", "the running configuration still serves"


@contextlib.contextmanager
def port_held(ha, port):
    """Another process of the node listens on FRONT:port while the block runs."""
    holder = ha.node.popen("/usr/bin/python3", "-c",
                           f"import socket,time;s=socket.socket();s.bind(('{FRONT}',{port}));"
                           "s.listen();print('up',flush=True);time.sleep(300)",
                           stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("bad", [BROKEN, CANNOT_BIND], ids=["refused", "cannot-bind"])
def test_a_restart_with_a_refused_file_starts_the_last_accepted_one(ha, bad):
    """A restart in place (a cleanup, a crash) with a file haproxy refuses: the copy of the
    last configuration haproxy accepted starts instead; a fixed file applied later reaches
    the master started from the copy, seamlessly."""
    assert ha.agent("start").rc == 0
    assert ha.agent("stop").rc == 0
    good = open(ha.config).read()
    ha.write_config(good + bad)
    out = ha.agent("start")
    assert out.rc == 0, out
    assert ha.http(32700) == "200"
    assert_degraded(ha.agent("monitor", interval_ms=20000),
                    "haproxy -c: " if bad == BROKEN else "haproxy did not start: ")
    master = ha.haproxy_pids()[0]
    client = ha.connect()
    try:
        ha.write_config(good + ADDED)
        assert ha.agent("reload", reload_token="2").rc == 0
        assert ha.http(32701, auth=False) == "200", "the fixed file runs"
        assert ha.haproxy_pids()[0] == master, "the master stayed"
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "HTTP/1.0 200 OK", "its connection stayed"
    finally:
        client.kill()
        client.wait()
    assert ha.agent("monitor", interval_ms=20000).rc == 0
    assert ha.agent("stop").rc == 0
    assert ha.haproxy_pids() == []


def test_a_refused_file_with_nothing_accepted_before_fails_start_on_this_node(ha):
    ha.write_config(guide_config_for_test(SOCKET) + BROKEN)
    out = ha.agent("start")
    assert_clean_failure(out, 2)
    assert "bind-it-all" in out.reason, out
    assert ha.haproxy_pids() == []


def _haproxy_version() -> str:
    """This machine's HAProxy version ("2.6.12-1+deb12u4"), from `haproxy -v`."""
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=True).stdout
    return out.split()[2]


def test_config_others_may_change_is_refused(ha):
    ha.write_config(guide_config_for_test(SOCKET), mode=0o666)
    for action in ("validate-all", "start"):
        out = ha.agent(action)
        assert_clean_failure(out, 2)
        assert "chmod go-w" in out.reason
    assert ha.haproxy_pids() == []


def test_missing_binary_and_config(ha):
    out = ha.agent("start", binpath="/usr/sbin/no-haproxy")
    assert_clean_failure(out, 5)
    assert ha.agent("monitor", interval_ms=0, binpath="/usr/sbin/no-haproxy").rc == 7
    out = ha.agent("validate-all", conffile="/etc/haproxy/none.cfg")
    assert_clean_failure(out, 5)
    assert_clean_failure(ha.agent("start", binpath="haproxy"), 6)


def test_reload_applies_the_config_and_keeps_connections(ha):
    assert ha.agent("start").rc == 0
    master = ha.agent_master = ha.haproxy_pids()[0]
    client = ha.connect()
    try:
        ha.write_config(guide_config_for_test(SOCKET)
                        + f"listen added\n    bind {FRONT}:32701\n    mode http\n"
                          "    stats enable\n    stats uri /\n")
        out = ha.agent("reload", reload_token="2")
        assert out.rc == 0, out
        assert ha.http(32701, auth=False) == "200", "the new listener serves"
        assert ha.haproxy_pids()[0] == master, "the master stayed"
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "HTTP/1.0 200 OK"
    finally:
        client.kill()
        client.wait()
    assert ha.agent("monitor", interval_ms=20000).rc == 0


@pytest.fixture
def fake_attrd(tmp_path):
    """An attrd_updater that records its arguments, and the environment of an agent run by
    Pacemaker (on node1) that finds it first: (the record, the extra environment)."""
    calls = tmp_path / "attrd.log"
    fake = tmp_path / "bin" / "attrd_updater"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
    fake.chmod(0o755)
    return calls, {"OCF_RESKEY_CRM_meta_on_node": "node1",
                   "PATH": f"{fake.parent}:/usr/sbin:/usr/bin:/sbin:/bin"}


def test_monitor_ends_old_workers_past_their_bound_and_counts_them(ha, fake_attrd):
    """A reload leaves the old worker serving an open connection (a watch); monitor leaves
    it within old_workers_timeout and ends it after, and publishes how many run."""
    calls, extra = fake_attrd
    assert ha.agent("start").rc == 0
    client = ha.connect()
    try:
        assert ha.agent("reload", reload_token="2").rc == 0
        wait_for(lambda: len(ha.haproxy_pids()) == 3, what="master, worker and old worker")
        assert ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0  # default: 600 s
        assert len(ha.haproxy_pids()) == 3
        assert "-n test-rsc-old-workers -U 1" in calls.read_text()
        wait_for(lambda: "ended 1 old haproxy worker" in ha.agent(  # show proc counts seconds
            "monitor", interval_ms=20000, extra=extra, old_workers_timeout="1ms").stderr,
            timeout=5, what="monitor ending the old worker")
        wait_for(lambda: len(ha.haproxy_pids()) == 2, what="the old worker gone")
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "", "its connection was closed"
        assert ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0
        assert "-n test-rsc-old-workers -U 0" in calls.read_text()
    finally:
        client.kill()
        client.wait()


def test_stop_gives_open_connections_the_grace_period(ha):
    assert ha.agent("start").rc == 0
    client = ha.connect()
    try:
        started = time.monotonic()
        assert ha.agent("stop", stop_grace="2s").rc == 0
        took = time.monotonic() - started
        assert 1.8 <= took < 6, f"stop took {took:.1f} s"
        assert ha.haproxy_pids() == []
    finally:
        client.kill()
        client.wait()


def test_bind_conflict_fails_start_with_reason_and_leaves_nothing(ha):
    with port_held(ha, 32700):
        out = ha.agent("start")
        assert_clean_failure(out, 1)
        assert "32700" in out.reason or "bind" in out.reason, out.reason
        assert ha.haproxy_pids() == []


def test_probe_tells_the_truth_about_a_master_worker_haproxy_started_elsewhere(ha):
    """Debian's haproxy.service (-Ws): reported, never taken over (systemd would start it
    again)."""
    ha.node.run("mkdir", "-p", "/run/haproxy")
    ha.node.run("/usr/sbin/haproxy", "-W", "-f", ha.config, "-D")
    wait_for(lambda: len(ha.haproxy_pids()) == 2, what="outside haproxy, master and worker")
    out = ha.agent("monitor", interval_ms=0)
    assert out.rc == 0, out
    assert "outside Pacemaker" in out.reason
    assert ha.agent("monitor", interval_ms=20000).rc == 7, "not ours to monitor"
    assert ha.agent("stop").rc == 0
    assert ha.haproxy_pids() == []


def start_like_the_old_agent(ha):
    """haproxy as heartbeat's old shell agent of the guide starts it: daemonized (the
    configuration says `daemon`), not master-worker, its pid in /var/run/haproxy.pid."""
    ha.node.run("mkdir", "-p", "/run/haproxy")
    ha.node.run("/usr/sbin/haproxy", "-f", ha.config, "-p", "/var/run/haproxy.pid")
    [pid] = wait_for(ha.haproxy_pids, what="the old agent's haproxy")
    wait_for(lambda: ha.http(32700) == "200", what="its stats page")
    return pid


def requests_during(ha, seconds):
    """A client in the node sending a GET to the stats page every 5 ms for seconds; returns
    the process, whose output is 'OK FAILED' at the end."""
    code = ("import base64,http.client,time\n"
            "auth='Basic '+base64.b64encode(b'admin:admin').decode()\n"
            "ok=failed=0\n"
            f"end=time.monotonic()+{seconds}\n"
            "while time.monotonic()<end:\n"
            "    try:\n"
            f"        c=http.client.HTTPConnection('{FRONT}',32700,timeout=2)\n"
            "        c.request('GET','/',headers={'Authorization':auth})\n"
            "        r=c.getresponse();r.read();c.close()\n"
            "        ok+=r.status==200;failed+=r.status!=200\n"
            "    except OSError:\n"
            "        failed+=1\n"
            "    time.sleep(0.005)\n"
            "print(ok,failed,flush=True)\n")
    return ha.node.popen("/usr/bin/python3", "-c", code, stdout=subprocess.PIPE, text=True)


def test_probe_takes_over_the_haproxy_the_old_agent_started(ha, fake_attrd):
    """A migration from heartbeat's agents: the probe of ocf:kuth:haproxy finds the old
    agent's daemonized haproxy and makes it this resource's; monitor and stop then act on
    it, and nothing was restarted."""
    calls, extra = fake_attrd
    pid = start_like_the_old_agent(ha)
    out = ha.agent("monitor")  # no interval at all: Pacemaker 2.1.5's probe after a refresh
    assert (out.rc, out.reason) == (0, None), out
    assert "took over haproxy (pid " in out.stderr
    assert ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0
    assert ha.agent("start").rc == 0, "already running: start is idempotent"
    assert ha.haproxy_pids() == [pid], "the same process, untouched"
    assert ha.agent("stop").rc == 0
    assert ha.haproxy_pids() == []
    assert ha.agent("monitor", interval_ms=0).rc == 7


def test_reload_hands_a_taken_over_haproxy_over_without_a_cut(ha, fake_attrd):
    """The first reload replaces the old agent's haproxy by a master-worker haproxy of
    ours: no request fails, open connections stay served by the old process, which is
    counted and bounded as an old worker; the next reload is an ordinary one."""
    calls, extra = fake_attrd
    old = start_like_the_old_agent(ha)
    assert ha.agent("monitor", interval_ms=0).rc == 0
    clients = [ha.connect(), ha.connect()]
    load = requests_during(ha, 3)
    try:
        time.sleep(1)
        ha.write_config(guide_config_for_test(SOCKET) + ADDED)
        out = ha.agent("reload", reload_token="2")
        assert out.rc == 0, out
        assert "handed haproxy (pid " in out.stderr
        ok, failed = map(int, load.communicate(timeout=30)[0].split())
        assert (failed, ok > 100) == (0, True), (ok, failed)
        assert ha.http(32701, auth=False) == "200", "the new listener serves"
        pids = ha.haproxy_pids()
        assert old in pids and len(pids) == 3, "the old process, our master and its worker"
        assert ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0
        assert "-n test-rsc-old-workers -U 1" in calls.read_text()
        for client, answer in zip(clients, ("HTTP/1.0 200 OK", "")):
            if not answer:  # the second one: its old process is ended past the bound
                out = ha.agent("monitor", interval_ms=20000, extra=extra,
                               old_workers_timeout="1ms")
                assert "ended the haproxy handed over" in out.stderr, out
            client.stdin.write("go\n")
            client.stdin.flush()
            assert client.stdout.readline().strip() == answer
        wait_for(lambda: old not in ha.haproxy_pids(), what="the old process gone")
        assert ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0
        assert calls.read_text().endswith("-n test-rsc-old-workers -U 0\n")
        master = ha.haproxy_pids()[0]
        assert ha.agent("reload", reload_token="3").rc == 0
        assert ha.haproxy_pids()[0] == master, "an ordinary reload: the master stays"
        assert f"-sf {old}" not in ha.node.run("cat", f"/proc/{master}/cmdline").stdout.replace(
            "\0", " "), "the master's next reloads do not signal the old pid"
    finally:
        for client in clients:
            client.kill()
            client.wait()
        load.kill()
        load.wait()


def test_stop_ends_a_handed_over_haproxy_that_still_serves_a_connection(ha):
    old = start_like_the_old_agent(ha)
    assert ha.agent("monitor", interval_ms=0).rc == 0
    client = ha.connect()
    try:
        assert ha.agent("reload", reload_token="2").rc == 0
        assert old in ha.haproxy_pids()
        assert ha.agent("stop").rc == 0
        assert ha.haproxy_pids() == []
    finally:
        client.kill()
        client.wait()


def test_backend_health_attributes_and_min_servers_up(ha, fake_attrd):
    calls, extra = fake_attrd
    assert ha.agent("start").rc == 0
    wait_for(lambda: ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0
             and "-U 2" in (calls.read_text() if calls.exists() else ""),
             what="2 servers UP published")
    assert "-n test-rsc-kube-apiserver-up -U 2" in calls.read_text()
    published = calls.read_text()
    assert ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0
    assert calls.read_text() == published, "unchanged counts are not published again"
    ha.lab.stop_server(SERVERS[0])
    wait_for(lambda: ha.agent("monitor", interval_ms=20000, extra=extra).rc == 0
             and "-U 1" in calls.read_text(), what="1 server UP published")
    out = ha.agent("monitor", interval_ms=20000, min_servers_up="2")
    assert_clean_failure(out, 1)
    assert "kube-apiserver 1/3" in out.reason
    assert ha.agent("stop", extra=extra).rc == 0
    assert "-n test-rsc-kube-apiserver-up -D" in calls.read_text()


def test_monitor_imports_only_cheap_modules(ha):
    assert ha.agent("start").rc == 0
    imported = imported_modules("haproxy", "monitor", {"conffile": ha.config}, ns=ha.node,
                                interval_ms=20000)
    assert "ocf_lib.adapters.haproxy_api" in imported
    assert not imported & HEAVY_MODULES, sorted(imported & HEAVY_MODULES)


def test_depth_10_monitor_fails_on_a_disabled_frontend(ha):
    assert ha.agent("start").rc == 0
    ha.node.run("/usr/bin/python3", "-c",
                "import socket;s=socket.socket(socket.AF_UNIX);"
                f"s.connect('{SOCKET}');s.sendall(b'disable frontend kube-apiserver\\n');s.recv(100)")
    assert ha.agent("monitor", interval_ms=20000).rc == 0, "depth 0 does not look"
    out = ha.agent("monitor", interval_ms=60000, extra={"OCF_CHECK_LEVEL": "10"})
    assert_clean_failure(out, 1)
    assert "kube-apiserver" in out.reason


def test_extraconf_change_reloads_by_restarting(ha, tmp_path):
    assert ha.agent("start").rc == 0
    master = ha.haproxy_pids()[0]
    extra_cfg = tmp_path / "extra.cfg"
    extra_cfg.write_text(f"listen extra\n    bind {FRONT}:32702\n    mode http\n"
                         "    stats enable\n    stats uri /\n")
    out = ha.agent("reload", extraconf=f"-f {extra_cfg}")
    assert out.rc == 0, out
    assert ha.http(32702, auth=False) == "200"
    assert master not in ha.haproxy_pids(), "a new command line needs a new master"
    assert ha.agent("monitor", interval_ms=20000, extraconf=f"-f {extra_cfg}").rc == 0
    assert_clean_failure(ha.agent("start", extraconf="-D"), 6)


def _gid(group):
    import grp
    return grp.getgrnam(group).gr_gid


def test_a_long_resource_name_still_gets_a_master_socket(ha):
    name = "haproxy-" + "x" * 120
    out = run_agent("haproxy", "start", {"conffile": ha.config}, ns=ha.node, instance=name)
    assert out.rc == 0, out
    assert run_agent("haproxy", "monitor", {"conffile": ha.config}, ns=ha.node, instance=name,
                     interval_ms=20000).rc == 0
    assert run_agent("haproxy", "stop", {"conffile": ha.config}, ns=ha.node, instance=name).rc == 0
    assert ha.haproxy_pids() == []
