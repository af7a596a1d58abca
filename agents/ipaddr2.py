"""ocf:kuth:IPaddr2 -- a floating IPv4 or IPv6 address that Pacemaker moves between nodes.

Drop-in for ocf:heartbeat:IPaddr2 (same parameter names and defaults), minus CLUSTERIP.
The executable Pacemaker runs is agents/IPaddr2, which imports this module.
"""
import os
import sys

from ocf_lib.logic import vip as vips
from ocf_lib.ocf.agent import BOOLEAN, INTEGER, OCF, STRING, Agent, Config, OcfError

REFUSE_AFTER_STOP = 10  # seconds: the default bound of the refuser stop leaves

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.logic import handover

agent = Agent(
    "IPaddr2", version="1.0",
    shortdesc="Floating IPv4/IPv6 address",
    longdesc="""Manages a floating IP address (IPv4 or IPv6) with iproute2: adds it to an
interface on start, announces it to the link (gratuitous ARP for IPv4, unsolicited neighbour
advertisements for IPv6, sent by the agent itself), watches it on monitor and removes it on stop.
Every parameter of ocf:heartbeat:IPaddr2 (resource-agents 4.12 and 4.16) is accepted with its
default, so a configuration moves over by changing the provider; where this agent differs, the
parameter's description says how. CLUSTERIP clones are not supported (the kernel dropped
ipt_CLUSTERIP); a globally unique clone with unique_clone_address is. An IPv6 address is kept
out of the node's own source-address selection by default (lvs_ipv6_addrlabel), as in 4.16.

A parameter change moves the address only when it changes where or how the address sits on
the interface. A new ip is a stop and a start (ip is the one unique parameter). A new nic,
cidr_netmask, netmask, broadcast, iflabel, noprefixroute, network_namespace or, for IPv6,
nodad or preferred_lft is a reload that stops the address as it was added, its connections
reset, and starts it again as configured now, on the same node; a value that puts it where
it already is (nic set to the interface it was found on, say) moves nothing. Any other
change is a reload that leaves the address and its connections alone: the watcher takes
the new settings at once, the next monitor, stop or start the rest.""")

agent.param("ip", STRING, required=True, unique=True,
            shortdesc="IPv4 or IPv6 address",
            longdesc="The floating address, e.g. 192.168.4.20 or 2001:db8::20, without a prefix.")
agent.param("nic", STRING, default="",
            shortdesc="Network interface",
            longdesc="""The interface to add the address to, e.g. eth0 or enp0s3.41. It must exist
on every node that may run the resource. Empty: the interface whose on-link route covers the
address (like findif). A link-local address needs it. The older form nic=eth0:label still
works, as in heartbeat (the label then replaces iflabel), with a warning: use iflabel.""")
agent.param("cidr_netmask", STRING, default="",
            shortdesc="Prefix length (CIDR netmask)",
            longdesc="""The prefix length, e.g. 24 (IPv4 also accepts a dotted netmask such as
255.255.255.0). Empty: the prefix of the on-link route that covers the address.""")
agent.param("netmask", STRING, default="",
            shortdesc="Deprecated alias of cidr_netmask",
            longdesc="Old name of cidr_netmask, still read when cidr_netmask is empty.")
