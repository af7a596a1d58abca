"""ocf:kuth:haproxy -- HAProxy under Pacemaker, monitored through its runtime API.

The executable Pacemaker runs is agents/haproxy, which imports this module.
"""

from ocf_lib.logic import haproxy_runtime as hx
from ocf_lib.ocf.agent import BOOLEAN, INTEGER, OCF, STRING, TIME, Agent, Config, OcfError

agent = Agent(
    "haproxy", version="1.0",
    shortdesc="HAProxy load balancer",
    longdesc="""Manages an HAProxy instance. Start checks the configuration first, creates the
runtime directories its sockets need, and returns once HAProxy answers on its runtime API with
its listeners bound. Monitor checks that the process recorded for this resource is HAProxy
running this configuration and that it answers `show stat` in time; it publishes the number of
UP servers of every backend as transient node attributes (<resource>-<backend>-up) for location
rules. Reload applies an edited configuration seamlessly (master-worker reload: listening sockets
are handed over, established connections finish on the old worker). HAProxy runs in
master-worker mode whatever the configuration says about `daemon`. A probe that finds the
haproxy an older agent started with this configuration (daemonized, not master-worker: the
usual guide's heartbeat haproxy agent) takes it over without a restart, and the next reload
hands it over to a master-worker haproxy without dropping a connection.""")

agent.param("binpath", STRING, default="/usr/sbin/haproxy",
            shortdesc="HAProxy binary",
            longdesc="Full path of the haproxy executable.")
agent.param("conffile", STRING, default="/etc/haproxy/haproxy.cfg", unique=True,
            shortdesc="Configuration file",
            longdesc="""Full path of the HAProxy configuration. It must be owned by root and not
writable by group or others (root runs HAProxy with it).""")
agent.param("extraconf", STRING, default="",
            shortdesc="Extra command-line arguments",
            longdesc="""Extra arguments for haproxy, split like a shell would split them (quotes
respected) but never run through a shell, e.g. "-f /etc/haproxy/conf.d".""")
agent.param("pidfile", STRING, default="", unique=True,
            shortdesc="PID file",
            longdesc="""Where the master process's pid is kept. Empty (the default):
/run/resource-agents/kuth-haproxy-<resource>.pid, one per resource.""")
agent.param("stats_socket", STRING, default="",
            shortdesc="Runtime API socket used by monitor",
            longdesc="""The unix socket monitor talks to. Empty (the default): the first `stats
socket` of the configuration; when the configuration has none, the agent's own master socket
(/run/resource-agents/kuth-haproxy-<resource>.master.sock), whose `@1` prefix reaches the
current worker.""")
agent.param("stop_grace", TIME, default=0.0,
            shortdesc="Time for established connections on stop",
            longdesc="""How long stop lets established connections finish after HAProxy stops
listening, before it is terminated. 0 (the default): at once; every client is cut and
reconnects, to the new owner once the address is there. Kubernetes clients hold watches for
hours, so a grace is nearly always spent in full: where haproxy stops before the address
moves (haproxy colocated with and ordered after the VIP, the guide's setup), the address
stays here that long while new connections are refused. Where the address has already left
(haproxy cloned on every node, the VIP's reset_connections closing its connections), a grace
of a few seconds lets requests in flight finish. The stop timeout bounds it.""")
agent.param("old_workers_timeout", TIME, default=600.0,
            shortdesc="Longest life of an old worker after a reload",
            longdesc="""A reload starts a new HAProxy worker and leaves the old one serving its
established connections until they end; Kubernetes watches last hours, so old workers would
pile up, one per reload. Monitor ends (SIGTERM) an old worker that has been old this long,
and its clients reconnect to the current worker at once. Default 600 (10 minutes); 0 never
ends them. The node attribute <resource>-old-workers shows how many run.""")
agent.param("min_servers_up", INTEGER, default=0, minimum=0,
            shortdesc="Fail when a backend has fewer UP servers",
            longdesc="""0 (the default): backend health never fails the resource (before the
kube-apiservers exist all servers are DOWN, and moving the address would not help). N > 0: monitor
fails when any backend has fewer than N servers UP.""")
agent.param("watch", BOOLEAN, default=True,
            shortdesc="Report a crash at once",
            longdesc="""true: a watcher process waits for the HAProxy master to exit and, unless
an action of this resource or maintenance explains it, tells Pacemaker at once
(crm_resource --fail), so recovery starts within a fraction of a second instead of at the next
monitor. The monitor remains the safety net. false: only the monitor notices.""")
agent.param("reload_token", STRING, default="",
            shortdesc="Change to reload the configuration",
            longdesc="""Not used by HAProxy. Changing it makes Pacemaker call reload, which applies
an edited configuration without moving the address or dropping connections:
crm resource param <resource> set reload_token "$(date +%s)", or with pcs,
pcs resource update <resource> reload_token="$(date +%s)".""")


