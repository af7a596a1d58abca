"""A process that ends at any moment never fails an action (issue 23).

A fresh machine's run once failed a stop with "ProcessLookupError: [Errno 3] No such
process: '/proc/5865/task'": an haproxy worker was reaped while the stop listed its
threads. In a cluster a failed stop gets the node fenced. Here the processes an action
watches end at every step it takes:

- fault injection: the agent runs inside its node through a driver (_driver, below) that
  counts every look the action takes at the watched processes -- each open of a
  /proc/PID file, readlink, listing of /proc/PID/task, signal and pidfd_open -- and ends
  the process concerned at the n-th look, really (SIGKILL), the look itself failing the
  way an exit mid-look fails it (ENOENT, ESRCH, an empty or garbled read, a zombie that is
  never reaped). n runs from 1 until a run takes fewer looks than n, for haproxy's stop
  and monitor and for IPaddr2's ending of its helpers;
- stress: stop against real processes that exit on their own at random moments (haproxy
  killed by a helper thread mid-stop, `haproxy -c` runs on the same configuration coming
  and going), and the /proc readers against short-lived processes reaped concurrently.
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hardening import Tally, print_tally
from lab import REPO
from lab.haproxy import HAPROXY, wait_for
from lab.netns import Netns
from ocf_lib.adapters import process
from ocfshim import STATE_DIR, HaAgentNode, Outcome, agent_env, ipaddr2

TALLY = Tally("process races (agent runs)")
# How the process a look concerns ends at that look (see _driver).
HOWS = ("enoent", "esrch", "empty", "garbled", "zombie")
MAX_LOOKS = 150  # a run taking more looks at its processes than this is a runaway
SEED = int(os.environ.get("KUTH_FUZZ_SEED") or 23)
VIP = {"ip": "198.18.0.10", "nic": "lan0", "cidr_netmask": "24"}
ANNOUNCING = {**VIP, "arp_count": "100", "arp_interval": "100"}  # an announcer for 10 s


@pytest.fixture(scope="module", autouse=True)
def figures(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    print_tally(request.config, TALLY)


# -- the driver, run inside a node ---------------------------------------------------------

def _driver() -> None:
    """The agent's action (argv: REPO AGENT ACTION) with the processes of $KUTH_RACE's
    "targets" ending under it: the "at"-th look the action takes at one of them ends that
    one (SIGKILL, then the look fails as "how" says). Prints the looks it counted as a
    JSON list on stdout and exits with the action's code. With "api", each question to
    haproxy's runtime API is a look too, at which every target ends. Run by run_racing as
    `python3 -IS -c`: everything it needs is imported here."""
    import builtins
    import errno
    import io
    import json
    import os
    import sys
    import time
    repo, agent_name, action = sys.argv[1:4]
    plan = json.loads(os.environ.pop("KUTH_RACE"))
    targets, at, how = set(plan["targets"]), plan["at"], plan["how"]
    real_open, real_readlink, real_listdir = builtins.open, os.readlink, os.listdir
    real_kill, real_pidfd_open = os.kill, os.pidfd_open
    looks: list[str] = []
    zombies: set[int] = set()

    def concerned(path: object) -> tuple[int, str] | None:
        """(pid, the rest of the path) for a /proc/PID/... path of a target."""
        if not isinstance(path, str) or not path.startswith("/proc/"):
            return None
        pid, _, rest = path[6:].partition("/")
        return (int(pid), rest) if pid.isdigit() and int(pid) in targets else None

    def end(pid: int) -> None:
        """SIGKILL pid and wait (1 s at most) until it is a zombie or gone."""
        try:
            real_kill(pid, 9)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            try:
                with real_open(f"/proc/{pid}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        return
            except (OSError, IndexError):
                return
            time.sleep(0.001)

    def fate(pid: int, what: str) -> str:
        """Count a look at pid: how it goes ("" as it really does)."""
        looks.append(what)
        if pid in zombies:
            return "zombie"
        if len(looks) != at:
            return ""
        end(pid)
        if how == "zombie":
            zombies.add(pid)
        return how

    def failed(how: str, path: str) -> OSError:
        if how == "esrch":
            return ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH), path)
        return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)

    def zombie_file(pid: int, rest: str) -> bytes:
        if rest == "stat":
            return f"{pid} (haproxy) Z 1 {' '.join(['0'] * 48)}\n".encode()
        if rest in ("cmdline", f"task/{pid}/children", "status", "environ"):
            return b""
        raise failed("enoent", f"/proc/{pid}/{rest}")

    def racing_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        target = concerned(file)
        how = target and fate(target[0], f"open {target[1]}")
        if not how:
            return real_open(file, mode, *args, **kwargs)
        pid, rest = target  # type: ignore[misc]
        if how in ("enoent", "esrch"):
            raise failed(how, file)
        if how == "empty":
            content = b""
        elif how == "garbled":
            content = f"{pid} (hapr".encode() if rest == "stat" else b"\xff\x00"
        else:
            content = zombie_file(pid, rest)
        return io.BytesIO(content) if "b" in mode else io.StringIO(content.decode("latin-1"))

    def racing_readlink(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        target = concerned(path)
        how = target and fate(target[0], f"readlink {target[1]}")
        if how:
            raise failed(how, path)
        return real_readlink(path, *args, **kwargs)

    def racing_listdir(path="."):  # type: ignore[no-untyped-def]
        target = concerned(path)
        how = target and fate(target[0], f"listdir {target[1]}")
        if how in ("enoent", "esrch", "garbled"):
            raise failed(how, path)
        if how == "empty":
            return []
        if how == "zombie":
            return [str(target[0])]  # type: ignore[index]
        return real_listdir(path)

    def racing_kill(pid, sig):  # type: ignore[no-untyped-def]
        if pid in targets and fate(pid, f"kill {sig}") == "zombie":
            return None  # a zombie takes any signal
        return real_kill(pid, sig)

    def racing_pidfd_open(pid, *args):  # type: ignore[no-untyped-def]
        if pid in targets and fate(pid, "pidfd_open") == "zombie":
            readable, writer = os.pipe()  # a zombie's pidfd is readable at once
            os.write(writer, b"x")
            os.close(writer)
            return readable
        return real_pidfd_open(pid, *args)

    def api_look(name, real):  # type: ignore[no-untyped-def]
        def racing(*args, **kwargs):  # type: ignore[no-untyped-def]
            looks.append(f"api {name}")
            if len(looks) == at:
                for pid in targets:  # haproxy ends while it is asked
                    end(pid)
            return real(*args, **kwargs)
        return racing

    builtins.open = racing_open
    os.readlink, os.listdir = racing_readlink, racing_listdir
    os.kill, os.pidfd_open = racing_kill, racing_pidfd_open
    sys.path.insert(0, repo)
    from agents import declarations
    agent = declarations(agent_name)
    if plan.get("api"):
        from ocf_lib.adapters import haproxy_api
        for name in ("show_stat", "show_proc"):
            setattr(haproxy_api, name, api_look(name, getattr(haproxy_api, name)))
    code = agent.dispatch(action)
    sys.stdout.write(json.dumps(looks) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


DRIVER = inspect.getsource(_driver) + "\n_driver()\n"


class Racing:
    """One agent run through the driver: its outcome, and the looks it took."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.outcome = Outcome(proc)
        lines = proc.stdout.splitlines()
        self.looks: list[str] = json.loads(lines[-1]) if lines else []

    def __repr__(self) -> str:
        return f"{self.outcome!r}, looks={self.looks}"