agent.param("broadcast", STRING, default="",
            shortdesc="Broadcast address (IPv4)",
            longdesc="""The IPv4 broadcast address. Empty or '+': the network's highest address
(none for /31 and /32); '-': no broadcast address.""")
agent.param("proto", STRING, default="",
            shortdesc="Route protocol for finding the interface",
            longdesc="""Only routes of this protocol (kernel, static, dhcp, a number...) count
when nic or cidr_netmask is derived from the routing table, as heartbeat 4.16's proto does.
Empty (the default): every route.""")
agent.param("iflabel", STRING, default="",
            shortdesc="Interface label (IPv4)",
            longdesc="""A label for the address, shown as nic:iflabel by `ip addr` and ifconfig.
nic:iflabel must fit in 15 bytes. IPv4 only. Monitor fails when the address is there
without its label (as heartbeat 4.16 does).""")
agent.param("lvs_support", BOOLEAN, default=False,
            shortdesc="LVS direct routing (not supported)",
            longdesc="""heartbeat's LVS direct-routing mode, which moves the address to the
loopback device on stop instead of removing it. Not supported: true is refused (exit 6);
keep ocf:heartbeat:IPaddr2 for an LVS-DR real server. false (the default) is accepted.""")
agent.param("lvs_ipv6_addrlabel", BOOLEAN, default=True,
            shortdesc="Keep an IPv6 address out of source selection",
            longdesc="""true (the default, as in heartbeat 4.16; 4.12 defaulted to false): start
gives an IPv6 address an address label of its own (`ip addrlabel add prefix IP/128 label
N`, N = lvs_ipv6_addrlabel_value) before adding it, and stop removes the label after the
address. A source address whose label no destination shares loses the kernel's source
selection (RFC 6724), so the connections the node opens itself (to the apiservers, to etcd)
leave from its own address and survive the address moving away. false: no label; the
address may become the source of the node's connections on its link. No effect for IPv4
(4.12 refused it with exit 6).""")
agent.param("lvs_ipv6_addrlabel_value", INTEGER, default=99, minimum=0,
            maximum=0xFFFFFFFE,
            shortdesc="Address label for lvs_ipv6_addrlabel",
            longdesc="""The label lvs_ipv6_addrlabel gives an IPv6 address: one that no
prefix of `ip addrlabel list` carries. Default 99.""")
agent.param("mac", STRING, default="",
            shortdesc="CLUSTERIP multicast MAC (not used)",
            longdesc="""heartbeat's multicast MAC for CLUSTERIP clones, which this agent does not
run. A value gets a warning and has no effect, as in heartbeat for a primitive.""")
agent.param("clusterip_hash", STRING, default="sourceip-sourceport",
            shortdesc="CLUSTERIP hash (not used)",
            longdesc="""heartbeat's CLUSTERIP hashing mode, which this agent does not run. A value
other than the default gets a warning and has no effect, as in heartbeat for a primitive.""")
agent.param("unique_clone_address", BOOLEAN, default=False,
            shortdesc="One address per clone instance",
            longdesc="""true: in a clone with globally-unique=true, instance N manages ip + N (ip
itself for instance 0), so a clone of this resource spreads consecutive addresses over the
nodes. heartbeat adds N to the last IPv4 octet; here it is added to the whole address, for
IPv6 too. Without globally-unique=true it is refused (exit 6), as in heartbeat.""")
agent.param("arp_count", INTEGER, default=5, minimum=1,
            shortdesc="Announcements on start",
            longdesc="""How many gratuitous ARP / unsolicited NA packets start sends. With
arp_bg=false, start sends only as many as fit in its timeout.""")
agent.param("arp_interval", INTEGER, default=200, minimum=1,
            shortdesc="Milliseconds between announcements",
            longdesc="The pause between two announcement packets, in milliseconds.")
agent.param("arp_count_refresh", INTEGER, default=0, minimum=0,
            shortdesc="Announcements on each monitor",
            longdesc="""How many announcements every monitor sends again, for switches that
forget, as many as fit in the monitor's timeout. 0 (the default) sends none.""")
agent.param("arp_bg", BOOLEAN, default=True,
            shortdesc="Repeat announcements in the background",
            longdesc="""true: start sends the first announcement itself and leaves the repeats to a
background process, so the link learns the new owner before start returns and start does not
wait arp_count x arp_interval. false: start sends them all before it returns. (heartbeat's
default is false for IPv6, whose announcements it sends in the foreground; here both
families default to true: start returns as soon as the first one is out.)""")
agent.param("arp_sender", STRING, default="",
            choices=("send_arp", "ipoibarping", "iputils_arping", "libnet_arping"),
            shortdesc="ARP sender program (accepted for compatibility)",
            longdesc="""heartbeat's choice of ARP program. This agent always sends announcements
itself over a packet socket and runs no helper program: a value gets a warning and has no
effect.""")
agent.param("send_arp_opts", STRING, default="",
            shortdesc="Announcement mode options",
            longdesc="""'-A' sends ARP replies instead of ARP requests (what `arping -A` and
send_arp -A do), for switches or hosts that ignore gratuitous requests; '-U' keeps requests.
Other send_arp options have no effect and get a warning.""")
agent.param("flush_routes", BOOLEAN, default=False,
            shortdesc="Flush the route cache on stop",
            longdesc="Flush the kernel's route cache after stop removed the address.")