# -- helpers shared by the actions ---------------------------------------------------------

def instance(cfg: Config) -> hx.Instance:
    """This resource's haproxy: binary, configuration, pidfile and sockets."""
    return hx.Instance(cfg.env.instance, cfg.binpath, cfg.conffile, cfg.extraconf,
                       cfg.pidfile, cfg.stats_socket)


def config_problem(ha: hx.Instance, cfg: Config) -> str | None:
    """Why `haproxy -c` refuses the configuration file, in haproxy's own words; None when
    it accepts it."""
    problem = ha.config_problem(timeout=cfg.env.remaining())
    return f"haproxy -c: {problem}" if problem else None


def keep_serving(cfg: Config, ha: hx.Instance, reason: str) -> int:
    """The configuration file is refused (reason): what runs stays, and monitor reports the
    resource degraded until a file haproxy accepts is applied. A file of this node, so
    never a failure: a failed reload or start would stop what serves."""
    ha.accepted.mark_refused(reason)
    cfg.log.warning(f"{ha.conffile} refused, haproxy serves the last accepted configuration: "
                    f"{reason}")
    return OCF.SUCCESS


def answers(cfg: Config, ha: hx.Instance) -> list[dict[str, str]]:
    """`show stat` from the running haproxy, bounded to leave time before Pacemaker's
    timeout: a frozen haproxy is a reported error, never a hanging monitor."""
    kinds = hx.SERVERS | (hx.FRONTENDS if cfg.env.check_level >= 10 else 0)
    try:
        return ha.show_stat(timeout=min(10.0, max(cfg.env.remaining() / 2, 0.5)), kinds=kinds)
    except hx.RuntimeApiError as err:
        from ocf_lib.adapters import process
        master = ha.master_pid()
        if not (master and process.alive(master)):  # it ended since it was found
            raise OcfError(OCF.NOT_RUNNING, f"haproxy (pid {master}) ended during the "
                                            f"monitor") from None
        raise OcfError(OCF.ERR_GENERIC, f"haproxy (pid {master}) does not answer on its "
                                        f"runtime API: {err}") from None


def keep_watch(cfg: Config, ha: hx.Instance) -> None:
    master = ha.master_pid()
    if master and cfg.env.node:  # outside Pacemaker: no cluster to report to
        from ocf_lib.helpers import watch
        watch.keep(ha.state, enabled=cfg.watch, resource=cfg.env.instance,
                   node=cfg.env.node, target=watch.ProcessTarget(master), log=cfg.log)


# -- actions -------------------------------------------------------------------------------

@agent.action("start", timeout=60, locked=True)
def start(cfg: Config) -> int:
    ha = instance(cfg)
    ha.check_files()
    if ha.master_pid():
        problem = config_problem(ha, cfg)  # the running haproxy stays, whatever the file
        if problem:
            keep_serving(cfg, ha, problem)
        code = monitor(cfg)
        return OCF.SUCCESS if code == OCF.DEGRADED else code
    try:
        ha.launch(deadline=cfg.env.deadline)
    except hx.LaunchFailed as err:
        # haproxy refuses a broken configuration before it binds or forks anything, so
        # `haproxy -c` is only asked why when the launch failed: a failover does not wait
        # for a second reading of the configuration.
        return start_accepted(cfg, ha, config_problem(ha, cfg), str(err))
    keep_watch(cfg, ha)
    cfg.log.info(f"started haproxy (pid {ha.master_pid()}) with {ha.conffile}")
    return OCF.SUCCESS


