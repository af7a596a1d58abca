"""A floating IP address: what the parameters mean, whether it is served, and DAD.

This is the IPaddr2 agent's logic that is not about OCF. Its failures are the kinds
ocf_lib.ocf.codes declares, which tell Pacemaker different things: `ConfigInvalid` is wrong
everywhere (a bad address or prefix), `NotOnThisNode` is fine elsewhere but impossible here
(the nic is missing on this node, no interface has a route to the address).
"""

import os
import sys
import time

from ocf_lib.adapters import inet, netlink
from ocf_lib.ocf.codes import ConfigInvalid, NotInstalled, NotOnThisNode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocf_lib.ocf.log import Logger

MAX_LIFETIME = 0xFFFFFFFF  # address lifetimes are 32-bit seconds (the largest is forever)


class DadFailed(Exception):
    """IPv6 duplicate address detection found another host with the address."""


class Vip:
    """A floating address as configured; `nic` and `prefixlen` are None until known."""

    def __init__(self, family: int, packed: bytes, nic: str | None, prefixlen: int | None,
                 broadcast: str | None, iflabel: str | None) -> None:
        self.family = family
        self.packed = packed
        self.ip = inet.canonical(family, packed)
        self.nic = nic
        self.prefixlen = prefixlen
        self.broadcast = broadcast
        self.iflabel = iflabel

    @property
    def is_ipv6(self) -> bool:
        return self.family == inet.AF_INET6

    @property
    def label(self) -> str | None:
        """The address label `ip` sets: 'nic:iflabel' (IPv4 only)."""
        return f"{self.nic}:{self.iflabel}" if self.iflabel and self.nic else None

    def __str__(self) -> str:
        return f"{self.ip}/{self.prefixlen if self.prefixlen is not None else '?'}" \
               f" on {self.nic or '?'}"


def parse(ip: str, nic: str, netmask: str, broadcast: str, iflabel: str,
          preferred_lft: str = "forever") -> Vip:
    """Check the parameters' syntax and consistency; ConfigInvalid says what is wrong.
    Nothing on this host is looked at. nic may be heartbeat's older form `nic:label`,
    whose label then takes the place of iflabel, as there."""
    nic, colon, nic_label = nic.partition(":")
    if colon:
        iflabel = nic_label
    if preferred_lft != "forever" and not (preferred_lft.isascii() and preferred_lft.isdigit()
                                           and len(preferred_lft) <= 10
                                           and int(preferred_lft) <= MAX_LIFETIME):
        raise ConfigInvalid(f"preferred_lft {preferred_lft!r} is neither 'forever' nor a "
                            f"number of seconds up to {MAX_LIFETIME}")
    try:
        family, packed = inet.parse_ip(ip)
    except ValueError as err:
        raise ConfigInvalid(f"ip: {err}") from None
    problem = inet.not_unicast(family, packed)
    if problem:
        raise ConfigInvalid(f"ip {ip} {problem}: it cannot be a floating address")
    if nic:
        try:
            netlink.valid_ifname(nic, "nic")
        except ValueError as err:
            raise ConfigInvalid(str(err)) from None
    elif inet.is_link_local(family, packed):
        raise ConfigInvalid(f"ip {ip} is link-local: set nic= to the interface it belongs to")
    prefixlen = None
    if netmask:
        try:
            prefixlen = inet.parse_prefix(netmask, family)
        except ValueError as err:
            raise ConfigInvalid(f"cidr_netmask: {err}") from None
    if broadcast and family == inet.AF_INET6:
        raise ConfigInvalid("broadcast is for IPv4 addresses only; leave it empty for IPv6")
    if broadcast and broadcast not in ("+", "-"):
        try:
            if inet.parse_ip(broadcast)[0] != inet.AF_INET:
                raise ValueError(f"{broadcast!r} is not an IPv4 address")
        except ValueError as err:
            raise ConfigInvalid(f"broadcast: {err}") from None
    if iflabel:
        if family == inet.AF_INET6:
            raise ConfigInvalid("iflabel is for IPv4 addresses only (IPv6 has no labels)")
        if not all(c.isascii() and (c.isalnum() or c in "-_.") for c in iflabel):
            raise ConfigInvalid(f"iflabel {iflabel!r} may hold only letters, digits, '-', '_' "
                                f"and '.'")
        if nic:
            _check_label(f"{nic}:{iflabel}", nic, ConfigInvalid)
    return Vip(family, packed, nic or None, prefixlen, broadcast or None, iflabel or None)