agent.param("run_arping", BOOLEAN, default=False,
            shortdesc="Refuse an address already in use (IPv4)",
            longdesc="""Before adding an IPv4 address, ask the link whether another host already
answers for it (ARP probe, RFC 5227); if one does, start fails and names its MAC address.""")
agent.param("nodad", BOOLEAN, default=False,
            shortdesc="Skip IPv6 duplicate address detection",
            longdesc="""Add an IPv6 address without duplicate address detection, so it is usable at
once. By default start waits for DAD and fails when another host has the address.""")
agent.param("noprefixroute", BOOLEAN, default=False,
            shortdesc="Add no prefix route",
            longdesc="Do not create the route for the network prefix of the address.")
agent.param("preferred_lft", STRING, default="forever",
            shortdesc="Preferred lifetime",
            longdesc="""The preferred lifetime of an IPv6 address in seconds, or 'forever'. 0
makes it deprecated: it is served but not chosen as a source address. IPv6 only, as in
heartbeat: for IPv4 a value other than forever gets a warning and has no effect.""")
agent.param("network_namespace", STRING, default="",
            shortdesc="Network namespace",
            longdesc="""Run every action inside this existing network namespace (as made by
`ip netns add`); nic must be an interface of that namespace.""")
agent.param("watch", BOOLEAN, default=True,
            shortdesc="Report a lost address at once",
            longdesc="""true: a watcher process follows the kernel's netlink notifications and,
unless an action of this resource or maintenance explains it, tells Pacemaker at once
(crm_resource --fail) when the address is removed, its interface vanishes, or (with
check_link_status) the link stays without carrier for a second. The monitor remains the
safety net. false: only the monitor notices.""")
agent.param("reset_connections", BOOLEAN, default=True,
            shortdesc="Reset the connections on the address when it leaves",
            longdesc="""true: clients of the address (an idle Kubernetes watch, say) learn at once
that their connection is gone, and reconnect to the new owner instead of waiting for their
own timeout on a connection nobody answers. When the address leaves a node, stop closes every
TCP connection the node holds on it, with a reset to each client (the kernel's socket
destroy, as `ss -K`; a kernel without it gets a warning). When a node is lost, its clients
hear nothing from it: while it runs, the node's watcher (watch=true) hands the long-lived
connections over to the other nodes (private attrd attributes, up to 65,536 connections,
looked at every 2 s and written when they change, within a rate limit); the start of the
node that takes the address over leaves a process (kuth-tickler) that, once the address is
announced, sends each client a TCP ACK that its kernel answers; the new owner resets that
answer and the client reconnects ("tickle ACKs", as CTDB does). false: none of this.""")
agent.param("refuse_after_stop", INTEGER, default=REFUSE_AFTER_STOP, minimum=0,
            maximum=3600,
            shortdesc="Seconds to refuse connections after stop",
            longdesc="""After stop has removed the address, this node answers each new TCP
connection to it (a SYN in a frame sent to this node's MAC) with a reset, for at most this many
seconds: a client whose neighbour entry still names this node (a watch that stop reset and
that reconnects at once, say) gets 'connection refused' at once, instead of waiting 1 s for TCP
to resend a SYN that the kernel here drops without a word, and its next try reaches the new
owner as soon as that one has announced the address. It ends half a second after another host
announces the address, and at once when the address is on this node again (start ends it
first); `ps -e` shows it as kuth-refuser. 0: no refuser.""")
agent.param("check_link_status", BOOLEAN, default=True,
            shortdesc="Fail when the link has no carrier",
            longdesc="""Monitor reports a failure when the interface has no carrier (cable out,
switch port down), so the address moves to a node whose link works.""")


