"""resource-agents' own ocft cases for IPaddr2 (configs IPaddr2, IPaddr2v4, IPaddr2v6), run
against ocf:kuth:IPaddr2.

ocft (/usr/sbin/ocft, package resource-agents) compiles a config's cases (`ocft make`) into
shell scripts, one per CASE, plus a SETUP-AGENT and a CLEANUP-AGENT script, and runs them
(`ocft test`); each case prints `CONFIG: case name - ` and then `OK.` per checked action, or
`FAILED. ...` / `ERROR: ...` and stops there. The configs are read from the installed package
at run time and adapted in a pytest tmp dir (adapted_config): AgentRoot -> our agents/, their
addresses -> ours (198.18.0.0/15, 2001:2::/48), nothing else.

How it is run, and why:
- ocft writes the compiled cases, its logs and a fakebin/ under the fixed
  /var/lib/resource-agents/ocft/cases and offers no option to change that: it runs as a copy
  in the tmp dir whose one CASES_DIR line names a private directory (private_ocft), so the
  host stays clean. The agent's state and ocft's `.ocft_runlog` go to HA_RSCTMP, a private
  directory per case too.
- Each case runs on its own (`ocft test -i` with only that case marked for retest: ocft's
  incremental mode) in a fresh network namespace whose eth0 and eth1 (the names the configs
  use) are the two ends of one veth pair, with SETUP-AGENT's base address. A case that fails
  half-way leaves what it changed (a base address removed, say); run together, every later
  case would inherit it.
- ocft's agent_run polls the agent it started in the background with `sleep 1` until it is
  gone, so each agent run costs a whole second (a minute or more per config). The case scripts
  get an exported bash function `sleep` (SLEEP_FUNCTION) that, for `sleep 1` only, returns
  as soon as the script has no running background job (the agent), and after 1 s at the
  latest: the same results and the same HangTimeout, without the idle wait.

What must fail: EXPECTED_DIFFERENCES (where we answer otherwise than heartbeat on purpose) and
STALE_CASES (where heartbeat's own IPaddr2 answers otherwise than the case expects), exactly
those. As a control, heartbeat's IPaddr2 runs the same adapted cases and must fail only
STALE_CASES: every difference is then ours, none an artefact of the namespace or the
adaptation. Needs ocft, bash, setsid and iproute2 (resource-agents, bash, util-linux and
iproute2, all in the Makefile's TEST_PACKAGES or essential); ocf-tester and lsof are not used.
"""
from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path

import pytest

from lab import AGENTS
from lab.netns import NetnsPool

CONFIGS = ("IPaddr2", "IPaddr2v4", "IPaddr2v6")
OCFT = "/usr/sbin/ocft"
CONFIGS_DIR = "/usr/share/resource-agents/ocft/configs"
CASES_DIR_LINE = "CASES_DIR=/var/lib/resource-agents/ocft/cases"
HEARTBEAT_ROOT = "/usr/lib/ocf/resource.d/heartbeat"

# IPaddr2v4 and IPaddr2v6 name their addresses and interfaces in a VARIABLE section: each of
# its variables -> our value. The section must set exactly these variables, no other.
VARIABLES: dict[str, dict[str, str]] = {
    "IPaddr2v4": {
        "OCFT_target_ip": "198.18.144.2",              # the VIP, in the base network
        "OCFT_target_nic": "eth0",
        "OCFT_target_prefix": "24",
        "OCFT_target_netaddr": "198.18.144.1/$OCFT_target_prefix",   # SETUP-AGENT's base
        "OCFT_target_brd": "198.18.144.255",
        "OCFT_wrong_ip": "198.19.120.1",               # in no network of the namespace
        "OCFT_force_nic": "eth1",                      # no address of its own
        "OCFT_force_prefix": "16",
        "OCFT_force_prefix2": "28",
        "OCFT_force_brd": "198.18.255.255",            # the broadcast of the VIP's /16
    },
    "IPaddr2v6": {
        "OCFT_target_ip": "2001:2:0:1234::2",
        "OCFT_target_nic": "eth0",
        "OCFT_target_prefix": "64",
        "OCFT_target_netaddr": "2001:2:0:1234::1/$OCFT_target_prefix",
        "OCFT_target_linklocal": "fe80::2",
        "OCFT_wrong_ip": "2001:2:0:5678::2",
        "OCFT_force_nic": "eth1",
        "OCFT_force_prefix": "80",
        "OCFT_force_prefix2": "48",                    # 2001:2::/48 itself
    },
}
# IPaddr2 has no VARIABLE section: its one network, 192.168.144.0/24 (base .1, VIP .2,
# broadcast .255), is written inline. Each text -> ours; each must occur.
INLINE: dict[str, dict[str, str]] = {
    "IPaddr2": {"192.168.144.": "198.18.144."},
}
# Addresses an adapted config may name besides 198.18.0.0/15 and 2001:2::/48: ones that
# exist on the test namespace's own loopback or link only.
IN_NAMESPACE_ONLY = {
    "127.0.0.3",   # IPaddr2 "Attachment to loopback interface": on the namespace's lo
    "fe80::2",     # IPaddr2v6's link-local VIP, on the namespace's eth0
}
OUR_NETWORKS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48"))