def clone_address(ip: str, clone: int) -> str:
    """The address instance number clone of a globally unique clone manages with
    unique_clone_address: ip plus clone, as heartbeat adds it to the last IPv4 octet
    (here to the whole address, in either family, and never past its end)."""
    try:
        family, packed = inet.parse_ip(ip)
    except ValueError as err:
        raise ConfigInvalid(f"ip: {err}") from None
    number = int.from_bytes(packed, "big") + clone
    if number >= 1 << (8 * len(packed)):
        raise ConfigInvalid(f"ip {ip} plus clone number {clone} is past the last address")
    return inet.canonical(family, number.to_bytes(len(packed), "big"))


def check_proto(proto: str) -> None:
    """A route protocol as `ip route` names one (kernel, static, 4...), or empty."""
    if proto and not (len(proto) <= 32 and proto.isascii()
                      and all(c.isalnum() or c in "_-" for c in proto)
                      and not proto.startswith("-")):
        raise ConfigInvalid(f"proto {proto!r} is not a route protocol name or number")


def _check_label(label: str, nic: str, error: type[Exception]) -> None:
    """The label nic:iflabel fits the kernel's limit; else error, telling what to shorten."""
    try:
        netlink.valid_label(label, nic)
    except ValueError as err:
        raise error(f"{err}; shorten iflabel") from None


def complete(vip: Vip, proto: str = "") -> Vip:
    """Fill in nic and prefix length from the routing table when they are not configured, the
    way the heartbeat agent's findif does, from the routes of protocol proto when it is
    given. NotOnThisNode when that is impossible here."""
    from ocf_lib.adapters import iproute
    if vip.nic and netlink.link_by_name(vip.nic) is None:
        raise NotOnThisNode(f"nic {vip.nic!r} does not exist on this node; set nic= to an "
                            f"interface present on every node")
    if vip.nic and vip.prefixlen is not None:
        return vip
    try:
        found = iproute.find_interface(vip.ip, vip.prefixlen, nic=vip.nic, proto=proto or None)
    except iproute.FindifError as err:
        raise NotOnThisNode(str(err)) from None
    except iproute.IprouteError as err:  # a protocol name this node's ip does not know
        raise NotOnThisNode(f"proto {proto}: {err}") from None
    vip.nic = found.nic
    if vip.prefixlen is None:
        vip.prefixlen = found.prefixlen
    if vip.label:  # nic:iflabel, too long for a nic found here is this node's problem
        _check_label(vip.label, vip.nic, NotOnThisNode)
    return vip


def bring_up(nic: str) -> None:
    """Set nic up, as the heartbeat agent does on every start, unless it is up already: one
    `ip` run fewer on a failover's path. IprouteError when it cannot be set up."""
    from ocf_lib.adapters import iproute
    link = netlink.link_by_name(nic)
    if link is None or not link.up:
        iproute.set_link_up(nic)


def broadcast_for(vip: Vip) -> str | None:
    """The broadcast to configure: the given one ('+': the address's own prefix's, as ip
    derives it); else for IPv4 prefixes that have one (none for /31 and /32, nor for
    IPv6), the broadcast of the network the address lies in on its nic, the node's own
    address there telling which, as with heartbeat's findif. A cidr_netmask longer than that
    network's (a /28 VIP on a /24 link) must not make a broadcast of an address inside
    it, which the node could then no longer reach as a host."""
    if vip.is_ipv6 or vip.broadcast == "-":
        return None
    if vip.broadcast and vip.broadcast != "+":
        return vip.broadcast
    if vip.prefixlen is None or vip.prefixlen >= 31:
        return None
    own = inet.broadcast_of(vip.packed, vip.prefixlen)
    return own if vip.broadcast == "+" else network_broadcast(vip) or own