# -- helpers shared by the actions ---------------------------------------------------------

def configured(cfg: Config) -> vips.Vip:
    """The address as configured (inside network_namespace when set): ERR_CONFIGURED when
    the parameters cannot work anywhere, ERR_ARGS when the namespace is missing here."""
    if cfg.lvs_support:
        raise vips.ConfigInvalid("lvs_support=true (LVS direct routing) is not supported; "
                                 "remove it, or keep ocf:heartbeat:IPaddr2 for an LVS-DR "
                                 "real server")
    vips.check_proto(cfg.proto)
    ip = instance_ip(cfg)
    vips.enter_netns(cfg.network_namespace, sys.argv[0], cfg.env.action)
    return vips.parse(ip, cfg.nic, cfg.cidr_netmask or cfg.netmask, cfg.broadcast,
                      cfg.iflabel, cfg.preferred_lft)


def instance_ip(cfg: Config) -> str:
    """The address this instance manages: ip, or in a globally unique clone with
    unique_clone_address, ip plus the instance's number. Any other clone would be
    heartbeat's CLUSTERIP."""
    from ocf_lib.ocf.params import ParamError, parse_boolean
    if cfg.unique_clone_address:
        try:
            unique = parse_boolean("globally-unique", os.environ.get(
                "OCF_RESKEY_CRM_meta_globally_unique") or "false")
        except ParamError:
            unique = False
        if not unique:
            raise vips.ConfigInvalid("unique_clone_address=true needs a clone with "
                                     "globally-unique=true")
        clone = cfg.env.clone or "0"
        return vips.clone_address(cfg.ip, int(clone) if clone.isdigit() else 0)
    if cfg.env.clone and cfg.env.clone_max > 1:
        raise vips.ConfigInvalid("CLUSTERIP clones are not supported (the kernel dropped "
                                 "ipt_CLUSTERIP); run one primitive, or a globally unique "
                                 "clone with unique_clone_address=true")
    return cfg.ip


def warn_without_effect(cfg: Config, vip: vips.Vip) -> None:
    """Say which of heartbeat's parameters are set here without effect, or in an older
    form (validate-all and start: the operator sees it, monitor stays quiet)."""
    notes = []
    if ":" in cfg.nic:
        nic, _, label = cfg.nic.partition(":")
        notes.append(f"nic={cfg.nic} is heartbeat's older form; use nic={nic} "
                     f"iflabel={label}")
    for name in ("mac", "clusterip_hash"):
        if getattr(cfg, name) != agent_default(name):
            notes.append(f"{name} is for CLUSTERIP clones, which this agent does not run; "
                         f"it has no effect")
    if cfg.arp_sender:
        notes.append(f"arp_sender={cfg.arp_sender} has no effect: this agent sends its "
                     f"announcements itself")
    unknown = [opt for opt in cfg.send_arp_opts.split() if opt not in ("-A", "-U")]
    if unknown:
        notes.append(f"send_arp_opts {' '.join(unknown)} have no effect (only -A and -U do)")
    if cfg.preferred_lft != "forever" and not vip.is_ipv6:
        notes.append(f"preferred_lft is for IPv6 addresses; it has no effect for {vip.ip}")
    for note in notes:
        cfg.log.warning(note)


def agent_default(name: str) -> object:
    return next(p.default for p in agent.params if p.name == name)