# Cases where ocf:kuth:IPaddr2 answers differently from ocf:heartbeat:IPaddr2 on purpose:
# (config, "case N: name" as `ocft make` lists it: a name can repeat within a config, the
# number cannot) -> why. Each must fail, and no other case
# may (but STALE_CASES). heartbeat's own agent passes each of them in the same namespace
# (test_heartbeat_passes_the_adapted_cases), so none is an artefact of the adaptation.
NODE_LOCAL = ("no interface here covers the address (with this nic/cidr_netmask): 2 "
              "ERR_ARGS, a problem of this node (Pacemaker tries another); heartbeat says 1")
EXPECTED_DIFFERENCES: dict[tuple[str, str], str] = {
    ("IPaddr2", "case 8: check base env: set invalid 'OCF_RESKEY_nic'"):
        "nic missing on this node is 2 ERR_ARGS (it may exist on another node), not 6 "
        "ERR_CONFIGURED, which stops the resource cluster-wide",
    ("IPaddr2", "case 19: monitor failure when 'OCF_RESKEY_nic' is vanished"):
        "a vanished nic holds no address: monitor says 7 NOT_RUNNING (a recurring monitor "
        "is recovered alike), heartbeat says 1",
    ("IPaddr2v4", "case 8: error params with wrong ip"): NODE_LOCAL,
    ("IPaddr2v4", "case 9: params with force nic"): NODE_LOCAL,
    ("IPaddr2v4", "case 10: params with force cidr_netmask (base netmask > assigned netmask)"):
        NODE_LOCAL,
    ("IPaddr2v4", "case 12: error params with wrong ip and nic (not exist base_ip)"): NODE_LOCAL,
    ("IPaddr2v4", "case 15: error params with wrong ip and cidr_netmask (not exist base_ip)"):
        NODE_LOCAL,
    ("IPaddr2v4", "case 19: params with broadcast, no nic, no cidr_netmask"): NODE_LOCAL,
    ("IPaddr2v6", "case 6: error params with wrong ip"): NODE_LOCAL,
    ("IPaddr2v6", "case 10: error params with wrong ip and nic (not exist base_ip)"): NODE_LOCAL,
    ("IPaddr2v6", "case 11: params with force nic"): NODE_LOCAL,
    ("IPaddr2v6", "case 14: params with force cidr_netmask (base netmask > assigned netmask)"):
        NODE_LOCAL,
    ("IPaddr2v6", "case 15: params with cidr_netmask"): NODE_LOCAL,
}
# Cases that heartbeat's own IPaddr2 fails too, on Debian 12 (4.12) and 13 (4.16): what the
# case expects is not what the agent it was written for does. Ours answers as heartbeat's.
STALE_CASES: dict[tuple[str, str], str] = {
    ("IPaddr2v6", "case 13: params with force cidr_netmask (base netmask < assigned netmask)"):
        "a /80 inside the /64 routed on eth0: heartbeat starts it (0), the case expects 1",
}
HEARTBEAT_ROOT_EXISTS = os.path.exists(os.path.join(HEARTBEAT_ROOT, "IPaddr2"))