def start_accepted(cfg: Config, ha: hx.Instance, problem: str | None, failure: str) -> int:
    """haproxy did not start with its configuration file (failure; problem: why `haproxy -c`
    refuses it, None when it accepts it, a listener haproxy cannot bind, say): start it
    with the newest configuration haproxy accepted on this node or on the node that ran it
    last. With none, the file's problem is this node's (ERR_ARGS), or the start failed
    (ERR_GENERIC)."""
    reason = problem or failure
    source = ha.accepted.newest(bool(cfg.env.node), cfg.log)
    if source is None:
        raise OcfError(OCF.ERR_ARGS if problem else OCF.ERR_GENERIC, reason)
    try:
        ha.launch(deadline=cfg.env.deadline, from_accepted=True)
    except hx.LaunchFailed as err:
        raise OcfError(OCF.ERR_GENERIC, f"{reason}; the last accepted configuration did "
                                        f"not start either: {err}") from None
    keep_watch(cfg, ha)
    cfg.log.info(f"started haproxy (pid {ha.master_pid()}) with the last accepted "
                 f"configuration ({source}), {ha.accepted.path}")
    return keep_serving(cfg, ha, reason)


@agent.action("stop", timeout=60, locked=True)
def stop(cfg: Config) -> int:
    try:
        ha = instance(cfg)
    except OcfError:
        return OCF.SUCCESS  # a configuration that cannot work never started anything
    from ocf_lib.helpers import watch
    watch.end(ha.state)
    left = ha.stop(grace=min(cfg.stop_grace, cfg.env.remaining() / 2),
                   deadline=cfg.env.deadline)
    if left:
        raise OcfError(OCF.ERR_GENERIC, f"haproxy processes {left} survived SIGKILL")
    hx.clear_backend_attributes(ha.state, cfg.log)
    ha.accepted.clear_refused()
    cfg.log.info(f"stopped haproxy with {ha.conffile}")
    return OCF.SUCCESS


@agent.action("monitor", timeout=20, interval=20, depth=0, aliases=("status",))
def monitor(cfg: Config) -> int:
    try:
        ha = instance(cfg)
    except OcfError:
        if cfg.env.is_probe:
            return OCF.NOT_RUNNING
        raise
    if not ha.master_pid():
        if not cfg.env.is_probe:
            return OCF.NOT_RUNNING
        if not take_over(cfg, ha):
            return probe_foreign(cfg, ha)
    rows = answers(cfg, ha)
    old_workers = 0
    if not cfg.env.is_probe:
        keep_watch(cfg, ha)
        old_workers = (ha.end_old_workers(cfg.old_workers_timeout, cfg.log)
                       + ha.end_handed_over(cfg.old_workers_timeout, cfg.log))
    if cfg.env.check_level >= 10:
        closed = hx.closed_frontends(rows)
        if closed:
            raise OcfError(OCF.ERR_GENERIC, f"frontends not listening: {', '.join(closed)}")
    refused = refused_now(cfg, ha)
    code = backend_health(cfg, rows, old_workers, refused)
    if refused and not cfg.env.is_probe:
        return agent.exit_reason(OCF.DEGRADED, refused)  # short: Pacemaker keeps 128 bytes
    return code


agent.advertise("monitor", timeout=20, interval=60, depth=10)


def take_over(cfg: Config, ha: hx.Instance) -> bool:
    """Make the haproxy an older agent started with this configuration this resource's
    (Instance.adoptable: daemonized, not master-worker), so that a migration from
    heartbeat's agents restarts nothing; True when there was one. Only probes look (a scan
    of /proc): neither the recurring monitor nor start, which lie on a failover's path."""
    pid = ha.adoptable()
    if pid is None:
        return False
    try:
        ha.check_files()
        ha.adopt(pid)
    except (hx.NotInstalled, hx.UnsafeFile, OSError) as err:
        cfg.log.warning(f"haproxy (pid {pid}) with {ha.conffile} runs outside Pacemaker and "
                        f"cannot be taken over: {err}")
        return False
    cfg.log.info(f"took over haproxy (pid {pid}) with {ha.conffile}, started outside this "
                 f"agent (daemonized, not master-worker); the next reload hands it over to "
                 f"a master-worker haproxy without a cut")
    return True