def on_this_node(cfg: Config) -> vips.Vip:
    """The address with nic and prefix known; ERR_ARGS when this node cannot host it."""
    return vips.complete(configured(cfg), cfg.proto)


def served(vip: vips.Vip) -> "tuple[vips.netlink.Address, vips.netlink.Link] | None":
    """vips.served(), None also when the address's interface vanished while it was looked
    up: the address went with it."""
    try:
        return vips.served(vip)
    except vips.NotOnThisNode:
        return None


def keep_watch(cfg: Config, vip: vips.Vip) -> None:
    if not cfg.env.node:  # outside Pacemaker: no cluster to report to
        return
    from ocf_lib.helpers import watch
    target = watch.AddressTarget(vip.ip, vip.nic or "", check_link=cfg.check_link_status,
                                 hand_over=cfg.reset_connections)
    watch.keep(cfg.env.state(), enabled=cfg.watch, resource=cfg.env.instance,
               node=cfg.env.node, target=target, log=cfg.log)


def taking_over(cfg: Config, vip: vips.Vip) -> "handover.TakeOver | None":
    """The tickles for the clients a lost owner handed over, under way (see handover.TakeOver)
    when Pacemaker runs the agent with the watcher, whose hand-over this is, and resets.
    Never fails: they reconnect on their own timeout at worst."""
    if not (cfg.env.node and cfg.watch and cfg.reset_connections):
        return None
    from ocf_lib.helpers import registry
    from ocf_lib.logic import handover
    from ocf_lib.ocf.state import StateError
    try:
        take_over = handover.TakeOver(vip.ip, cfg.env.instance, cfg.env.node)
        registry.record(cfg.env.state(), TICKLER_RECORD, take_over.pid)  # a stop ends it
        return take_over
    except (OSError, StateError) as err:
        cfg.log.warning(f"cannot tickle the clients of connections handed over: {err}")
        return None


def announce(cfg: Config, vip: vips.Vip, count: int, background: bool) -> None:
    """Announce vip count times; in the foreground, only as many as fit in the action's
    timeout (with half a second to spare): an action killed on its timeout has failed."""
    mode = "reply" if "-A" in cfg.send_arp_opts.split() else "request"
    if not background:
        fits = 1 + int(max(cfg.env.remaining() - 0.5, 0.0) * 1000 / cfg.arp_interval)
        if count > fits:
            cfg.log.warning(f"sending {fits} of {count} announcements: the rest would "
                            f"outlast the {cfg.env.action} timeout")
            count = fits
    from ocf_lib.helpers import announcer
    announcer.announce(vip, count=count, interval_ms=cfg.arp_interval, mode=mode,
                       background=background, state=cfg.env.state(), log=cfg.log)


def label_for_source_selection(cfg: Config, vip: vips.Vip) -> None:
    """Give an IPv6 address its own address label (lvs_ipv6_addrlabel), or take away one
    an earlier setting gave it. Never fails start: the address works without it."""
    from ocf_lib.adapters import iproute
    try:
        if cfg.lvs_ipv6_addrlabel:
            iproute.label_address(vip.ip, cfg.lvs_ipv6_addrlabel_value)
        else:
            iproute.unlabel_address(vip.ip)
    except iproute.IprouteError as err:
        cfg.log.warning(f"{' '.join(err.argv)}: {err}; {vip.ip} may become the source "
                        f"address of this node's connections")


def unlabel(cfg: Config, vip: vips.Vip) -> None:
    """Remove the address label start gave an IPv6 address, whatever lvs_ipv6_addrlabel
    says now. Never fails stop: a label without its address changes nothing."""
    from ocf_lib.adapters import iproute
    try:
        iproute.unlabel_address(vip.ip)
    except iproute.IprouteError as err:
        cfg.log.warning(f"{' '.join(err.argv)}: {err}")


TICKLER_RECORD = "tickler"  # the takeover's tickler, recorded in the state directory
PLACEMENT = "placement"  # the state file that records where and how start added the address


