"""A step-by-step trace of one action for `crm resource trace`, as ocf-shellfuncs' `set -x`.

`crm resource trace <rsc> [<op> [<interval>]]` adds trace_ra=1 (and trace_dir=, when given)
to the resource's operations, and resource-agents' ocf-shellfuncs, which every shell agent
sources, then writes a `set -x` trace of each such action. This does the same for our agents,
by the same rules, so that the files are where `crm report`, `crm resource untrace` and
operators look for them:
- tracing is on when OCF_TRACE_RA, or else OCF_RESKEY_trace_ra, is true (read as
  ocf_lib.ocf.params reads booleans; a value neither true nor false is a warning);
- the trace goes to OCF_TRACE_FILE when that is a descriptor 3-9 or an absolute path, else to
  $OCF_RESKEY_trace_dir/<type>/<instance>.<action>.<YYYY-MM-DD.HH:MM:SS>, trace_dir being
  $HA_VARLIB/trace_ra by default and HA_VARLIB /var/lib/heartbeat, <type> OCF_RESOURCE_TYPE
  or else the executable's name; its directory is made as `mkdir -p` makes it;
- without such a file (stdin is a terminal: someone runs the agent by hand; or no type or
  instance is known) the trace goes to stderr, as set -x's does.
Two differences, both for safety: the file is appended to, not truncated (an action that
re-runs itself in a network namespace within the same second would otherwise wipe its first
half), and a symlink in its place is refused.

What a trace holds: the environment, sorted (what ocf_start_trace's `printenv | sort` shows
first), then each line of the project's own code (agents/ and ocf_lib/, not the standard
library) as it runs, with calls, return values and exceptions, indented by call depth, and
the exit code last. Processes the agent starts or forks are not traced.

Tracing never fails an action: a destination that cannot be written is a warning in the log
and the action runs untraced, as in ocf-shellfuncs, and a write that fails later ends the
trace there with a warning. Agent.run imports this module only when one of the two variables
is set: an untraced action pays two environment lookups and nothing else.
"""

import os
import reprlib
import sys
import time

from ocf_lib.ocf.params import ParamError, parse_boolean

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and collections cost milliseconds; a trace is slow enough
    from collections.abc import Callable
    from types import FrameType
    from typing import TextIO

    from ocf_lib.ocf.log import Logger

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The project's own code: what the trace follows line by line.
_OWN = tuple(os.path.join(_ROOT, part) + os.sep for part in ("agents", "ocf_lib"))
_HA_VARLIB = "/var/lib/heartbeat"  # ocf-directories' default
_FD_NAMES = "3456789"  # OCF_TRACE_FILE as a descriptor: one digit, as ocf-shellfuncs' [3-9]


def traced(log: "Logger", script: str, action: str, run: "Callable[[str], int]") -> int:
    """run(action) (the agent's dispatch), traced when the environment asks for it; its exit
    code, whatever happens to the trace. script is the executable's path (argv[0])."""
    if not _requested(log):
        return run(action)
    destination = _destination(script, action, log)
    out = _open(destination, action, log)
    if out is None:
        return run(action)
    tracer = Tracer(out, log, "stderr" if destination is None else str(destination))
    tracer.header(action)
    sys.settrace(tracer.on_call)
    try:
        code = run(action)
    finally:
        sys.settrace(None)
    tracer.finish(code)
    return code


def _requested(log: "Logger") -> bool:
    """ocf-shellfuncs' `: ${OCF_TRACE_RA:=$OCF_RESKEY_trace_ra}; ocf_is_true $OCF_TRACE_RA`."""
    name = "OCF_TRACE_RA" if os.environ.get("OCF_TRACE_RA") else "OCF_RESKEY_trace_ra"
    try:
        return parse_boolean(name, os.environ.get(name, ""))
    except ParamError as err:
        log.warning(f"{err}; the action is not traced")
        return False


