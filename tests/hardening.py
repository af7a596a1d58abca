"""Helpers of the hardening tests (fuzzing, concurrency, faults, privileges).

What they share: a snapshot of everything an agent could change on a test node
(addresses, links, routes, processes, state files), a PATH whose first directory holds
fake shells that record any call, the hypothesis settings that keep CI repeatable, and a
tally of the cases run, printed at the end of each module so the figures can be quoted.

CI runs a fixed, derandomized set of examples. To run more by hand:

    KUTH_FUZZ_SCALE=20 /usr/bin/python3 -m pytest -q tests/test_fuzz_ipaddr2.py

multiplies every `max_examples` by 20 and draws new random examples on each run
(KUTH_FUZZ_SEED=N repeats one of them).
"""
from __future__ import annotations

import collections
import os
import stat
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lab.netns import Netns
from lab.processes import alive
from lab.processes import name as process_name
from ocf_lib.helpers.refuser import REFUSER

SCALE = int(os.environ.get("KUTH_FUZZ_SCALE", "1") or 1)
SEED = os.environ.get("KUTH_FUZZ_SEED")
SHELLS = ("sh", "bash", "dash", "ash", "zsh", "ksh", "busybox")
PWNED = "/tmp/kuth-fuzz-pwned"
BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# Values that broke agents elsewhere: shell metacharacters, option-looking words, control
# characters, paths, huge numbers and strings, Unicode oddities, booleans and keywords.
NASTY = ["", " ", "-f", "--help", "-", "--", "-d", "-h", f"$(touch {PWNED})",
         f"`touch {PWNED}`", f"; touch {PWNED}", f"| touch {PWNED}", f"&& touch {PWNED}",
         "\n", "a\nb", "\t", "\r", "\x1b[31m", "\x7f", "'", '"', "\\", "*", "?", "~", "..",
         "../../etc/passwd", "/", "/dev/zero", "/proc/self/environ", "%s%n%x", "{}", "${IFS}",
         "\u202e", "\u00e9\u4e2d", "\ufeff", "\u0660", "0", "-1", "+1", "1e9", "0x10", "00",
         "9" * 30, "9" * 5000, "a" * 20000, "true", "yes", "no", "forever", "+", "lo", "lan0",
         "lan0:1", "eth9", "255.255.255.255", "0.0.0.0", "::",
         "::1", "224.0.0.1", "ff02::1", "::ffff:198.18.0.10", "fe80::1", "198.18.0.10/24",
         "198.18.0.10%lan0", " 198.18.0.10", "198.018.0.10"]

# Environment keys Pacemaker, a shell or Python might read. The exit-reason prefix, PATH,
# HA_RSCTMP and the log file names stay fixed: the tests parse, sandbox or snapshot them.
EXTRA_KEYS = ["OCF_CHECK_LEVEL", "OCF_RESKEY_CRM_meta_interval", "OCF_RESKEY_CRM_meta_timeout",
              "OCF_RESKEY_CRM_meta_clone", "OCF_RESKEY_CRM_meta_clone_max",
              "OCF_RESKEY_CRM_meta_globally_unique", "OCF_RESKEY_CRM_meta_notify_type",
              "OCF_RESKEY_CRM_meta_on_node", "OCF_RESOURCE_INSTANCE", "OCF_RESOURCE_TYPE",
              "OCF_ROOT", "OCF_TRACE_RA", "HA_debug", "PCMK_debug", "HA_LOGFACILITY",
              "HA_LOGTAG", "LANG", "LC_ALL", "PYTHONPATH", "PYTHONINSPECT", "PYTHONSTARTUP",
              "PYTHONHOME", "IFS", "ENV", "BASH_ENV", "TMPDIR", "HOME", "OCF_RESKEY_unknown"]


def fuzz_settings(max_examples: int) -> settings:
    """Settings for one property test: CI examples are fixed (derandomize) unless
    KUTH_FUZZ_SCALE or KUTH_FUZZ_SEED asks for a longer or another run."""
    return settings(max_examples=max_examples * SCALE, deadline=None, database=None,
                    derandomize=SCALE == 1 and SEED is None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])