def placement(cfg: Config, vip: vips.Vip) -> dict[str, str]:
    """Where and how start puts the address on this node: its namespace, and what the kernel
    keeps with it (interface, prefix, broadcast, label, flags, lifetime). A reload whose
    placement differs from the recorded one moves the address; any other parameter can
    change under a running address."""
    return {"ip": vip.ip, "network_namespace": cfg.network_namespace, "nic": vip.nic or "",
            "cidr_netmask": str(vip.prefixlen), "broadcast": vips.broadcast_for(vip) or "",
            "label": vip.label or "", "noprefixroute": "1" if cfg.noprefixroute else "0",
            # the kernel keeps these two for IPv6 only (an IPv4 address added with a
            # preferred lifetime but no valid lifetime is preferred forever)
            "nodad": "1" if cfg.nodad and vip.is_ipv6 else "0",
            "preferred_lft": cfg.preferred_lft if vip.is_ipv6 else ""}


def record_placement(cfg: Config, vip: vips.Vip) -> None:
    """Keep placement() for the next reload (a line `key=value` each). Never fails: a reload
    without it compares with what the kernel shows."""
    from ocf_lib.ocf.state import StateError
    try:
        cfg.env.state().write(PLACEMENT, "".join(f"{key}={value}\n" for key, value
                                                 in placement(cfg, vip).items()))
    except StateError as err:
        cfg.log.warning(f"{err}; a reload will compare with the kernel's view of {vip.ip}")


def recorded_placement(cfg: Config) -> dict[str, str] | None:
    """The placement start recorded for this instance's address; None without one."""
    from ocf_lib.adapters import inet
    try:
        ip = inet.canonical(*inet.parse_ip(instance_ip(cfg)))
        text = cfg.env.state().read(PLACEMENT)
    except (ValueError, OSError):  # ConfigInvalid is a ValueError
        return None
    record = dict(line.partition("=")[::2] for line in (text or "").splitlines())
    return record if record.get("ip") == ip else None


# -- actions -------------------------------------------------------------------------------

@agent.action("start", timeout=20, locked=True)
def start(cfg: Config) -> int:
    from ocf_lib.helpers import refuser as refusing
    refusing.stop_refuser(cfg.env.state(), cfg.log)  # it must never answer for an address here
    vip = on_this_node(cfg)
    warn_without_effect(cfg, vip)
    if vip.is_ipv6:  # before the address is there: no connection may pick it meanwhile
        label_for_source_selection(cfg, vip)
    if served(vip):
        record_placement(cfg, vip)
        return OCF.SUCCESS
    from ocf_lib.adapters import iproute
    if cfg.run_arping and not vip.is_ipv6:
        from ocf_lib.adapters import announce as sender
        try:
            owner = sender.arp_probe(vip.nic, vip.ip)
        except sender.AnnounceError as err:
            raise OcfError(OCF.ERR_GENERIC, f"run_arping: {err}") from None
        if owner:
            raise OcfError(OCF.ERR_GENERIC, f"{vip.ip} is already in use on {vip.nic} by "
                                            f"{owner.hex(':')}; refusing to add it")
    take_over = taking_over(cfg, vip)  # its list is asked for while the address goes up
    try:
        iproute.add_address(vip.nic, vip.ip, vip.prefixlen, broadcast=vips.broadcast_for(vip),
                            label=vip.label, nodad=cfg.nodad, noprefixroute=cfg.noprefixroute,
                            preferred_lft=cfg.preferred_lft if vip.is_ipv6 else None)
        vips.bring_up(vip.nic)
    except iproute.IprouteError as err:
        raise OcfError(OCF.ERR_GENERIC, f"adding {vip}: {err}") from None
    if vip.is_ipv6 and not cfg.nodad:
        try:
            vips.wait_for_dad(vip, cfg.env.deadline)
        except (vips.DadFailed, TimeoutError) as err:
            remove(vip)
            raise OcfError(OCF.ERR_GENERIC, str(err)) from None
    if monitor_served(cfg, vip) != OCF.SUCCESS:
        raise OcfError(OCF.ERR_GENERIC, f"{vip} is not served after adding it")
    announce(cfg, vip, cfg.arp_count, cfg.arp_bg)
    if take_over:
        take_over.announced()
    keep_watch(cfg, vip)
    record_placement(cfg, vip)
    cfg.log.info(f"started {vip}")
    return OCF.SUCCESS