def _destination(script: str, action: str, log: "Logger") -> int | str | None:
    """Where ocf_start_trace sends the trace: a descriptor, a path, or None for stderr."""
    given = os.environ.get("OCF_TRACE_FILE", "")
    if len(given) == 1 and given in _FD_NAMES:
        return int(given)
    if given.startswith("/") and "/" in given[1:]:
        return given
    if given:
        log.warning("OCF_TRACE_FILE must be set to either FD (open for writing) or absolute "
                    "file path")
    return _default_path(script, action)


def _default_path(script: str, action: str) -> str | None:
    """ocf_default_trace_dest: <trace_dir>/<type>/<instance>.<action>.<date.time>, None when
    stdin is a terminal or the type, instance or action is unknown."""
    kind = os.environ.get("OCF_RESOURCE_TYPE") or os.path.basename(script)
    instance = _instance(action)
    if os.isatty(0) or not (kind and instance and action):
        return None
    trace_dir = (os.environ.get("OCF_RESKEY_trace_dir")
                 or f"{os.environ.get('HA_VARLIB') or _HA_VARLIB}/trace_ra")
    return f"{trace_dir}/{kind}/{instance}.{action}.{time.strftime('%Y-%m-%d.%H:%M:%S')}"


def _instance(action: str) -> str:
    """OCF_RESOURCE_INSTANCE, or what ocf-shellfuncs stands in for it: RESOURCE_ID for
    meta-data, "default" when no OCF manager runs the agent (no OCF_RA_VERSION_MAJOR)."""
    instance = os.environ.get("OCF_RESOURCE_INSTANCE", "")
    if not instance and action == "meta-data":
        return "RESOURCE_ID"
    if not instance and not os.environ.get("OCF_RA_VERSION_MAJOR"):
        return "default"
    return instance


def _open(destination: int | str | None, action: str, log: "Logger") -> "TextIO | None":
    """The trace's stream, line-buffered (a kill at the timeout keeps all up to it); None,
    after a warning, when it cannot be had."""
    if destination is None:
        return sys.stderr
    try:
        if isinstance(destination, int):
            os.fstat(destination)  # open, as ocf-shellfuncs demands of the caller
            return open(destination, "w", buffering=1, encoding="utf-8", errors="replace",
                        closefd=False)
        os.makedirs(os.path.dirname(destination), exist_ok=True)  # mkdir -p: mode 0777 & ~umask
        fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o666)  # touch's mode, as ocf-shellfuncs' file has
        return open(fd, "w", buffering=1, encoding="utf-8", errors="replace")
    except OSError as err:
        log.warning(f"trace file {destination} not writable ({err.strerror}), trace not going "
                    f"to happen; {action} runs untraced")
        return None