def run_racing(ns: Netns, agent: str, action: str, env: dict[str, str], targets: list[int],
               at: int, how: str, api: bool = False) -> Racing:
    """Run agent ACTION inside ns (env as ocfshim.agent_env makes it) through _driver: the
    process of targets concerned by the at-th look ends at that look, the way how says
    (at 0: none ends)."""
    plan = json.dumps({"targets": targets, "at": at, "how": how, "api": api})
    argv = ns.exec_argv(["/usr/bin/python3", "-IS", "-c", DRIVER, REPO, agent, action])
    proc = subprocess.run(argv, env={**env, "KUTH_RACE": plan}, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    return Racing(proc)


def each_step(run: Callable[[int], Racing]) -> Iterator[tuple[int, Racing]]:
    """run(n) for n = 1, 2, ... until a run takes fewer looks than n: it then ran to its end
    with no process ended under it."""
    for at in range(1, MAX_LOOKS + 1):
        racing = run(at)
        yield at, racing
        if len(racing.looks) < at:
            return
    raise AssertionError(f"more than {MAX_LOOKS} looks at the processes in one run")


def assert_no_crash(racing: Racing, label: str) -> None:
    """No traceback, no exception turned into ERR_GENERIC."""
    out = racing.outcome
    assert "Traceback" not in out.stderr, f"{label}: {racing}"
    assert "unexpectedly" not in (out.reason or ""), f"{label}: {racing}"


# -- haproxy ---------------------------------------------------------------------------------

@pytest.fixture
def ha(netns_pool, tmp_path: Path) -> Iterator[HaAgentNode]:
    """A node with the guide's haproxy configuration (no backend servers: stop and monitor
    need none); whatever haproxy is left is killed, pass or fail."""
    ha = HaAgentNode(netns_pool.host(), tmp_path)
    try:
        yield ha
    finally:
        ha.agent("stop")
        ha.lab.close()


def started(ha: HaAgentNode) -> list[int]:
    """Start haproxy through the agent; its pids (master and worker)."""
    out = ha.agent("start")
    assert out.rc == 0, out
    return wait_for(lambda: len(ha.haproxy_pids()) == 2 and ha.haproxy_pids(),
                    what="master and worker")  # type: ignore[return-value]


def running(ha: HaAgentNode) -> list[int]:
    """The pids of master and worker, started anew unless both still run (what is left of
    one ended before is stopped first)."""
    pids = ha.haproxy_pids()
    if len(pids) == 2:
        return pids
    assert ha.agent("stop").rc == 0
    return started(ha)


@pytest.mark.parametrize("how", HOWS)
def test_stop_succeeds_whichever_look_its_processes_end_at(ha: HaAgentNode, how: str) -> None:
    steps = 0
    for at, racing in each_step(lambda at: run_racing(
            ha.node, "haproxy", "stop", ha.agent_env(), started(ha), at, how)):
        assert_no_crash(racing, f"stop, look {at} ({how})")
        assert racing.outcome.rc == 0, f"stop, look {at} ({how}): {racing}"
        wait_for(lambda: not ha.haproxy_pids(), timeout=5, what="haproxy gone")
        steps = at
    assert steps >= 8, "stop looks at master and worker in /proc and signals them"
    TALLY.add(f"haproxy stop, process ends ({how})", steps)


@pytest.mark.parametrize("interval_ms", [20000, 0], ids=["recurring", "probe"])
@pytest.mark.parametrize("how", HOWS)
def test_monitor_says_running_or_not_whichever_look_its_process_ends_at(
        ha: HaAgentNode, how: str, interval_ms: int) -> None:
    """A probe whose master ended looks for an haproxy run outside Pacemaker: the worker
    may still be there, then ending too."""
    kind = "probe" if interval_ms == 0 else "monitor"
    steps = 0
    for at, racing in each_step(lambda at: run_racing(
            ha.node, "haproxy", "monitor", ha.agent_env(interval_ms=interval_ms),
            running(ha), at, how)):
        assert_no_crash(racing, f"{kind}, look {at} ({how})")
        assert racing.outcome.rc in (0, 7), f"{kind}, look {at} ({how}): {racing}"
        steps = at
    assert steps >= 3, "monitor reads the master's stat, cmdline and exe"
    TALLY.add(f"haproxy {kind}, process ends ({how})", steps)


def test_monitor_of_an_haproxy_ending_before_its_runtime_api_answers_says_not_running(
        ha: HaAgentNode) -> None:
    env = ha.agent_env(interval_ms=20000)
    pids = started(ha)
    looks = run_racing(ha.node, "haproxy", "monitor", env, pids, 0, "enoent", api=True).looks
    racing = run_racing(ha.node, "haproxy", "monitor", env, pids,
                        looks.index("api show_stat") + 1, "enoent", api=True)
    assert_no_crash(racing, "monitor, haproxy ending as its runtime API is asked")
    assert racing.outcome.rc == 7, racing


# -- IPaddr2: the helpers an action ends -----------------------------------------------------

def recorded(instance: str, helper: str) -> int:
    """The pid IPaddr2 recorded for its helper (announcer, refuser) of resource instance."""
    text = Path(STATE_DIR, f"kuth-IPaddr2-{instance}.{helper}").read_text()
    return int(text.split()[0])


@pytest.mark.parametrize("how", HOWS)
def test_ipaddr2_ends_its_helpers_whichever_look_they_end_at(lan: tuple[Netns, Netns],
                                                             how: str) -> None:
    """stop ends the background announcer start left; start ends the refuser stop left.
    Either may exit at any look, on its own."""
    node, _ = lan
    instance = f"race-{how}"
    steps = 0
    for action, params, helper in (("stop", ANNOUNCING, "announcer"),
                                   ("start", VIP, "refuser")):
        for at, racing in each_step(functools.partial(
                _ipaddr2_racing, node, instance, how, action, params, helper)):
            assert_no_crash(racing, f"IPaddr2 {action}, look {at} ({how})")
            assert racing.outcome.rc == 0, f"IPaddr2 {action}, look {at} ({how}): {racing}"
            steps += 1
    TALLY.add(f"IPaddr2 helpers end ({how})", steps)


def _ipaddr2_racing(node: Netns, instance: str, how: str, action: str,
                    params: dict[str, str], helper: str, at: int) -> Racing:
    """Bring the resource to where action has helper to end (stop: started, announcing;
    start: stopped, refusing), run action racing helper, then stop the resource."""
    assert ipaddr2("start", params, node, instance=instance).rc == 0
    if action == "start":
        assert ipaddr2("stop", params, node, instance=instance).rc == 0
    racing = run_racing(node, "IPaddr2", action, agent_env(params, instance=instance),
                        [recorded(instance, helper)], at, how)
    assert ipaddr2("stop", params, node, instance=instance).rc == 0
    return racing


# -- stress: processes that exit on their own --------------------------------------------------

def test_stop_succeeds_while_haproxy_is_killed_at_random_moments(ha: HaAgentNode) -> None:
    """A helper thread kills one of master and worker, or both, at a random moment of the
    stop (or just before it)."""
    rng = random.Random(SEED)
    runs = 20
    for run in range(runs):
        pids = started(ha)
        victims = rng.choice([pids[:1], pids[1:], pids])
        killer = threading.Timer(rng.uniform(0, 0.12), _kill, args=(victims,))
        killer.start()
        try:
            out = ha.agent("stop")
        finally:
            killer.join()
        assert out.rc == 0, f"run {run} (seed {SEED}): {out}"
        assert "Traceback" not in out.stderr, out
        wait_for(lambda: not ha.haproxy_pids(), timeout=5, what="haproxy gone")
    TALLY.add("haproxy stop, killed at random", runs)


def test_stop_succeeds_while_config_checks_come_and_go(ha: HaAgentNode) -> None:
    """`haproxy -c` on the same configuration, run in a loop on the node: stop finds
    these short-lived processes as haproxy running the configuration, and each exits
    while stop looks at it, signals it or waits for it."""
    checks = ha.node.popen("sh", "-c", f"while :; do {HAPROXY} -c -q -f {ha.config}; done",
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = 10
    try:
        for run in range(runs):
            assert ha.agent("start").rc == 0
            out = ha.agent("stop")
            assert out.rc == 0, f"run {run}: {out}"
            assert "Traceback" not in out.stderr, out
    finally:
        checks.kill()
        checks.wait()
    TALLY.add("haproxy stop, config checks coming and going", runs)


def test_the_proc_readers_never_fail_on_processes_reaped_under_them() -> None:
    """Short-lived children, reaped by a thread at random moments, while every reader and
    the signals hammer them: no reader raises, and wait_gone sees them all go."""
    rng = random.Random(SEED)
    rounds, batch = 40, 8
    for _ in range(rounds):
        children = [subprocess.Popen(["sleep", f"{rng.uniform(0, 0.01):.4f}"])
                    for _ in range(batch)]
        pids = [child.pid for child in children]
        reaper = threading.Thread(target=_reap, args=(children, rng.uniform(0, 0.01)))
        reaper.start()
        try:
            while any(child.returncode is None for child in children):
                for pid in pids:
                    info = process.process_info(pid)
                    assert info is None or info.pid == pid
                    process.alive(pid)
                    process.children(pid)
                process.signal_all(pids, 0)
                process.find_haproxy(HAPROXY, "/nonexistent/haproxy.cfg")
            assert process.wait_gone(pids, time.monotonic() + 2) == []
        finally:
            reaper.join()
    TALLY.add("readers against reaped processes", rounds * batch)


def _kill(pids: list[int]) -> None:
    process.signal_all(pids, process.SIGKILL)


def _reap(children: list[subprocess.Popen[bytes]], delay: float) -> None:
    time.sleep(delay)
    for child in children:
        child.wait()


def test_a_watcher_starts_although_the_kernel_reaped_the_child_that_started_it(
        tmp_path: Path) -> None:
    """An agent whose parent ignores SIGCHLD inherits that (it survives exec): the kernel
    reaps the child that forks the watcher before spawn waits for it. The watcher runs all
    the same (and, with nothing registered, leaves), so spawn must say so instead of
    failing."""
    spawned = subprocess.run(["/usr/bin/python3", "-IS", "-c", f"""
import os, signal, sys
sys.path.insert(0, {REPO!r})
from ocf_lib.helpers import watch
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
watch._spawn({str(tmp_path / "kuth-watch-1")!r})
print(watch.running_watcher({str(tmp_path / "kuth-watch-1")!r})[0])
"""], capture_output=True, text=True, timeout=30)
    assert spawned.returncode == 0, spawned.stderr
    watcher = int(spawned.stdout)
    wait_for(lambda: not process.alive(watcher), timeout=5,
             what="the watcher leaving, with nothing to watch")