def remove(vip: vips.Vip) -> None:
    from ocf_lib.adapters import iproute
    iproute.delete_address(vip.nic, vip.ip, vip.prefixlen)


@agent.action("stop", timeout=20, locked=True)
def stop(cfg: Config) -> int:
    from ocf_lib.helpers import watch
    watch.end(cfg.env.state())
    from ocf_lib.helpers import announcer, registry
    announcer.stop_announcer(cfg.env.state(), cfg.log)
    registry.end(cfg.env.state(), TICKLER_RECORD, cfg.log)  # it would tickle from an address gone
    cfg.env.state().remove(PLACEMENT)
    try:
        vip = configured(cfg)
    except OcfError as err:  # a configuration that cannot work here never started
        cfg.log.info(f"{err.reason}: this resource cannot be running")
        return OCF.SUCCESS
    found = served(vip)
    if found is None:
        if vip.is_ipv6:
            unlabel(cfg, vip)
        return OCF.SUCCESS
    address, link = found
    vip.nic, vip.prefixlen = link.name, address.prefixlen
    from ocf_lib.helpers import refuser as refusing
    refusing.stop_refuser(cfg.env.state(), cfg.log)  # an earlier stop's, if the address came back
    refuser = refusing.open_refuser(vip, cfg.log) if cfg.refuse_after_stop else None
    pending = refusing.spawn_refuser(refuser, vip, cfg.refuse_after_stop, cfg.env.state(),
                                 cfg.log) if refuser else None
    gone = False
    try:  # the SYNs for the address queue in the refuser from now on
        if cfg.reset_connections:  # while the address is here: a reset needs its route
            vips.reset_connections(vip, cfg.log)
        remove_for_stop(vip)
        gone = True
    finally:
        if pending:
            pending.release(gone)
        if refuser:
            refuser.close()
    if vip.is_ipv6:
        unlabel(cfg, vip)
    if cfg.flush_routes:
        from ocf_lib.adapters import iproute
        iproute.flush_route_cache(vip.family)
    cfg.log.info(f"stopped {vip}")
    return OCF.SUCCESS


def remove_for_stop(vip: vips.Vip) -> None:
    """Remove the address; a failure fails stop only when the address is still here."""
    from ocf_lib.adapters import iproute
    try:
        remove(vip)
    except iproute.IprouteError as err:
        if served(vip):
            raise OcfError(OCF.ERR_GENERIC, f"removing {vip}: {err}") from None


@agent.action("monitor", timeout=20, interval=10, depth=0, aliases=("status",))
def monitor(cfg: Config) -> int:
    try:
        vip = configured(cfg)
    except OcfError as err:  # a configuration that cannot work here was never started
        if cfg.env.is_probe or err.code == OCF.ERR_ARGS:
            return OCF.NOT_RUNNING
        raise
    code = monitor_served(cfg, vip)
    if code == OCF.SUCCESS and not cfg.env.is_probe:
        keep_watch(cfg, vip)
        if cfg.arp_count_refresh > 0:
            announce(cfg, vip, cfg.arp_count_refresh, background=False)
    return code