class Tracer:
    """The sys.settrace functions: each event in a frame of the project's code, one line."""

    def __init__(self, out: "TextIO", log: "Logger", name: str) -> None:
        self.out = out
        self.log = log
        self.name = name
        self.on = True
        self.depth = 0
        self.raising: "FrameType | None" = None  # the frame an exception is leaving, if any
        self.shown: dict[str, str | None] = {}  # co_filename: its path as shown, None: not ours
        self.sources: dict[str, list[str]] = {}
        self.repr = reprlib.Repr()
        self.repr.maxstring = self.repr.maxother = 80
        os.register_at_fork(after_in_child=self.stop)  # a forked helper is not traced

    def header(self, action: str) -> None:
        environment = "".join(f"{key}={_one_line(value)}\n"
                              for key, value in sorted(os.environ.items()))
        self.write(f"# {os.environ.get('OCF_RESOURCE_TYPE', '')} {action} of "
                   f"{os.environ.get('OCF_RESOURCE_INSTANCE', '')}, pid {os.getpid()}, "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n# environment (printenv | sort):\n"
                   f"{environment}# each line of agents/ and ocf_lib/ run: time, depth, "
                   "file:line, function, source\n")

    def finish(self, code: int) -> None:
        self.write(f"+ {_stamp()} exit {code}\n")
        if self.on and self.out is not sys.stderr:
            try:
                self.out.close()
            except OSError:  # its lines are out already (line-buffered)
                pass

    def stop(self) -> None:
        """Trace no more (a forked child, or a failed write)."""
        self.on = False
        sys.settrace(None)

    def write(self, text: str) -> None:
        """text to the trace; a failure ends the trace, never the action."""
        if not self.on:
            return
        try:
            self.out.write(text)
        except (OSError, ValueError) as err:
            self.stop()
            self.log.warning(f"trace to {self.name} stopped: {err}; the action goes on")

    def on_call(self, frame: "FrameType", event: str, arg: object) -> object:
        """The global trace function: a new frame; followed when it runs the project's code."""
        if not self.on or self._where(frame) is None:
            return None
        return self.on_event(frame, event, arg)

    def on_event(self, frame: "FrameType", event: str, arg: object) -> object:
        """The local trace function of a followed frame: call, line, return or exception."""
        if not self.on:
            return None
        try:
            self.write(self._describe(frame, event, arg))
        except Exception as err:  # noqa: BLE001 - an error here would surface in the action
            self.stop()
            self.log.warning(f"trace to {self.name} stopped: {type(err).__name__}: {err}")
        return self.on_event

    def _describe(self, frame: "FrameType", event: str, arg: object) -> str:
        """One line: time, indentation by call depth, file:line, then what happened."""
        name = frame.f_code.co_name
        depth = self.depth
        if event == "call":
            self.depth += 1
            text = self._call(frame)
        elif event == "return":
            self.depth = depth = depth - 1
            leaving, self.raising = self.raising is frame, None
            text = f"{name} leaves with the exception" if leaving else \
                f"{name} returns {self._repr(arg)}"
        elif event == "exception":
            depth -= 1
            self.raising, error = frame, arg[1]  # type: ignore[index]
            text = f"{name}: ! {type(error).__name__}: {self._repr(str(error))}"
        else:  # a line
            depth -= 1
            if self.raising is frame:  # the exception was caught here
                self.raising = None
            text = f"{name}: {self._source(frame.f_code.co_filename, frame.f_lineno)}"
        return f"+ {_stamp()} {'  ' * depth}{self._where(frame)}:{frame.f_lineno} {text}\n"

    def _call(self, frame: "FrameType") -> str:
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        values = (f"{name}={self._repr(frame.f_locals.get(name))}" for name in names)
        return f"call {code.co_name}({', '.join(values)})"

    def _where(self, frame: "FrameType") -> str | None:
        """The frame's file as the trace shows it (relative to the project), None when it is
        not the project's code (or this module's)."""
        filename = frame.f_code.co_filename
        if filename not in self.shown:
            path = os.path.abspath(filename)
            ours = path.startswith(_OWN) and path != os.path.abspath(__file__)
            self.shown[filename] = os.path.relpath(path, _ROOT) if ours else None
        return self.shown[filename]

    def _source(self, filename: str, lineno: int) -> str:
        if filename not in self.sources:
            try:
                with open(filename, encoding="utf-8", errors="replace") as source:
                    self.sources[filename] = source.read().splitlines()
            except OSError:
                self.sources[filename] = []
        lines = self.sources[filename]
        return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else "?"

    def _repr(self, value: object) -> str:
        """A short one-line repr; a repr that fails is no failure of the action."""
        try:
            return _one_line(self.repr.repr(value))
        except Exception:  # noqa: BLE001 - any object's __repr__ may raise
            return "<unprintable>"


def _stamp() -> str:
    """The time of day to the millisecond (set -x's PS4 in ocf-shellfuncs shows seconds)."""
    now = time.time()
    return f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now * 1000) % 1000:03d}"


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")
