"""Logging to syslog when HA_LOGFACILITY is set, checked against a real /dev/log socket in a
private mount namespace (the machine's own /dev is not touched)."""
import os
import subprocess
import sys

import pytest

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "sample_agent")

# Runs inside `unshare --mount`: a fresh tmpfs on /dev with /dev/null bound from the real one,
# a datagram socket at /dev/log, one agent run, then every datagram received is printed.
DRIVER = r"""
import os, socket, subprocess, sys
os.makedirs("/run/kuth-olddev", exist_ok=True)
subprocess.run(["mount", "--bind", "/dev", "/run/kuth-olddev"], check=True)
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/dev"], check=True)
open("/dev/null", "w").close()
subprocess.run(["mount", "--bind", "/run/kuth-olddev/null", "/dev/null"], check=True)
log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
log.bind("/dev/log")
log.settimeout(0.5)
env = dict(os.environ, OCF_RESKEY_name="x", HA_LOGFACILITY=sys.argv[2],
           OCF_RESOURCE_INSTANCE="rsc1", HA_debug=sys.argv[3])
proc = subprocess.run([sys.argv[1], "start"], env=env, capture_output=True, text=True)
print("rc", proc.returncode)
print("stderr", repr(proc.stderr))
try:
    while True:
        print("syslog", log.recv(4096).decode())
except socket.timeout:
    pass
"""


pytestmark = pytest.mark.usefixtures("needs_root")  # unshare --mount, an agent's start


def run_with_syslog(facility, debug="0"):
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           "-c", DRIVER, SAMPLE, facility, debug],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_messages_go_to_syslog_with_facility_tag_and_priority():
    out = run_with_syslog("local3")
    assert "rc 0" in out
    # <PRI> = facility local3 (19) * 8 + info (6) = 158
    lines = [l for l in out.splitlines() if l.startswith("syslog ")]
    assert any(l.startswith("syslog <158>") and "Sample(rsc1)" in l and "INFO: starting" in l
               for l in lines), out
    assert "stderr ''" in out, "nothing on stderr when syslog is the destination"


def test_debug_reaches_syslog_only_when_enabled():
    assert "debug detail" not in run_with_syslog("daemon", debug="0")
    out = run_with_syslog("daemon", debug="1")
    # daemon (3) * 8 + debug (7) = 31
    assert any(l.startswith("syslog <31>") and "DEBUG: debug detail" in l
               for l in out.splitlines()), out


def test_facility_none_means_stderr():
    out = run_with_syslog("none")
    assert "INFO: starting" in out.split("stderr", 1)[1].split("\n", 1)[0]
    assert "syslog <" not in out