def monitor_served(cfg: Config, vip: vips.Vip) -> int:
    """SUCCESS when the address is on its nic with its prefix and the link works."""
    found = served(vip)
    if found is None:
        return OCF.NOT_RUNNING
    address, link = found
    vip.nic = link.name
    if address.dadfailed:
        raise OcfError(OCF.ERR_GENERIC, f"{vip.ip} on {link.name} failed duplicate address "
                                        f"detection: another host has it")
    if vip.label and address.label != vip.label:
        raise OcfError(OCF.ERR_GENERIC, f"{vip.ip} is on {link.name} without its label "
                                        f"{vip.label}")
    if cfg.check_link_status and not (link.up and link.lower_up):
        raise OcfError(OCF.ERR_GENERIC, f"{link.name} has no carrier (link down); "
                                        f"{vip.ip} is unreachable there")
    return OCF.SUCCESS


@agent.action("reload", timeout=20)
def reload(cfg: Config) -> int:
    """Pacemaker calls reload when a parameter other than ip changed (see the longdesc).
    When the address is to sit where and as it sits (placement()), it stays and the
    watcher takes the new settings; else move() stops and starts it."""
    before = recorded_placement(cfg)
    if before and before["network_namespace"] != cfg.network_namespace:
        return move(cfg, before, ["network_namespace"])  # before entering the new one
    vip = on_this_node(cfg)  # from here inside network_namespace
    wanted = placement(cfg, vip)
    from ocf_lib.ocf.state import StateError
    try:
        with cfg.env.state().lock(cfg.env.deadline):
            found = served(vips.Vip(vip.family, vip.packed, None, None, None, None))
            if found is None:
                raise OcfError(OCF.NOT_RUNNING, f"{vip.ip} is not on this node; nothing to "
                                                f"reload")
            # Where it is, the kernel says; the rest, what start recorded (nothing when an
            # older version of the agent started it: then taken to be as wanted).
            address, link = found
            before = {**(before or wanted), "nic": link.name,
                      "cidr_netmask": str(address.prefixlen)}
            changed = [key for key, value in wanted.items() if before.get(key) != value]
            if not changed:
                if vip.is_ipv6:
                    label_for_source_selection(cfg, vip)
                keep_watch(cfg, vip)
                record_placement(cfg, vip)
                cfg.log.info(f"reloaded {vip}: the address stays")
                return OCF.SUCCESS
    except StateError as err:
        raise OcfError(OCF.ERR_GENERIC, str(err)) from None
    return move(cfg, before, changed)


def move(cfg: Config, before: dict[str, str], changed: list[str]) -> int:
    """Stop the address as it was added (before), then start it as configured now: each a
    run of this agent of its own, as Pacemaker's stop and start would be (connections
    reset, refuser, announcements, watcher), each inside its own network namespace and
    under the resource's lock. Their exit reasons are the reload's."""
    import subprocess
    cfg.log.info(f"reload: {', '.join(changed)} changed: moving {before['ip']} from "
                 f"{before['nic']}/{before['cidr_netmask']} (stop, then start)")
    old = {"ip": before["ip"], "nic": before["nic"], "cidr_netmask": before["cidr_netmask"],
           "netmask": "", "broadcast": "", "iflabel": "", "preferred_lft": "forever",
           "network_namespace": before["network_namespace"]}
    script = os.path.realpath(sys.argv[0])
    for action, params in (("stop", old), ("start", {})):
        env = {**os.environ, **{f"OCF_RESKEY_{key}": value for key, value in params.items()},
               "OCF_RESKEY_CRM_meta_timeout": str(int(cfg.env.remaining() * 1000))}
        code = subprocess.run([sys.executable, "-IS", script, action], env=env,
                              stdin=subprocess.DEVNULL, check=False).returncode
        if code != OCF.SUCCESS:
            return code
    return OCF.SUCCESS


@agent.action("validate-all", timeout=20)
def validate_all(cfg: Config) -> int:
    warn_without_effect(cfg, on_this_node(cfg))
    from ocf_lib.adapters.command import installed
    if not installed("ip"):
        raise OcfError(OCF.ERR_INSTALLED, "ip (iproute2) is not installed on this node")
    return OCF.SUCCESS

