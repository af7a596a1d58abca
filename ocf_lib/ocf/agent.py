"""An OCF resource agent: parameter and action declarations, then dispatch.

    agent = Agent("Dummy", version="1.0", shortdesc="...", longdesc="...")
    state = agent.param("state", STRING, default="...", shortdesc="...")

    @agent.action("start", timeout=20)
    def start(cfg: Config) -> int: ...

    agent.run()

`run()` reads the action from argv and the parameters from the environment, answers
`meta-data` and `usage` itself, and turns every outcome into an exit code Pacemaker can act
on: an `OcfError` leaves with its code and a one-line exit reason on stderr; any other
exception leaves with OCF_ERR_GENERIC and a one-line reason, its traceback going to the debug
log only. validate-all, start and reload warn of each OCF_RESKEY_<name> that is no declared
parameter (a typo would otherwise be ignored without a word). With trace_ra=1 (`crm resource
trace`) the action runs under ocf_lib.ocf.trace, which writes a trace where ocf-shellfuncs would.
"""

import os
import sys
import time

from ocf_lib.ocf.codes import OCF, OcfError
from ocf_lib.ocf.log import Logger
from ocf_lib.ocf.params import BOOLEAN, INTEGER, STRING, TIME, Param, ParamError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.ocf.state import StateDir

__all__ = ["Agent", "Config", "OCF", "OcfError", "STRING", "INTEGER", "BOOLEAN", "TIME"]

# Actions answered without parameters, and the ones that must not demand required
# parameters: stop must succeed on a resource that could never have started.
_LENIENT_ACTIONS = ("stop", "meta-data", "usage", "help")
# The actions of these agents that change the node: only root may run them (Pacemaker
# always runs agents as root; anyone else gets ERR_PERM and a reason instead of a half-done
# change). An agent that implements another such action (promote, migrate_to...) adds it.
_ROOT_ACTIONS = ("start", "stop", "reload")
# A safety margin kept before Pacemaker's own timeout kills the agent.
_DEADLINE_MARGIN = 0.2
# Every agent of this project is ocf:kuth:<name>.
PROVIDER = "kuth"
# The actions that warn about OCF_RESKEY_* names the agent does not declare: where a
# configuration is applied or checked; never monitor or stop (every few seconds, and in the
# log each time).
_CHECKED_ACTIONS = ("validate-all", "start", "reload")
# OCF_RESKEY_* names that are no parameters yet are expected: Pacemaker's CRM_meta_* and
# crm_feature_set, and what resource-agents' ocf-shellfuncs reads (OCF_CHECK_LEVEL, and
# trace_ra and trace_dir, which `crm resource trace` sets and ocf_lib.ocf.trace honours).
_META_PREFIX = "OCF_RESKEY_CRM_meta_"
_NOT_PARAMETERS = ("crm_feature_set", "OCF_CHECK_LEVEL", "trace_ra", "trace_dir")


class Config:
    """The parsed parameters of one run (as attributes) and its OCF environment."""

    def __init__(self, values: dict[str, object], env: "OcfEnv", log: Logger) -> None:
        self.__dict__.update(values)
        self.env = env
        self.log = log


class OcfEnv:
    """What Pacemaker tells the agent about this run besides the parameters."""

    def __init__(self, agent: str, action: str, depths: tuple[int, ...]) -> None:
        environ = os.environ
        self.action = action
        self.started = time.monotonic()
        self.instance = environ.get("OCF_RESOURCE_INSTANCE", "")
        self.interval_ms = _int_env("OCF_RESKEY_CRM_meta_interval", 0)
        self.timeout_ms = _int_env("OCF_RESKEY_CRM_meta_timeout", 20000)
        # A monitor without an interval is a probe too, as for resource-agents'
        # ocf_is_probe: Pacemaker 2.1.5 runs the probes after `crm resource refresh` so.
        self.is_probe = (action == "monitor"
                         and environ.get("OCF_RESKEY_CRM_meta_interval", "0") == "0")
        self.check_level = _supported_depth(_int_env("OCF_CHECK_LEVEL", 0), depths)
        # This node's name: set only when Pacemaker runs the agent (not by hand, nor by
        # ocf-tester), so also the sign that there is a cluster to report to.
        self.node = environ.get("OCF_RESKEY_CRM_meta_on_node", "")
        self.clone = environ.get("OCF_RESKEY_CRM_meta_clone")
        self.clone_max = _int_env("OCF_RESKEY_CRM_meta_clone_max", 1)
        self.agent = agent

    @property
    def deadline(self) -> float:
        """time.monotonic() by which the action must be done to beat Pacemaker's timeout."""
        return self.started + max(self.timeout_ms / 1000 - _DEADLINE_MARGIN, 0.5)

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(self.deadline - time.monotonic(), 0.0)

    def state(self) -> "StateDir":
        from ocf_lib.ocf.state import StateDir
        return StateDir(self.agent, self.instance)


