"""What the lab asks about a process, through psutil (python3-psutil): its name, its command
line, whether it still lives, how long it has run, whether it has stopped.

The lab, the demo, the soak and the tests ask these questions of processes inside the nodes'
namespaces (found with `ip netns pids`, which psutil cannot do). The agents never import
psutil: its import alone costs about twice a whole monitor (README, "What the agents depend
on"); off the monitor path it spares every caller its own parsing of /proc.
"""
from __future__ import annotations

import time

import psutil


def name(pid: int) -> str:
    """The process's name ('' once it is gone)."""
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return ""


def cmdline(pid: int) -> list[str]:
    """Its command line ([] once it is gone, or for a zombie)."""
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def alive(pid: int) -> bool:
    """It runs: it exists and is no zombie (one that ended and waits for its parent)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def age(pid: int) -> float | None:
    """Seconds since it started; None once it is gone, or for a zombie."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return time.time() - process.create_time()
    except psutil.Error:
        return None


def stopped(pid: int) -> bool:
    """Every thread of it has stopped (SIGSTOP is asynchronous: one thread may still run for
    a moment). False once it is gone."""
    try:
        threads = [t.id for t in psutil.Process(pid).threads()]
        return all(psutil.Process(tid).status() == psutil.STATUS_STOPPED for tid in threads)
    except psutil.Error:
        return False