def raw_values() -> st.SearchStrategy:
    """Any value an environment variable can hold: text of any script, bytes that are
    not UTF-8, and the known troublemakers above."""
    return st.one_of(
        st.sampled_from(NASTY),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                max_size=40),
        st.binary(max_size=24).filter(lambda b: b"\0" not in b))


def params_strategy(cores: list[dict[str, str]], plausible: dict[str, list[str]],
                    odd: dict[str, list[str]], mutations: int = 2) -> st.SearchStrategy:
    """A dict of OCF_RESKEY_* values (names without the prefix): a working core (the
    parameters that must agree with each other), the others unset or plausible, then up to
    `mutations` of them (or unknown names) replaced by an odd value for that parameter or
    by anything at all. Most examples thus get past parsing and reach deep code."""
    base = st.tuples(st.sampled_from(cores),
                     st.fixed_dictionaries({name: st.one_of(st.none(), st.sampled_from(values))
                                            for name, values in plausible.items()}))
    names = sorted({*plausible, *odd, *(k for core in cores for k in core)})
    mutated = st.dictionaries(
        st.one_of(st.sampled_from(names), st.from_regex(r"\A[a-z_]{1,12}\Z", fullmatch=True)),
        raw_values(), max_size=mutations)
    odd_ones = st.dictionaries(st.sampled_from(sorted(odd)), st.none(), max_size=mutations) \
        .flatmap(lambda keys: st.fixed_dictionaries({k: st.sampled_from(odd[k]) for k in keys}))
    return st.tuples(base, odd_ones, mutated).map(
        lambda d: {k: v for k, v in {**d[0][0], **d[0][1], **d[1], **d[2]}.items()
                   if v is not None})


def extra_env_strategy() -> st.SearchStrategy:
    """Extra environment: some known keys with any value, and arbitrary names."""
    names = st.one_of(st.sampled_from(EXTRA_KEYS),
                      st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,20}\Z", fullmatch=True)
                      .filter(lambda k: k not in ("PATH", "HA_RSCTMP", "OCF_EXIT_REASON_PREFIX")
                              and not k.startswith(("HA_LOG", "HA_DEBUG", "PCMK_log",
                                                    "PCMK_debug", "OCF_RESKEY_"))))
    return st.dictionaries(names, raw_values(), max_size=4)


# -- nothing through a shell -------------------------------------------------------------------

