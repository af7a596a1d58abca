"""Running the lab's commands: text output captured, a failure raised as ClusterError with
the command's own message, so a broken step says what broke."""
from __future__ import annotations

import subprocess


class ClusterError(Exception):
    """A lab command failed or the cluster did not reach a state in time."""


def run(argv: list[str], *, check: bool = True, input: str | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv, capturing text; a failure raises ClusterError with the command's stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout,
                          env=env, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc
