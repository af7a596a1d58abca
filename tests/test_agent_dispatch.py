"""ocf_lib.ocf.agent: dispatch, exit codes, exit reasons, lenient stop/probe, logging."""
import os
import subprocess

import pytest

from ocfshim import agent_env, run_agent

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "sample_agent")


def run(*args, params=None, **kw):
    env = agent_env(params if params is not None else {"name": "x"}, **kw)
    return subprocess.run([SAMPLE, *args], env=env, capture_output=True, text=True, timeout=30)


def reason(proc):
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ocf-exit-reason:")]
    assert len(lines) == 1, proc.stderr
    return lines[0][len("ocf-exit-reason:"):]


def test_typed_values_reach_the_action():
    proc = run("validate-all", params={"name": "x", "count": "7", "flag": "YES",
                                       "delay": "250ms"})
    assert proc.returncode == 0, proc.stderr
    assert "name=x count=7 flag=True delay=0.25" in proc.stdout


def test_defaults_apply_when_unset_or_empty():
    proc = run("validate-all", params={"name": "x", "count": ""})
    assert "count=3 flag=False delay=1.5" in proc.stdout


def test_unknown_action_exits_unimplemented_with_reason():
    proc = run("frobnicate")
    assert proc.returncode == 3
    assert "frobnicate" in reason(proc)


def test_no_action_exits_unimplemented():
    proc = run()
    assert proc.returncode == 3


def test_bad_value_is_err_configured_with_one_line_reason():
    proc = run("validate-all", params={"name": "x", "count": "1\n2"})
    assert proc.returncode == 6
    assert "count" in reason(proc) and "not an integer" in reason(proc)


def test_out_of_range_is_err_configured():
    proc = run("validate-all", params={"name": "x", "count": "0"})
    assert proc.returncode == 6
    assert "minimum" in reason(proc)


@pytest.mark.usefixtures("needs_root")  # start and stop need root (ERR_PERM otherwise)
def test_missing_required_parameter_fails_start_but_not_stop_or_probe():
    assert run("start", params={}).returncode == 6
    assert run("stop", params={}).returncode == 0
    assert run("monitor", params={}, interval_ms=0).returncode == 7
    assert run("meta-data", params={}).returncode == 0


@pytest.mark.usefixtures("needs_root")  # start and stop need root (ERR_PERM otherwise)
def test_stop_and_probe_fall_back_to_defaults_on_bad_values():
    assert run("stop", params={"name": "x", "count": "lots"}).returncode == 0
    proc = run("monitor", params={"name": "x", "count": "lots"}, interval_ms=0)
    assert proc.returncode == 7
    assert "probe=True" in proc.stdout


def test_recurring_monitor_is_not_a_probe():
    assert "probe=False" in run("monitor", interval_ms=10000).stdout


def test_a_monitor_without_an_interval_is_a_probe():
    """As resource-agents' ocf_is_probe takes it: Pacemaker 2.1.5 runs the probes after
    `crm resource refresh` without OCF_RESKEY_CRM_meta_interval."""
    assert "probe=True" in run("monitor").stdout


def test_unexpected_exception_is_generic_error_without_traceback(tmp_path):
    debuglog = tmp_path / "debug.log"
    proc = run("monitor", params={"name": "crash"}, extra={"HA_DEBUGLOG": str(debuglog)})
    assert proc.returncode == 1
    assert "RuntimeError: boom second line" in reason(proc)
    assert "Traceback" not in proc.stderr
    assert "Traceback" in debuglog.read_text()


def test_ocf_error_gives_code_and_normalised_reason():
    proc = run("monitor", params={"name": "refuse"})
    assert proc.returncode == 2
    assert reason(proc) == "not here: not now"


def test_exit_reason_prefix_from_environment():
    proc = run("monitor", params={"name": "refuse"}, extra={"OCF_EXIT_REASON_PREFIX": "ERR>"})
    assert "ERR>not here: not now" in proc.stderr