def probe_foreign(cfg: Config, ha: hx.Instance) -> int:
    """A probe tells the truth about an haproxy running this configuration that Pacemaker did
    not start (Debian's haproxy.service, say): it is running, and the reason says who."""
    foreign = ha.foreign_pids()
    if not foreign:
        return OCF.NOT_RUNNING
    return agent.exit_reason(OCF.SUCCESS, f"haproxy with {ha.conffile} runs outside Pacemaker "
                                          f"(pids {foreign}; haproxy.service?): disable it with "
                                          f"`systemctl disable --now haproxy`")


def refused_now(cfg: Config, ha: hx.Instance) -> str | None:
    """Why the configuration file is refused while the last accepted one serves; the mark
    goes once the file holds what runs again (the edit undone). A monitor also hands what
    runs to the other nodes (see haproxy_accepted)."""
    refused = ha.accepted.refused()
    if refused and ha.accepted.file_runs(ha.conffile):
        ha.accepted.clear_refused()
        refused = None
    if cfg.env.node and not cfg.env.is_probe:
        ha.accepted.publish_if_due(cfg.log)
    return refused


def backend_health(cfg: Config, rows: list[dict[str, str]], old_workers: int,
                   refused: str | None) -> int:
    """Publish UP-server counts per backend, the old workers' count and why the
    configuration file is refused; fail only below min_servers_up (opt-in)."""
    counts = hx.backend_servers_up(rows)
    if cfg.env.node and not cfg.env.is_probe:  # only Pacemaker's runs have a node to publish on
        hx.publish_attributes(cfg.env.state(), cfg.env.instance, counts, old_workers, refused,
                              cfg.log)
    if cfg.min_servers_up:
        short = [f"{name} {up}/{total}" for name, (up, total) in counts.items()
                 if up < cfg.min_servers_up]
        if short:
            raise OcfError(OCF.ERR_GENERIC, f"fewer than {cfg.min_servers_up} servers UP in: "
                                            f"{', '.join(short)}")
    return OCF.SUCCESS


@agent.action("reload", timeout=60, locked=True)
def reload(cfg: Config) -> int:
    ha = instance(cfg)
    ha.check_files()
    if not ha.master_pid():
        raise OcfError(OCF.NOT_RUNNING, "haproxy is not running; nothing to reload")
    problem = config_problem(ha, cfg)
    if problem:
        return keep_serving(cfg, ha, problem)
    if ha.adopted():
        return hand_over(cfg, ha)
    if ha.command_line_changed():  # binpath, extraconf or pidfile: only a restart applies it
        ha.stop(grace=0, deadline=cfg.env.deadline)
        return start(cfg)
    try:
        ha.reload(deadline=cfg.env.deadline)
    except hx.Refused as err:  # a listener it cannot bind, say: the running one serves on
        return keep_serving(cfg, ha, str(err))
    except hx.LaunchFailed as err:
        raise OcfError(OCF.ERR_GENERIC, str(err)) from None
    keep_watch(cfg, ha)
    cfg.log.info(f"reloaded haproxy with {ha.conffile}")
    return OCF.SUCCESS


def hand_over(cfg: Config, ha: hx.Instance) -> int:
    """Reload of an haproxy taken over: a master-worker haproxy of ours replaces it; the
    old one finishes its connections. When the new one does not serve, the old one serves
    on and monitor reports it degraded, as for any refused configuration."""
    old = ha.master_pid()
    try:
        ha.hand_over(deadline=cfg.env.deadline)
    except hx.LaunchFailed as err:
        return keep_serving(cfg, ha, str(err))
    keep_watch(cfg, ha)
    cfg.log.info(f"handed haproxy (pid {old}) over to a master-worker haproxy (pid "
                 f"{ha.master_pid()}) with {ha.conffile}; pid {old} finishes its "
                 f"connections")
    return OCF.SUCCESS


@agent.action("validate-all", timeout=20)
def validate_all(cfg: Config) -> int:
    ha = instance(cfg)
    ha.check_files()
    problem = config_problem(ha, cfg)
    if problem:
        raise OcfError(OCF.ERR_ARGS, problem)  # this node's file, not a resource parameter
    try:
        foreign = ha.foreign_pids()
    except PermissionError:  # as non-root: the pidfile is root's, and this is advice only
        foreign = []
    if foreign:
        cfg.log.warning(f"haproxy with {ha.conffile} also runs outside Pacemaker "
                        f"(haproxy.service?); disable it on cluster nodes")
    return OCF.SUCCESS