# `sleep 1` returns once the calling script has no running background job (see above).
SLEEP_FUNCTION = """() {
    if [ "$#" -eq 1 ] && [ "$1" = 1 ]; then
        local tick
        for ((tick = 0; tick < 100; tick++)); do
            [ -z "$(jobs -pr)" ] && return 0
            command sleep 0.01
        done
        return 0
    fi
    command sleep "$@"
}"""
CASE_TIMEOUT = 300  # s for one case's `ocft test`: a hung agent costs HangTimeout per run
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def config_text(config: str) -> str:
    path = os.path.join(CONFIGS_DIR, config)
    if not os.path.exists(OCFT) or not os.path.exists(path):
        pytest.skip(f"needs resource-agents' ocft and its config {path}")
    with open(path) as file:
        return file.read()


def adapted_config(config: str, text: str, agent_root: str = AGENTS) -> str:
    """The config with AgentRoot naming our agents/ and our addresses in place of theirs.
    Fails when the config no longer has what the substitutions expect."""
    lines = text.splitlines()
    agent = [i for i, line in enumerate(lines) if line.split() == ["Agent", "IPaddr2"]]
    root = [i for i, line in enumerate(lines) if line.split() == ["AgentRoot", HEARTBEAT_ROOT]]
    assert len(agent) == 1 and len(root) == 1, \
        f"{config}: expected one 'Agent IPaddr2' and one 'AgentRoot {HEARTBEAT_ROOT}'"
    assert " " not in agent_root, f"ocft splits AgentRoot at blanks: {agent_root}"
    lines[root[0]] = f"\tAgentRoot {agent_root}"

    seen: set[str] = set()
    section = None
    for i, line in enumerate(lines):
        if re.fullmatch(r"[A-Z-]+(\s.*)?", line):   # a top-level statement starts a section
            section = line.split()[0]
            continue
        if section != "VARIABLE" or not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, _ = line.strip().partition("=")
        assert equals and name in VARIABLES.get(config, {}), \
            f"{config}: VARIABLE {line.strip()!r} has no value of ours in VARIABLES"
        lines[i] = f"\t{name}={VARIABLES[config][name]}"
        seen.add(name)
    assert seen == set(VARIABLES.get(config, {})), \
        f"{config}: VARIABLE section lacks {sorted(set(VARIABLES[config]) - seen)}"

    adapted = "\n".join(lines) + "\n"
    for theirs, ours in INLINE.get(config, {}).items():
        assert theirs in adapted, f"{config}: no {theirs!r} left to replace by {ours!r}"
        adapted = adapted.replace(theirs, ours)
    foreign = [word for word in addresses_named(adapted) if word not in IN_NAMESPACE_ONLY
               and not any(ipaddress.ip_address(word) in net for net in OUR_NETWORKS
                           if net.version == ipaddress.ip_address(word).version)]
    assert not foreign, f"{config}: adapted config still names {foreign}"
    return adapted


def addresses_named(text: str) -> list[str]:
    """The IP addresses a config names outside its comments."""
    found = []
    for line in text.splitlines():
        for word in re.split(r"[\s=/\"'|>]+", line.split("#", 1)[0]):
            try:
                ipaddress.ip_address(word)
            except ValueError:
                continue
            found.append(word)
    return found


def private_ocft(directory: Path) -> Path:
    """A copy of ocft that keeps its cases, logs and fakebin/ in directory/cases."""
    with open(OCFT) as file:
        lines = file.read().split("\n")
    where = [i for i, line in enumerate(lines) if line == CASES_DIR_LINE]
    assert len(where) == 1, f"{OCFT}: expected one line {CASES_DIR_LINE!r}"
    cases = directory / "cases"
    assert " " not in str(cases)
    lines[where[0]] = f"CASES_DIR={cases}"
    copy = directory / "ocft"
    copy.write_text("\n".join(lines))
    return copy


class CaseResult:
    def __init__(self, number: int, name: str, passed: bool, output: str) -> None:
        self.number, self.name, self.passed, self.output = number, name, passed, output

    @property
    def key(self) -> str:
        return f"case {self.number}: {self.name}"


def run_config(config: str, tmp: Path, agent_root: str = AGENTS) -> list[CaseResult]:
    """Make the adapted config's cases with ocft and run each alone in a fresh namespace."""
    adapted = adapted_config(config, config_text(config), agent_root)
    (tmp / "configs").mkdir()
    (tmp / "configs" / config).write_text(adapted)
    ocft = private_ocft(tmp)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "TMPDIR": str(tmp),
           "BASH_FUNC_sleep%%": SLEEP_FUNCTION}
    made = subprocess.run(["bash", str(ocft), "make", "-d", str(tmp / "configs"), config],
                          capture_output=True, text=True, env=env, timeout=60)
    assert made.returncode == 0, made.stdout + made.stderr
    cases = [(int(m[1]), m[2]) for m in re.finditer(r"^    - case (\d+): (.*)$", made.stdout,
                                                    re.MULTILINE)]
    assert len(cases) == len(re.findall(r'^CASE "', adapted, re.MULTILINE)) > 0, made.stdout
    return [run_case(config, ocft, tmp, number, name, env) for number, name in cases]