@pytest.mark.parametrize("level,expected", [("0", 0), ("5", 0), ("10", 10), ("20", 10),
                                            ("junk", 0)])
def test_check_level_falls_back_to_deepest_implemented(level, expected):
    proc = run("monitor", extra={"OCF_CHECK_LEVEL": level})
    assert f"depth={expected}" in proc.stdout


def test_deadline_comes_from_the_action_timeout():
    proc = run("validate-all", timeout_ms=5000)
    remaining = float(proc.stdout.split("remaining=")[1].split()[0])
    assert 3.5 < remaining <= 4.8


def test_logfile_gets_info_and_debug_only_when_enabled(tmp_path):
    logfile = tmp_path / "ha.log"
    run("validate-all", extra={"HA_LOGFILE": str(logfile), "HA_debug": "0"})
    text = logfile.read_text()
    assert "Sample(test-rsc)" in text and "INFO: starting" in text
    assert "debug detail" not in text
    debuglog = tmp_path / "ha-debug.log"
    run("validate-all", extra={"HA_LOGFILE": str(logfile), "HA_DEBUGLOG": str(debuglog),
                               "HA_debug": "1"})
    assert "DEBUG: debug detail" in debuglog.read_text()


def test_pcmk_forms_of_log_settings_are_honoured(tmp_path):
    logfile = tmp_path / "pcmk.log"
    run("validate-all", extra={"PCMK_logfile": str(logfile)})
    assert "INFO: starting" in logfile.read_text()


def test_without_log_settings_messages_go_to_stderr():
    proc = run("validate-all")
    assert "INFO: starting" in proc.stderr


def test_unwritable_logfile_does_not_fail_the_action():
    proc = run("validate-all", extra={"HA_LOGFILE": "/nonexistent/dir/ha.log"})
    assert proc.returncode == 0


def unknown_warning(name, agent="Sample"):
    return (f"WARNING: parameter {name} is not a parameter of ocf:kuth:{agent} and is ignored; "
            f"remove it (crm ra info ocf:kuth:{agent} lists them)")


@pytest.mark.usefixtures("needs_root")  # start and stop need root (ERR_PERM otherwise)
def test_unknown_parameter_is_warned_once_on_start():
    proc = run("start", params={"name": "x", "bogus": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(unknown_warning("bogus")) == 1, proc.stderr


def test_unknown_parameter_is_warned_even_when_a_value_is_bad():
    proc = run("validate-all", params={"name": "x", "count": "lots", "bogus": "1"})
    assert proc.returncode == 6
    assert unknown_warning("bogus") in proc.stderr


@pytest.mark.parametrize("interval_ms", [10000, 0])
def test_monitor_says_nothing_of_unknown_parameters(interval_ms):
    proc = run("monitor", params={"name": "x", "bogus": "1"}, interval_ms=interval_ms)
    assert proc.returncode == 7, proc.stderr
    assert "bogus" not in proc.stderr


@pytest.mark.usefixtures("needs_root")  # start and stop need root (ERR_PERM otherwise)
def test_stop_says_nothing_of_unknown_parameters():
    proc = run("stop", params={"name": "x", "bogus": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "bogus" not in proc.stderr


def test_pacemaker_and_shellfuncs_names_are_no_unknown_parameters():
    proc = run("validate-all", params={"name": "x", "crm_feature_set": "3.16.2",
                                       "trace_ra": "0", "trace_dir": "/nonexistent",
                                       "OCF_CHECK_LEVEL": "10", "CRM_meta_on_node": "node1"})
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr


def test_validate_all_shows_unknown_parameter_on_stderr():
    """On lo, which every namespace has: no namespace of the test's own needed."""
    out = run_agent("IPaddr2", "validate-all", {"ip": "198.18.0.10", "nic": "lo",
                                                "cidr_netmask": "32", "bogus": "1"})
    assert out.rc == 0, out
    assert unknown_warning("bogus", "IPaddr2") in out.stderr
