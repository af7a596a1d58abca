"""Actions at the same time, as Pacemaker runs them (actions of different resources in
parallel) and as an operator or a timeout can make them (two actions of one resource).
Nothing lost, nothing left."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.haproxy import HaproxyLab, guide_config_for_test, wait_for
from hardening import (Tally, network_state, print_tally, processes, refusers,
                       settled_processes)
from ocfshim import run_agent

V4 = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}
BACKGROUND = {**V4, "arp_count": "100", "arp_interval": "100"}
MANY = 16
TALLY = Tally("concurrency (agent runs)")


@pytest.fixture(scope="module", autouse=True)
def figures(request):
    yield
    print_tally(request.config, TALLY)


def parallel(calls):
    """Run the zero-argument callables at once; their results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def ipaddr2(action, params, ns, instance="test-rsc", **kw):
    TALLY.add(f"IPaddr2 {action}")
    return run_agent("IPaddr2", action, params, ns=ns, instance=instance, **kw)


def vip(n: int) -> dict:
    return {"ip": f"198.18.0.{100 + n}" if n % 2 else f"2001:2::{100 + n:x}",
            "nic": "lan0", "cidr_netmask": "24" if n % 2 else "64", "nodad": "true",
            "arp_count": "20", "arp_interval": "50"}


def test_many_vips_on_one_nic_started_and_stopped_at_once(lan):
    node, _ = lan
    before, pids = network_state(node), processes(node)
    starts = parallel([lambda n=n: ipaddr2("start", vip(n), node, instance=f"vip{n}")
                       for n in range(MANY)])
    assert [o.rc for o in starts] == [0] * MANY, [o for o in starts if o.rc]
    addresses = node.addresses("lan0")
    for n in range(MANY):
        params = vip(n)
        assert f"{params['ip']}/{params['cidr_netmask']}" in addresses
    monitors = parallel([lambda n=n: ipaddr2("monitor", vip(n), node, instance=f"vip{n}",
                                             interval_ms=10000) for n in range(MANY)])
    assert [o.rc for o in monitors] == [0] * MANY
    stops = parallel([lambda n=n: ipaddr2("stop", vip(n), node, instance=f"vip{n}")
                      for n in range(MANY)])
    assert [o.rc for o in stops] == [0] * MANY, [o for o in stops if o.rc]
    assert network_state(node) == before, "every address removed, nothing else"
    assert settled_processes(node, pids) == pids, "no announcer left"


def test_monitor_racing_stop_says_running_or_not_running(lan):
    node, _ = lan
    assert ipaddr2("start", BACKGROUND, node).rc == 0
    calls = [lambda: ipaddr2("stop", BACKGROUND, node)]
    calls += [lambda: ipaddr2("monitor", BACKGROUND, node, interval_ms=10000)
              for _ in range(12)]
    results = parallel(calls)
    assert results[0].rc == 0, results[0]
    for out in results[1:]:
        assert out.rc in (0, 7), out
        assert "Traceback" not in out.stderr
    assert ipaddr2("monitor", BACKGROUND, node, interval_ms=10000).rc == 7
    assert settled_processes(node, []) == []


def test_two_starts_of_the_same_resource(lan):
    node, _ = lan
    results = parallel([lambda: ipaddr2("start", BACKGROUND, node)] * 2)
    assert [o.rc for o in results] == [0, 0], results
    assert node.addresses("lan0").count("198.18.0.10/24") == 1
    assert len(processes(node)) <= 1, "at most one background announcer"
    assert ipaddr2("stop", BACKGROUND, node).rc == 0
    assert settled_processes(node, []) == [], "the announcer ends with stop"


def test_start_and_stop_at_once_leave_a_consistent_state(lan):
    """Serialised by the resource lock: whichever runs last decides, and monitor agrees."""
    node, _ = lan
    results = parallel([lambda: ipaddr2("start", BACKGROUND, node),
                        lambda: ipaddr2("stop", BACKGROUND, node)])
    assert [o.rc for o in results] == [0, 0], results
    served = "198.18.0.10/24" in node.addresses("lan0")
    assert ipaddr2("monitor", BACKGROUND, node, interval_ms=10000).rc == (0 if served else 7)
    assert not (served and refusers(node)), "a refuser runs while the address is here"
    assert ipaddr2("stop", BACKGROUND, node).rc == 0
    assert settled_processes(node, []) == []


@pytest.mark.parametrize("state", ["killed", "still running"])
def test_background_announcer_at_stop(lan, state):
    node, _ = lan
    assert ipaddr2("start", BACKGROUND, node).rc == 0
    announcer = processes(node)
    assert len(announcer) == 1, announcer
    if state == "killed":
        os.kill(announcer[0], 9)
        wait_for(lambda: not processes(node), what="announcer gone")
    assert ipaddr2("stop", BACKGROUND, node).rc == 0
    assert settled_processes(node, []) == []
    assert "198.18.0.10/24" not in node.addresses("lan0")


def test_haproxy_two_starts_at_once_run_one_master(netns_pool, tmp_path):
    node = netns_pool.host()
    lab = HaproxyLab(node, tmp_path)
    lab.config.write_text(guide_config_for_test("/run/haproxy/admin.sock"))
    params = {"conffile": str(lab.config)}
    baseline = processes(node)
    try:
        results = parallel([lambda: run_agent("haproxy", "start", params, ns=node)] * 2)
        TALLY.add("haproxy start", 2)
        assert [o.rc for o in results] == [0, 0], results
        haproxies = [p for p in processes(node) if p not in baseline]
        assert len(haproxies) == 2, f"one master and one worker, not {haproxies}"
        racing = parallel([lambda: run_agent("haproxy", "stop", params, ns=node)]
                          + [lambda: run_agent("haproxy", "monitor", params, ns=node,
                                               interval_ms=20000)] * 6)
        TALLY.add("haproxy stop")
        TALLY.add("haproxy monitor", 6)
        assert racing[0].rc == 0, racing[0]
        # A monitor that meets haproxy half-stopped may find its socket closed: 1 with the
        # reason. Pacemaker cancels recurring monitors before a stop, so never sees it.
        assert all(o.rc in (0, 1, 7) and (o.rc != 1 or o.reason) for o in racing[1:]), racing
        TALLY.add("haproxy monitor racing stop answered 1",
                  sum(o.rc == 1 for o in racing[1:]))
        assert settled_processes(node, baseline) == baseline
    finally:
        run_agent("haproxy", "stop", params, ns=node)
        lab.close()
