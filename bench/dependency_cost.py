"""What psutil, requests and lxml would cost the agents, against a whole `monitor` run.

The design named python3-psutil (processes), python3-requests (HTTP) and python3-lxml (XML);
the agents use none of them (README, "What the agents depend on"). This measures why: the
wall time that `import X` adds to a fresh `/usr/bin/python3 -IS` (how the agents start; with
Debian's dist-packages on the path, which an import of X needs), next to the wall time of one
whole monitor of ocf:kuth:IPaddr2 with its address present, timed the way bench/agent_speed.py
times it (spawned inside the namespace, no `ip netns exec`). Runs alternate between the
variants so that drift of the machine hits all alike; medians are reported, with
`-X importtime`'s own figure for each module as a cross-check.

Run as root from the checkout's root: `python3 -m bench.dependency_cost --runs 200`
(`make bench` runs it too).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.agent_speed import DEFAULT_AGENT, REPO, Agent, Case, Lane
from lab.netns import NetnsPool

MODULES = ("psutil", "requests", "lxml.etree")
DEBIAN_PACKAGES = {"psutil": "python3-psutil", "requests": "python3-requests",
                   "lxml.etree": "python3-lxml"}
DIST_PACKAGES = "/usr/lib/python3/dist-packages"
PYTHON = "/usr/bin/python3"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "dependency_cost.md"


def python_argv(module: str | None) -> list[str]:
    """A fresh interpreter as the agents start it, dist-packages on the path, importing
    module (None: nothing, the baseline)."""
    code = f"import sys; sys.path.append({DIST_PACKAGES!r})" + (f"; import {module}"
                                                                if module else "")
    return [PYTHON, "-IS", "-c", code]


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def self_reported_ms(module: str) -> float:
    """`-X importtime`'s cumulative figure for module itself (microseconds -> ms)."""
    proc = subprocess.run([*python_argv(module)[:2], "-X", "importtime", "-c",
                           python_argv(module)[-1]], capture_output=True, text=True, check=True)
    for line in reversed(proc.stderr.splitlines()):
        fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == module:
            return int(fields[1]) / 1000
    raise RuntimeError(f"no importtime line for {module}")


def measure(runs: int) -> tuple[dict[str, float], dict[str, float], float]:
    """Medians in ms: each variant's interpreter run, the import figures, and one monitor."""
    samples: dict[str, list[float]] = {name: [] for name in ("baseline", *MODULES, "monitor")}
    case = Case("inet", "198.18.0.10", "24")
    pool = NetnsPool()
    with tempfile.TemporaryDirectory(prefix="kuth-depcost-") as work:
        lane = Lane(Agent("ours", DEFAULT_AGENT), pool, f"{work}/state")
        try:
            lane.action(case, "start", 0)
            for round_ in range(runs):
                order = ["baseline", *MODULES, "monitor"]
                for name in order if round_ % 2 == 0 else reversed(order):
                    if name == "monitor":
                        samples[name].append(lane.action(case, "monitor", 0))
                    else:
                        samples[name].append(wall(python_argv(None if name == "baseline"
                                                              else name)))
            lane.action(case, "stop", 0)
        finally:
            lane.close()
            pool.cleanup()
    medians = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    return medians, {m: self_reported_ms(m) for m in MODULES}, medians["monitor"]


def version_of(package: str) -> str:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else "not installed"


def report(runs: int, medians: dict[str, float], importtime: dict[str, float],
           monitor: float) -> str:
    lines = [f"# What psutil, requests and lxml would cost the agents ({runs} runs each)", "",
             f"{datetime.date.today()}, {platform.node()}, Python {platform.python_version()}, "
             f"median wall time; a monitor of ocf:kuth:IPaddr2 (address present) takes "
             f"**{monitor:.1f} ms**; `python3 -IS` alone {medians['baseline']:.1f} ms.", "",
             "| module | Debian package | added to a run | -X importtime | share of a monitor |",
             "|---|---|---|---|---|"]
    for module in MODULES:
        added = medians[module] - medians["baseline"]
        package = DEBIAN_PACKAGES[module]
        lines.append(f"| `{module}` | {package} {version_of(package)} | {added:.1f} ms | "
                     f"{importtime[module]:.1f} ms | {added / monitor:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    missing = [DEBIAN_PACKAGES[m] for m in MODULES
               if version_of(DEBIAN_PACKAGES[m]) == "not installed"]
    if missing:
        print(f"dependency_cost: install {' '.join(missing)} first (make bench does)",
              file=sys.stderr)
        return 1
    text = report(args.runs, *measure(args.runs))
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
