"""ocf_lib.ocf.trace: `crm resource trace` (trace_ra=1) writes a trace of each action of our
agents where resource-agents' ocf-shellfuncs writes one for a shell agent, never changes the
action's exit code, and costs nothing when not asked for."""
import os
import re
import subprocess
import time

import pytest

from ocfshim import agent_env, imported_modules, run_agent

SHELLFUNCS = "/usr/lib/ocf/lib/heartbeat/ocf-shellfuncs"
# An address on lo, which every network namespace has, that none holds: monitor says not
# running and validate-all accepts, as any user and without a namespace of the test's own
# (the tracer is the subject here, not what IPaddr2 does to a node).
GOOD = {"ip": "198.18.0.10", "nic": "lo", "cidr_netmask": "32"}
# ocf_default_trace_dest: <instance>.<action>.`date +%F.%T`
STAMP = r"\d{4}-\d\d-\d\d\.\d\d:\d\d:\d\d"


def traced(agent, action, params, *, ns=None, instance="test-rsc", **extra):
    """Run agent with trace_ra=1 (as `crm resource trace` sets it) and extra environment."""
    return run_agent(agent, action, {**params, "trace_ra": "1"}, ns=ns, instance=instance,
                     extra={"OCF_RESOURCE_TYPE": agent, **extra})


def trace_files(top):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(top) for f in files)


def only_trace(directory, instance, action):
    """The one trace file in directory, after checking its name is ocf-shellfuncs' for
    instance and action, stamped with a time of this run."""
    names = os.listdir(directory)
    assert len(names) == 1, names
    match = re.fullmatch(rf"{re.escape(instance)}\.{re.escape(action)}\.({STAMP})", names[0])
    assert match, names[0]
    stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d.%H:%M:%S"))
    assert abs(time.time() - stamp) < 120
    with open(os.path.join(directory, names[0]), encoding="utf-8") as trace:
        return trace.read()


@pytest.mark.parametrize("action,code", [("monitor", 7), ("validate-all", 0)])
def test_ipaddr2_trace_lands_under_ha_varlib_with_shellfuncs_name(tmp_path, action, code):
    out = traced("IPaddr2", action, GOOD, HA_VARLIB=str(tmp_path))
    assert out.rc == code, out
    text = only_trace(tmp_path / "trace_ra" / "IPaddr2", "test-rsc", action)
    assert "\nOCF_RESKEY_trace_ra=1\n" in text  # the environment first, as ocf_start_trace
    assert re.search(r"agents/ipaddr2\.py:\d+ \w+: ", text), text[-2000:]
    assert text.rstrip("\n").splitlines()[-1].endswith(f" exit {code}")
    assert "Traceback" not in out.stderr


def test_trace_dir_parameter_wins_over_ha_varlib(tmp_path):
    out = traced("IPaddr2", "monitor", {**GOOD, "trace_dir": str(tmp_path / "chosen")},
                 HA_VARLIB=str(tmp_path / "varlib"))
    assert out.rc == 7, out
    assert "agents/ipaddr2.py:" in only_trace(tmp_path / "chosen" / "IPaddr2", "test-rsc",
                                              "monitor")
    assert not (tmp_path / "varlib").exists()


def test_haproxy_trace_keeps_the_exit_code(tmp_path):
    params = {"conffile": str(tmp_path / "missing.cfg"), "trace_dir": str(tmp_path / "t")}
    plain = run_agent("haproxy", "validate-all", params, extra={"OCF_RESOURCE_TYPE": "haproxy"})
    assert not (tmp_path / "t").exists()
    out = traced("haproxy", "validate-all", params)
    assert out.rc == plain.rc != 0, out
    assert out.reason == plain.reason
    text = only_trace(tmp_path / "t" / "haproxy", "test-rsc", "validate-all")
    assert "agents/haproxy.py:" in text
    assert text.rstrip("\n").splitlines()[-1].endswith(f" exit {plain.rc}")