def run_case(config: str, ocft: Path, tmp: Path, number: int, name: str,
             env: dict[str, str]) -> CaseResult:
    """Run case number alone (ocft's incremental mode) in a namespace of its own."""
    cases = tmp / "cases"
    for leftover in cases.glob("*.retest"):
        leftover.unlink()
    retest = cases / f"{number}_{config}.retest"
    retest.touch()
    rsctmp = tmp / f"rsctmp-{number}"
    rsctmp.mkdir()
    pool = NetnsPool()
    try:
        ns = pool.new()
        pool.link(ns, "eth0", ns, "eth1")
        proc = ns.run("bash", str(ocft), "test", "-i", config, check=False,
                      env={**env, "HA_RSCTMP": str(rsctmp)}, timeout=CASE_TIMEOUT)
    finally:
        pool.cleanup()
    output = ANSI.sub("", proc.stdout + proc.stderr)
    header = f"{config}: {name} - "
    assert header in output, f"{config}: case {number} did not run:\n{output}"
    said = output.split(header, 1)[1].split("Cleaning '", 1)[0]
    # ocft marks a failed case for retest; a CLEANUP-AGENT that fails after a case that
    # passed means the agent took the base address away
    passed = (proc.returncode == 0 and not retest.exists() and "FAILED" not in said
              and "ERROR" not in said and "CLEANUP failed" not in output)
    if not passed:
        runlog = rsctmp / ".ocft_runlog"
        output += ("\n--- the agent's last run said:\n" + runlog.read_text()
                   if runlog.exists() else "")
    return CaseResult(number, name, passed, output)


def check(config: str, tmp: Path, agent_root: str,
          expected: dict[tuple[str, str], str]) -> None:
    """Run config's cases with the agent in agent_root: exactly expected's cases fail."""
    results = run_config(config, tmp, agent_root)
    failed = {r.key for r in results if not r.passed}
    should_fail = {key for (cfg, key) in expected if cfg == config}
    report = "\n\n".join(f"== {r.key} ({'passed' if r.passed else 'FAILED'})\n{r.output}"
                         for r in results if (r.key in failed) != (r.key in should_fail))
    assert failed == should_fail, (
        f"{config} with {agent_root}: {len(results) - len(failed)} of {len(results)} cases "
        f"pass; unexpected failures {sorted(failed - should_fail)}, expected failures that "
        f"passed {sorted(should_fail - failed)}\n{report}")


@pytest.mark.parametrize("config", CONFIGS)
def test_our_agent_passes_the_cases(config, tmp_path, needs_root):
    """Every case of resource-agents' config passes against ocf:kuth:IPaddr2 but
    EXPECTED_DIFFERENCES and STALE_CASES, and each of those does fail."""
    check(config, tmp_path, AGENTS, {**EXPECTED_DIFFERENCES, **STALE_CASES})


@pytest.mark.skipif(not HEARTBEAT_ROOT_EXISTS, reason="needs heartbeat's IPaddr2")
@pytest.mark.parametrize("config", CONFIGS)
def test_heartbeat_passes_the_adapted_cases(config, tmp_path, needs_root):
    """The adaptation is faithful: heartbeat's own IPaddr2 fails only STALE_CASES of the
    adapted config in the same namespaces, so each of EXPECTED_DIFFERENCES is ours."""
    check(config, tmp_path, HEARTBEAT_ROOT, STALE_CASES)


def test_listed_cases_name_known_configs():
    """An entry for a config this module does not run would never be checked."""
    listed = {**EXPECTED_DIFFERENCES, **STALE_CASES}
    assert {config for config, _ in listed} <= set(CONFIGS)
    assert not set(EXPECTED_DIFFERENCES) & set(STALE_CASES)
    assert all(re.fullmatch(r"case \d+: .+", case) and why.strip() and "\n" not in why
               for (_, case), why in listed.items())
