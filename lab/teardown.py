"""What makes the lab leave nothing behind, even when its process is killed with SIGKILL.

Every namespace of a harness is named PREFIX<role> with the prefix from `harness_prefix`
(hapx-PID-N-: the owning process and which of its clusters). `start_reaper` starts a process
in its own session that waits for EOF on a pipe only the harness holds: when the harness
closes it at teardown, or dies in any way, the reaper kills every process inside those
namespaces and deletes them (their mount namespaces and tmpfs go with the last process),
and the harness's directory (lab_dir: its nodes' disks). `reap_stale` removes what a harness left whose process and reaper are both gone.

Run as `python3 -m lab.teardown PREFIX` (from the checkout's root) it is the reaper itself.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from lab import REPO
from lab.command import run
from lab.netns import Netns
from lab.topology import NAME_PREFIX

LAB_ROOT = "/tmp/kuth-lab"  # harness directories: LAB_ROOT/hapx-PID-N


def harness_prefix(pid: int, number: int) -> str:
    """hapx-PID-N-: the process that owns the namespaces, and which of its clusters."""
    return f"{NAME_PREFIX}-{pid}-{number}-"


def lab_dir(prefix: str) -> str:
    """The machine directory of a harness's files (its nodes' disks, its power switch)."""
    return os.path.join(LAB_ROOT, prefix.rstrip("-"))


def reap(prefix: str) -> None:
    """Kill everything inside, and delete, every namespace whose name starts with prefix,
    and the harness directories of that prefix."""
    for name in run(["ip", "netns", "list"]).stdout.split():
        if name.startswith(prefix):
            Netns(name).delete()
    if os.path.isdir(LAB_ROOT):
        for name in os.listdir(LAB_ROOT):
            if f"{name}-".startswith(prefix):
                shutil.rmtree(os.path.join(LAB_ROOT, name), ignore_errors=True)


def reap_stale() -> None:
    """Reap what harnesses whose process is gone (reaper killed as well) left."""
    names = run(["ip", "netns", "list"]).stdout.split()
    if os.path.isdir(LAB_ROOT):
        names += os.listdir(LAB_ROOT)
    for name in names:
        parts = name.split("-")
        if len(parts) > 2 and parts[0] == NAME_PREFIX and parts[1].isdigit():
            if not os.path.exists(f"/proc/{parts[1]}"):
                reap(f"{NAME_PREFIX}-{parts[1]}-")


def start_reaper(prefix: str) -> subprocess.Popen[bytes]:
    """A process in its own session that reaps prefix once our end of its stdin closes: at
    teardown, or when this process dies in any way."""
    return subprocess.Popen([sys.executable, "-S", "-m", "lab.teardown", prefix], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m lab.teardown PREFIX", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # outlive a Ctrl-C of the harness
    sys.stdin.buffer.read()
    reap(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
