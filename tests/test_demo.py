"""`make demo` (the README's main command) runs to its end on this machine's release: the
package built from this checkout, laid over the nodes' /usr in the lab cluster with fencing
on, through every event of the demo. Its figures are the benchmarks' business; this checks
that it works, on Debian 12 here and in the Debian 13 root (whose / is an overlay already,
so the nodes' /usr overlay is the second of the two a kernel allows)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

import package_chroot as chroot
from ocfshim import REPO

EVENTS = ("planned move", "haproxy.cfg typo", "haproxy.cfg fixed", "haproxy killed", "node crash", "node link down", "node back")

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(p) for p in ("corosync", "pacemakerd", "crm")),
    reason="needs root, corosync, pacemaker and crmsh")]


def test_the_demo_runs_every_event_and_tears_down(tmp_path) -> None:
    deb = chroot.build(str(tmp_path / "dist"))
    proc = subprocess.run([sys.executable, "-m", "demo.demo", "--deb", deb], cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = proc.stdout.split("\nReport:", 1)[-1]
    assert [e for e in EVENTS if f"  {e} " not in report] == [], report
    # The crash's fencing evidence, from a survivor's fencing history.
    assert re.search(r"reboot of \S+ successful: delegate=", proc.stdout), proc.stdout[-3000:]
    assert "Tearing down" in proc.stdout and "Done in" in proc.stdout