def fake_shells(directory: Path) -> tuple[str, Path]:
    """A PATH whose first directory holds fake shells (Python scripts, so that running one
    needs no shell) that append their argv to a log; returns (PATH, log)."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "shell-calls.log"
    for name in SHELLS:
        fake = directory / name
        fake.write_text("#!/usr/bin/python3 -I\nimport sys\n"
                        f"open({str(log)!r}, 'a').write(repr(sys.argv) + '\\n')\n"
                        "sys.exit(127)\n")
        fake.chmod(0o755)
    os.chmod(directory, 0o755)
    return f"{directory}:{BASE_PATH}", log


def shell_calls(log: Path) -> str:
    """What the fake shells recorded (empty when nothing ran through a shell)."""
    return log.read_text() if log.exists() else ""


def check_outcome(out: object, allowed: set[int], shell_log: Path, label: str) -> None:
    """The invariants of every run: an allowed code, no traceback, a one-line exit reason
    for every error, nothing run through a shell, no injected command executed."""
    assert out.rc in allowed, (label, out)  # type: ignore[attr-defined]
    assert "Traceback" not in out.stderr, (label, out)  # type: ignore[attr-defined]
    if out.rc not in (0, 7):  # type: ignore[attr-defined]
        assert out.reason and out.reason.strip(), (label, out)  # type: ignore[attr-defined]
    assert shell_calls(shell_log) == "", (label, shell_calls(shell_log))
    assert not os.path.exists(PWNED), label


# -- snapshots ---------------------------------------------------------------------------------

def network_state(ns: Netns) -> str:
    """Addresses, links and routes (both families, every table) of a namespace, once the
    kernel's own link-local addresses finished their DAD: that ends a second or two after a
    link comes up (adding a local route), whatever an agent does."""
    deadline = time.monotonic() + 5
    while (ns.ip("-o", "-6", "addr", "show", "scope", "link", "tentative", check=False)
           and time.monotonic() < deadline):
        time.sleep(0.1)
    return "\n".join(ns.ip(*args, check=False) for args in (
        ("-o", "addr", "show"), ("-o", "link", "show"),
        ("-o", "-4", "route", "show", "table", "all"),
        ("-o", "-6", "route", "show", "table", "all")))


def tree_state(root: str, ignore_suffixes: tuple[str, ...] = (".lock", ".refuser")
               ) -> dict[str, tuple]:
    """Every entry under root: type, mode, owner and (for files) content; lock files are
    left out (an action may leave its empty lock behind, see `check_lock_files`), and so
    is the record of the refuser a stop leaves (see refusers)."""
    found: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if name.endswith(ignore_suffixes):
                continue
            st_ = os.lstat(path)
            content = b""
            if stat.S_ISREG(st_.st_mode):
                with open(path, "rb") as f:
                    content = f.read(4096)
            found[os.path.relpath(path, root)] = (stat.S_IFMT(st_.st_mode),
                                                  st_.st_mode & 0o7777, st_.st_uid, content)
    return found


def check_lock_files(root: str) -> None:
    """Lock files are regular, empty, root's and private."""
    for name in os.listdir(root):
        if name.endswith(".lock"):
            st_ = os.lstat(os.path.join(root, name))
            assert stat.S_ISREG(st_.st_mode) and st_.st_mode & 0o777 == 0o600, name
            assert st_.st_uid == 0 and st_.st_size == 0, name


def processes(ns: Netns) -> list[int]:
    """Live processes in the namespace (zombies excluded: init reaps them), but refusers:
    a stop leaves one on purpose (see refusers)."""
    return sorted(pid for pid in ns.pids() if alive(pid) and process_name(pid) != REFUSER)


def refusers(ns: Netns) -> list[int]:
    """The live refusers in the namespace (ocf_lib.helpers.refuser.REFUSER): what IPaddr2's stop
    leaves behind for a few seconds, by design. They end by themselves; start ends its
    resource's before adding the address, and any ends once its address is on the node
    again (tests/test_refuse.py). With one resource, none runs while its address is served."""
    return sorted(pid for pid in ns.pids() if alive(pid) and process_name(pid) == REFUSER)


def settled_processes(ns: Netns, expected: list[int], timeout: float = 2.0) -> list[int]:
    """The processes in ns once they equal expected, or after timeout: a process killed by
    stop may take a moment to disappear."""
    deadline = time.monotonic() + timeout
    while True:
        found = processes(ns)
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


# -- figures -----------------------------------------------------------------------------------

class Tally:
    """Cases run, per label (an action, a fault), for the closing figures."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.counts: collections.Counter[str] = collections.Counter()
        self.started: float | None = None

    def add(self, label: str, n: int = 1) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.counts[label] += n

    def report(self) -> str:
        took = time.monotonic() - (self.started or time.monotonic())
        lines = [f"{self.title}: {sum(self.counts.values())} cases in {took:.0f} s"]
        lines += [f"  {label:<40} {n:>6}" for label, n in sorted(self.counts.items())]
        return "\n".join(lines)


def print_tally(config: object, tally: Tally) -> None:
    """Print the tally past pytest's output capture, so it shows in CI logs; also append
    it to $KUTH_FIGURES when set."""
    text = tally.report()
    capture = config.pluginmanager.getplugin("capturemanager")  # type: ignore[attr-defined]
    with capture.global_and_fixture_disabled():
        print(f"\n{text}")
    target = os.environ.get("KUTH_FIGURES")
    if target:
        with open(target, "a") as f:
            f.write(text + "\n")
