"""A short soak in CI (`make soak` runs long ones): a fixed seed, so every run puts the
clusters through the same sequence of events, and the soak's own invariants must all hold.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from lab import REPO

SEED = 7
MINUTES = 3

pytestmark = pytest.mark.cluster  # the soak's clusters


def test_a_short_soak_finds_no_violation() -> None:
    if os.geteuid() != 0 or not all(shutil.which(p) for p in ("corosync", "pacemakerd", "crm",
                                                               "haproxy")):
        pytest.skip("needs root, corosync, pacemaker, crmsh and haproxy")
    result = subprocess.run([sys.executable, "-m", "soak.soak", "--minutes", str(MINUTES),
                             "--seed", str(SEED)], cwd=REPO, capture_output=True, text=True,
                            timeout=MINUTES * 60 + 600)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0 and " 0 violations" in last, result.stdout[-6000:] + result.stderr[-3000:]