def _int_env(key: str, default: int) -> int:
    """A non-negative integer from the environment, default when absent or malformed. At
    most 18 digits: int() refuses over 4300 and a float of the timeout overflows sooner."""
    text = os.environ.get(key, "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else default


def _supported_depth(requested: int, depths: tuple[int, ...]) -> int:
    """OCF_CHECK_LEVEL falls back to the deepest implemented level not above the request."""
    return max((d for d in depths if d <= requested), default=0)


def exit_now(code: int) -> None:
    """End the agent with code once stdout and stderr are out, skipping the interpreter's
    teardown (freeing every module, object by object): an action leaves nothing that
    needs it (the log goes out unbuffered, helpers are processes of their own), and every
    run, each monitor and each start and stop of a failover, ends 1.5-2 ms sooner."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
            pass
    os._exit(code)


class Agent:
    """The declarations of one resource agent and the dispatch of its actions."""

    def __init__(self, name: str, *, version: str, shortdesc: str, longdesc: str) -> None:
        self.name = name
        self.version = version
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.params: list[Param] = []
        self.handlers: dict[str, object] = {}
        self.specs: list[tuple[str, dict[str, int]]] = []
        self.locked: set[str] = set()
        self.log = Logger(name)

    def param(self, name: str, kind: str, **kwargs: object) -> Param:
        """Declare a parameter (see `Param`); the order of declaration is the meta-data's."""
        if name in ("env", "log") or any(p.name == name for p in self.params):
            raise ValueError(f"parameter name {name!r} is reserved or already declared")
        param = Param(name, kind, **kwargs)  # type: ignore[arg-type]
        self.params.append(param)
        return param

    def action(self, name: str, *, timeout: int, aliases: tuple[str, ...] = (),
               locked: bool = False, **advertised: int):
        """Register the decorated function as the handler of `name` (and its aliases), and
        advertise it in the meta-data with its default timeout (seconds) and any `interval`
        or `depth`. Call `advertise` for more meta-data entries of the same action.
        `locked` runs the handler under the resource's lock (see `StateDir.lock`)."""
        def register(func):
            for action_name in (name, *aliases):
                self.handlers[action_name] = func
                if locked:
                    self.locked.add(action_name)
            self.specs.append((name, {"timeout": timeout, **advertised}))
            return func
        return register

    def advertise(self, name: str, *, timeout: int, **advertised: int) -> None:
        """Another meta-data entry for an action: a second monitor depth, say."""
        self.specs.append((name, {"timeout": timeout, **advertised}))

    # -- running ---------------------------------------------------------------------------

    def run(self, argv: list[str] | None = None) -> None:
        """Run the action named on the command line and exit with its OCF code (exit_now)."""
        argv = sys.argv if argv is None else argv
        action = argv[1] if len(argv) == 2 else ""
        if os.environ.get("OCF_TRACE_RA") or os.environ.get("OCF_RESKEY_trace_ra"):
            from ocf_lib.ocf.trace import traced  # only then: untraced, 2 lookups
            exit_now(traced(self.log, argv[0], action, self.dispatch))
        exit_now(self.dispatch(action))

    def dispatch(self, action: str) -> int:
        if action == "meta-data":
            sys.stdout.write(self.metadata())
            return OCF.SUCCESS
        if action in ("usage", "help"):
            sys.stdout.write(self.usage())
            return OCF.SUCCESS
        handler = self.handlers.get(action)
        if handler is None:
            sys.stderr.write(self.usage())
            return self.exit_reason(OCF.ERR_UNIMPLEMENTED,
                                    f"unknown action {action!r}" if action else "no action given")
        env = OcfEnv(self.name, action, self._monitor_depths())
        try:
            if action in _ROOT_ACTIONS and os.geteuid() != 0:
                raise OcfError(OCF.ERR_PERM, f"{action} changes the node and needs root; it "
                                             f"runs as uid {os.geteuid()}")
            cfg = self._config(env)
            if cfg is None:
                return self._without_required(env)
            if action in self.locked:
                code = self._run_locked(handler, cfg)
            else:
                code = handler(cfg)  # type: ignore[operator]
        except OcfError as err:
            return self.exit_reason(err.code, err.reason)
        except Exception as err:  # noqa: BLE001 - an agent must never die with a traceback
            from ocf_lib.adapters.command import CommandNotFound
            if isinstance(err, CommandNotFound):
                return self.exit_reason(OCF.ERR_INSTALLED,
                                        f"{err.program} is not installed on this node")
            import traceback
            self.log.debug_text(traceback.format_exc())
            return self.exit_reason(OCF.ERR_GENERIC, f"{action} failed unexpectedly: "
                                                     f"{type(err).__name__}: {err}")
        self.log.debug(f"{action} -> {code}")
        return int(code)

    def _config(self, env: OcfEnv) -> Config | None:
        """The parsed parameters, None when a required one is missing (the caller decides
        what that means for the action). A bad value is ERR_CONFIGURED, except on stop and
        probes, which fall back to the default so that they can still tell the truth."""
        if env.action in _CHECKED_ACTIONS:  # first: an unknown name may explain a bad value
            self._warn_unknown()
        values: dict[str, object] = {}
        lenient = env.action in _LENIENT_ACTIONS or env.is_probe
        missing = False
        for param in self.params:
            raw = param.raw(os.environ)
            try:
                values[param.name] = param.parse(raw)
            except ParamError as err:
                if not lenient:
                    raise OcfError(OCF.ERR_CONFIGURED, str(err)) from None
                self.log.warning(f"{err}; {env.action} uses the default")
                values[param.name] = param.default
            if param.required and values[param.name] is None:
                missing = True
        if missing and env.action not in ("stop",) and not env.is_probe:
            names = [p.name for p in self.params if p.required and values[p.name] is None]
            raise OcfError(OCF.ERR_CONFIGURED,
                           f"required parameter {', '.join(names)} is not set")
        return None if missing else Config(values, env, self.log)

    def _warn_unknown(self) -> None:
        """One warning per OCF_RESKEY_<name> that is no declared parameter: a typo (`cidr=`
        for cidr_netmask) or a parameter of another agent would otherwise be ignored without
        a word, and the resource run with the default the operator meant to change."""
        declared = {param.env_key for param in self.params}
        declared.update(f"OCF_RESKEY_{name}" for name in _NOT_PARAMETERS)
        agent = f"ocf:{PROVIDER}:{self.name}"
        for key in sorted(os.environ):
            if (key.startswith("OCF_RESKEY_") and key not in declared
                    and not key.startswith(_META_PREFIX)):
                name = key[len("OCF_RESKEY_"):]
                shown = name if name.isprintable() else repr(name)  # the log's line is one
                self.log.warning(f"parameter {shown} is not a parameter of {agent} and is "
                                 f"ignored; remove it (crm ra info {agent} lists them)")

    def _run_locked(self, handler: object, cfg: Config) -> int:
        """Run handler holding the resource lock. A stop that cannot take the lock (state
        directory unusable) goes on without it: a failed stop would fence the node."""
        from ocf_lib.ocf.state import StateError
        try:
            lock = cfg.env.state().lock(cfg.env.deadline)
            lock.__enter__()
        except StateError as err:
            if cfg.env.action != "stop":
                raise OcfError(OCF.ERR_GENERIC, str(err)) from None
            self.log.warning(f"{err}; stopping without the lock")
            return handler(cfg)  # type: ignore[operator]
        try:
            return handler(cfg)  # type: ignore[operator]
        finally:
            lock.__exit__()

    def _without_required(self, env: OcfEnv) -> int:
        """A stop or a probe without the required parameters: nothing of this resource can be
        running, since it could never have started."""
        self.log.info(f"{env.action}: required parameters are not set; nothing can be running")
        return OCF.SUCCESS if env.action == "stop" else OCF.NOT_RUNNING

    def exit_reason(self, code: int, reason: str) -> int:
        """Print the one-line exit reason Pacemaker shows in crm_mon, log it, return code."""
        line = " ".join(reason.split())
        prefix = os.environ.get("OCF_EXIT_REASON_PREFIX") or "ocf-exit-reason:"
        try:
            sys.stderr.write(f"{prefix}{line}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        self.log.log("error" if code not in (OCF.SUCCESS, OCF.NOT_RUNNING) else "info", line,
                     to_stderr=False)
        return code

    # -- documents ---------------------------------------------------------------------------

    def _monitor_depths(self) -> tuple[int, ...]:
        return tuple(spec.get("depth", 0) for name, spec in self.specs if name == "monitor")

    def metadata(self) -> str:
        from ocf_lib.ocf.metadata import ActionSpec, render
        actions = [ActionSpec(name, **spec) for name, spec in self.specs]
        shown = {name for name, _ in self.specs}
        actions += [ActionSpec(name, timeout=5) for name in ("meta-data", "usage")
                    if name not in shown]
        return render(self.name, self.version, self.shortdesc, self.longdesc, self.params,
                      actions)

    def usage(self) -> str:
        names = sorted({*self.handlers, "meta-data", "usage"})
        return f"usage: {self.name} {{{'|'.join(names)}}}\n"