@pytest.mark.skipif(not os.path.exists(SHELLFUNCS), reason="resource-agents is not installed")
def test_same_directory_and_names_as_a_shell_agent(tmp_path):
    """A shell agent sourcing ocf-shellfuncs, with the same environment, traces next to ours."""
    shell_agent = tmp_path / "shell_agent"
    shell_agent.write_text(f"#!/bin/sh\n. {SHELLFUNCS}\n"
                           'case "$1" in monitor) exit $OCF_NOT_RUNNING ;; esac\nexit 0\n')
    shell_agent.chmod(0o755)
    varlib = tmp_path / "varlib"
    out = traced("IPaddr2", "monitor", GOOD, instance="py-rsc", HA_VARLIB=str(varlib))
    assert out.rc == 7, out
    env = agent_env({"trace_ra": "1"}, instance="sh-rsc",
                    extra={"OCF_RESOURCE_TYPE": "IPaddr2", "HA_VARLIB": str(varlib)})
    shell = subprocess.run([str(shell_agent), "monitor"], env=env, capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert shell.returncode == 7, shell.stderr
    names = sorted(os.path.relpath(path, varlib) for path in trace_files(varlib))
    assert len(names) == 2, names
    assert re.fullmatch(rf"trace_ra/IPaddr2/py-rsc\.monitor\.{STAMP}", names[0]), names
    assert re.fullmatch(rf"trace_ra/IPaddr2/sh-rsc\.monitor\.{STAMP}", names[1]), names
    assert "OCF_RESKEY_trace_ra=1" in (varlib / names[1]).read_text()  # its env, like ours


@pytest.mark.parametrize("extra", [{}, {"OCF_RESKEY_trace_ra": "0"},
                                   {"OCF_RESKEY_trace_ra": "false"},
                                   {"OCF_TRACE_RA": "no", "OCF_RESKEY_trace_ra": "1"}],
                         ids=["unset", "0", "false", "OCF_TRACE_RA=no wins"])
def test_no_trace_file_unless_asked(tmp_path, extra):
    out = run_agent("IPaddr2", "monitor", GOOD,
                    extra={"HA_VARLIB": str(tmp_path), **extra})
    assert out.rc == 7, out
    assert trace_files(tmp_path) == []
    assert out.stderr == ""


def test_ocf_trace_ra_alone_turns_tracing_on(tmp_path):
    """Pacemaker's own switch, as ocf-shellfuncs reads it."""
    out = run_agent("IPaddr2", "monitor", GOOD,
                    extra={"HA_VARLIB": str(tmp_path), "OCF_TRACE_RA": "yes"})
    assert out.rc == 7, out
    assert "agents/ipaddr2.py:" in only_trace(tmp_path / "trace_ra" / "IPaddr2", "test-rsc",
                                              "monitor")


def test_ocf_trace_file_names_the_file(tmp_path):
    target = tmp_path / "sub" / "my.trace"
    out = traced("IPaddr2", "validate-all", GOOD, OCF_TRACE_FILE=str(target),
                 HA_VARLIB=str(tmp_path / "varlib"))
    assert out.rc == 0, out
    assert "agents/ipaddr2.py:" in target.read_text()
    assert not (tmp_path / "varlib").exists()


def test_unwritable_trace_dir_warns_and_keeps_the_exit_code(tmp_path):
    """Root writes anywhere, so the type's directory is a file here: mkdir -p fails."""
    (tmp_path / "IPaddr2").write_text("not a directory\n")
    for action, code in (("monitor", 7), ("validate-all", 0)):
        out = traced("IPaddr2", action, {**GOOD, "trace_dir": str(tmp_path)})
        assert out.rc == code, out
        assert "WARNING: trace file" in out.stderr and "not writable" in out.stderr, out
        assert "Traceback" not in out.stderr
    assert trace_files(tmp_path) == [str(tmp_path / "IPaddr2")]


def test_value_neither_true_nor_false_warns_and_does_not_trace(tmp_path):
    out = run_agent("IPaddr2", "monitor", {**GOOD, "trace_ra": "maybe"},
                    extra={"HA_VARLIB": str(tmp_path)})
    assert out.rc == 7, out
    assert "trace_ra='maybe' is not a boolean" in out.stderr
    assert trace_files(tmp_path) == []


def test_tracer_is_not_imported_when_not_asked():
    """The untraced path imports nothing of the tracer: what every monitor pays."""
    assert "ocf_lib.ocf.trace" not in imported_modules("IPaddr2", "validate-all", GOOD)


# -- in a cluster ----------------------------------------------------------------------------

def test_crm_resource_trace_and_untrace_in_a_cluster(cluster, tmp_path):
    """`crm resource trace vip monitor DIR`: the node running vip writes its monitors' traces
    to DIR/IPaddr2/; `crm resource untrace vip` stops them. DIR, not the default: a lab
    node's /var/lib/heartbeat is the machine's, shared by every node."""
    from lab.topology import VIP_NETWORK
    cluster.configure(f"primitive vip ocf:kuth:IPaddr2 params ip={VIP_NETWORK}.20 nic=lan0 "
                      "cidr_netmask=24 op monitor interval=2 timeout=20\n")
    [active] = cluster.wait_for(lambda: cluster.locate("vip"), 30, what="vip started")
    cluster.crm("resource", "trace", "vip", "monitor", str(tmp_path))
    directory = tmp_path / "IPaddr2"

    def finished() -> list[str]:
        return [path.read_text() for path in sorted(directory.glob("vip.monitor.*"))
                if path.read_text().endswith(" exit 0\n")]

    text = cluster.wait_for(finished, 30, what="a finished monitor trace")[0]
    assert f"\nOCF_RESKEY_CRM_meta_on_node={active}\n" in text
    assert "\nOCF_RESKEY_trace_ra=1\n" in text and "agents/ipaddr2.py:" in text
    assert all(re.fullmatch(rf"vip\.monitor\.{STAMP}", p.name) for p in directory.iterdir())
    cluster.crm("resource", "untrace", "vip")
    cluster.settle()
    time.sleep(1)  # a monitor that began before the untrace may still be writing
    before = sorted(directory.iterdir())
    time.sleep(5)  # two intervals and more
    assert sorted(directory.iterdir()) == before
    assert cluster.locate("vip") == [active]
