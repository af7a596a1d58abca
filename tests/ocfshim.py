"""The OCF testing shim: run an agent the way pacemaker-execd does, and read what it said.

`run_agent` sets the environment Pacemaker sets (OCF_ROOT, OCF_RESOURCE_INSTANCE,
OCF_RESKEY_* parameters, CRM_meta_timeout and _interval), optionally inside a test network
namespace, and returns the exit code, the output and the exit reason. stderr is not a
terminal, as under Pacemaker. `HaAgentNode` is the lab's HaNode with the haproxy agent run
inside it.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile

from lab import AGENTS, REPO
from lab.haproxy import HaNode
from lab.netns import Netns

REASON_PREFIX = "ocf-exit-reason:"
# The executables Pacemaker runs (each imports the module of the same name in lower case).
AGENT_NAMES = sorted(name for name in os.listdir(AGENTS)
                     if os.path.isfile(os.path.join(AGENTS, name))
                     and os.access(os.path.join(AGENTS, name), os.X_OK))
# The agents' state directory (HA_RSCTMP) for this test run, removed when it ends.
STATE_DIR = tempfile.mkdtemp(prefix="kuth-test-rsctmp-")
atexit.register(shutil.rmtree, STATE_DIR, ignore_errors=True)
_public: list[str] = []


def public_tree() -> str:
    """A copy of agents/, ocf_lib/ and metadata/ that every user can read, for what runs as `nobody`
    (ocf-tester's meta-data, the privilege tests): the checkout may lie under a directory
    only root may enter (/root is 0700), and such a run would then test the checkout's
    place, not the agent. Made once per test run in /tmp (never TMPDIR, which may be
    private too), removed when the run ends. Returns its root: agents are in agents/."""
    if not _public:
        top = tempfile.mkdtemp(prefix="kuth-test-public-", dir="/tmp")
        atexit.register(shutil.rmtree, top, ignore_errors=True)
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        for part in ("agents", "ocf_lib", "metadata"):
            shutil.copytree(os.path.join(REPO, part), os.path.join(top, part), ignore=skip)
        for directory, _, files in os.walk(top):
            os.chmod(directory, 0o755)
            for name in files:
                path = os.path.join(directory, name)
                os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
        _public.append(top)
    return _public[0]


def public_agent(agent: str) -> str:
    """The path of agent in public_tree()."""
    return os.path.join(public_tree(), "agents", agent)


class Outcome:
    """What one agent run did."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        reasons = [line[len(REASON_PREFIX):] for line in proc.stderr.splitlines()
                   if line.startswith(REASON_PREFIX)]
        self.reason = reasons[-1] if reasons else None

    def __repr__(self) -> str:
        return f"Outcome(rc={self.rc}, reason={self.reason!r}, stderr={self.stderr[-500:]!r})"


def agent_env(params: dict[str, str], *, instance: str = "test-rsc", interval_ms: int | None = None,
              timeout_ms: int = 20000, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment pacemaker-execd would give the agent."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_INSTANCE": instance, "OCF_RESOURCE_TYPE": "IPaddr2",
           "OCF_RESOURCE_PROVIDER": "kuth", "OCF_RESKEY_CRM_meta_timeout": str(timeout_ms),
           "HA_RSCTMP": STATE_DIR}
    if interval_ms is not None:
        env["OCF_RESKEY_CRM_meta_interval"] = str(interval_ms)
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    env.update(extra or {})
    return env


def run_agent(agent: str, action: str, params: dict[str, str] | None = None, *,
              ns: Netns | None = None, interval_ms: int | None = None, timeout: float = 60,
              **kwargs: object) -> Outcome:
    """Run agents/<agent> ACTION (inside ns when given) and return its Outcome."""
    env = agent_env(params or {}, interval_ms=interval_ms, **kwargs)  # type: ignore[arg-type]
    argv = [os.path.join(AGENTS, agent), action]
    if ns is not None:
        argv = ns.exec_argv(argv)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Outcome(proc)


# Modules whose import costs milliseconds: never on an agent's monitor path.
HEAVY_MODULES = {"re", "enum", "json", "socket", "subprocess", "logging", "typing", "ipaddress",
                 "dataclasses", "traceback", "signal", "lxml", "psutil", "requests",
                 "collections", "shlex",
                 "__future__"}  # not heavy, but an import of its own on every run


def modules_loaded_by(code: str) -> set[str]:
    """The modules a fresh `/usr/bin/python3 -IS` (as the agents run) loads to run code with
    the checkout's ocf_lib importable: what one library module costs the monitor path."""
    script = (f"import sys; sys.path.insert(0, {REPO!r}); before = set(sys.modules)\n{code}\n"
              "print(' '.join(sorted(set(sys.modules) - before)))")
    proc = subprocess.run(["/usr/bin/python3", "-IS", "-c", script], capture_output=True,
                          text=True, check=True, timeout=60)
    return set(proc.stdout.split()) - {"os.path"}  # an alias of posixpath, not a load


def imported_modules(agent: str, action: str, params: dict[str, str], *,
                     ns: Netns | None = None, interval_ms: int | None = None) -> set[str]:
    """The modules one run of the agent (inside ns when given) imports (python -X
    importtime), after checking the run succeeded."""
    env = agent_env(params, interval_ms=interval_ms)
    argv = ["/usr/bin/python3", "-IS", "-X", "importtime", os.path.join(AGENTS, agent), action]
    proc = subprocess.run(argv if ns is None else ns.exec_argv(argv),
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def assert_clean_failure(outcome: Outcome, code: int) -> None:
    """The run failed the way an operator wants: the right code, one exit reason, no
    traceback."""
    assert outcome.rc == code, outcome
    assert outcome.reason, outcome
    assert "Traceback" not in outcome.stderr, outcome


class HaAgentNode(HaNode):
    """A lab HaNode whose haproxy the tests drive through the agent (conffile= its config)."""

    def agent_argv(self, action: str) -> list[str]:
        """The command line that runs the agent inside the node."""
        return self.node.exec_argv([os.path.join(AGENTS, "haproxy"), action])

    def agent_env(self, **kwargs: object) -> dict[str, str]:
        return agent_env({"conffile": self.config}, **kwargs)  # type: ignore[arg-type]

    def agent(self, action: str, interval_ms: int | None = None, **params: object) -> Outcome:
        extra = params.pop("extra", None)
        timeout_ms = params.pop("timeout_ms", 20000)
        return run_agent("haproxy", action, {"conffile": self.config, **params}, ns=self.node,
                         interval_ms=interval_ms, timeout_ms=timeout_ms, extra=extra)


def ipaddr2(action: str, params: dict[str, str], ns: Netns, **kw: object) -> Outcome:
    """run_agent for ocf:kuth:IPaddr2 in ns."""
    return run_agent("IPaddr2", action, params, ns=ns, **kw)


def mac_of(ns: Netns, dev: str = "lan0") -> str:
    """The link-layer address of ns's interface dev."""
    return json.loads(ns.ip("-j", "link", "show", "dev", dev))[0]["address"]


def neighbour_mac(ns: Netns, ip: str, dev: str = "lan0") -> str | None:
    """The link-layer address ns's neighbour table gives for ip on dev (None: no entry)."""
    entries = json.loads(ns.ip("-j", "neigh", "show", "to", ip, "dev", dev) or "[]")
    return entries[0].get("lladdr") if entries else None