def network_broadcast(vip: Vip) -> str | None:
    """The broadcast of the network of the node's own address on vip's nic that holds vip
    and is at most as long as vip's prefix (the longest such), None without one."""
    link = netlink.link_by_name(vip.nic) if vip.nic else None
    if link is None:
        return None
    lengths = [address.prefixlen for address in netlink.addresses(inet.AF_INET, link.index)
               if address.address != vip.ip and address.prefixlen <= (vip.prefixlen or 32)
               and inet.network_contains(inet.AF_INET, inet.parse_ip(address.address)[1],
                                         address.prefixlen, vip.packed)]
    return inet.broadcast_of(vip.packed, max(lengths)) if lengths else None


def served(vip: Vip) -> tuple[netlink.Address, netlink.Link] | None:
    """The address and its link when vip is configured here: on its nic (any nic when not
    configured) with its prefix length (any when not configured). None otherwise, also
    when the nic has vanished."""
    index = 0
    if vip.nic:
        link = netlink.link_by_name(vip.nic)
        if link is None:
            return None
        index = link.index
    for address in netlink.addresses(vip.family, index):
        if address.address == vip.ip and vip.prefixlen in (None, address.prefixlen):
            return address, (link if index else _link_of(address.index))
    return None


def _link_of(index: int) -> netlink.Link:
    for link in netlink.links():
        if link.index == index:
            return link
    raise NotOnThisNode(f"interface number {index} vanished")


def wait_for_dad(vip: Vip, deadline: float) -> None:
    """Wait until the kernel's duplicate address detection is done with the address. Raises
    DadFailed when another host has it, TimeoutError when DAD outlasts the deadline."""
    while True:
        found = served(vip)
        if found is None:
            raise DadFailed(f"{vip.ip} vanished from {vip.nic} during duplicate address "
                            f"detection")
        address = found[0]
        if address.dadfailed:
            raise DadFailed(f"duplicate address detection failed: another host on {vip.nic} "
                            f"already uses {vip.ip}")
        if not address.tentative:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"duplicate address detection of {vip.ip} did not finish "
                               f"before the start timeout")
        time.sleep(0.05)


def enter_netns(name: str, script: str, action: str) -> None:
    """Re-run this action of script inside the network namespace `name` (made by `ip netns
    add`); nothing when name is empty or this already runs inside it. NotOnThisNode when the
    namespace does not exist here, NotInstalled without `ip`. Only then
    is script resolved to its real path (a dozen system calls that every monitor passed)."""
    if not name or os.environ.get("KUTH_NETNS") == name:
        return
    if name.startswith(("-", ".")) or "/" in name or not name.isprintable() or len(name) > 255:
        raise ConfigInvalid(f"network_namespace {name!r} is not a valid name")
    if not os.path.exists(f"/run/netns/{name}"):
        raise NotOnThisNode(f"network namespace {name!r} does not exist on this node")
    os.environ["KUTH_NETNS"] = name
    try:
        os.execvp("ip", ["ip", "netns", "exec", name, sys.executable, "-IS",
                         os.path.realpath(script), action])
    except FileNotFoundError:
        raise NotInstalled("ip (iproute2) is not installed on this node; network_namespace "
                           "needs it") from None


def reset_connections(vip: Vip, log: "Logger") -> None:
    """Close every TCP connection this node holds on the address, each client getting a
    reset, the first ones while the kernel is still listing the rest (see
    ocf_lib.adapters.sock_diag.reset); call it while the address is still here, just before
    removing it. First the node stops taking packets for the address (its local route
    goes, over netlink: no fork): a client that reconnects at once would otherwise
    land here again, in the moment before the address goes, on a connection nobody will
    answer. A kernel that cannot is a warning, never a failure: the address must still go."""
    from ocf_lib.adapters import iproute, sock_diag
    try:
        iproute.delete_local_route(vip.nic or "", vip.ip)
    except (iproute.IprouteError, ValueError) as err:
        log.warning(f"new connections to {vip.ip} still taken until it goes: {err}")
    try:
        closed = sock_diag.reset(vip.ip)
    except OSError as err:  # Unsupported among them
        log.warning(f"connections on {vip.ip} left open: {err}")
        return
    if closed:
        log.info(f"reset {closed} connection(s) on {vip.ip}")
