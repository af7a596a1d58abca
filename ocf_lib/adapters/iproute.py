"""Changes to addresses and links as `ip` makes them, and route-based nic lookup.

The changes on a failover's path (adding and removing the address, dropping its local
route) are sent over rtnetlink (ocf_lib.adapters.netlink): a fork and exec of `ip` would
cost milliseconds while clients wait. They behave, and fail, as the `ip` command would
that each names in its docstring: its errors carry that command (IprouteError.argv) and
ip's own words ("Error: ipv4: Address already assigned.", from the kernel's extended
acknowledgement, as ip prints it), so that the cluster's exit reason reads the same.
The rarer changes and the route lookup run `ip` itself. Every value that becomes an
argument comes from untrusted resource parameters and is checked before anything runs.
"""
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

from ocf_lib.adapters import inet, netlink

IP = "ip"
TIMEOUT = 10.0  # seconds; `ip` answers in milliseconds unless the kernel is stuck
RTNETLINK_FAILED = 2  # ip's exit code when the kernel refuses a request
_ESRCH = 3  # what the kernel answers for a label that is not there


class IprouteError(Exception):
    """`ip` failed; str() is ip's own first stderr line, usable as an OCF exit reason."""

    def __init__(self, argv: list[str], rc: int, stderr: str) -> None:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        super().__init__(lines[0] if lines else f"'{' '.join(argv)}' failed with exit code {rc}")
        self.argv = argv
        self.rc = rc
        self.stderr = stderr


class FindifError(Exception):
    """No interface or prefix length can be derived for an address; str() says what to set."""


class Found:
    """Where a floating address belongs: interface, prefix length and IPv4 broadcast."""

    __slots__ = ("nic", "prefixlen", "broadcast")

    def __init__(self, nic: str, prefixlen: int, broadcast: str | None) -> None:
        self.nic = nic
        self.prefixlen = prefixlen
        self.broadcast = broadcast

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Found) and (self.nic, self.prefixlen, self.broadcast) == (
            other.nic, other.prefixlen, other.broadcast)

    def __repr__(self) -> str:
        return f"Found(nic={self.nic!r}, prefixlen={self.prefixlen}, broadcast={self.broadcast!r})"


def add_address(dev: str, address: str, prefixlen: int, *, broadcast: str | None = None,
                label: str | None = None, nodad: bool = False, noprefixroute: bool = False,
                preferred_lft: int | str | None = None) -> None:
    """`ip addr add ADDRESS/PREFIXLEN [brd B] dev DEV [nodad] [noprefixroute] [label L]
    [preferred_lft T]`. broadcast may be an IPv4 address, or "+"/"-" (the address with
    its host bits set/cleared, as ip derives it)."""
    argv = ["addr", "add", _prefixed(address, prefixlen)]
    family, packed = inet.parse_ip(address)
    brd = None
    if broadcast is not None:
        argv += ["brd", _broadcast(broadcast)]
        brd = _broadcast_bytes(broadcast, packed, prefixlen)
    argv += ["dev", netlink.valid_ifname(dev, "dev")]
    flags = 0
    if nodad:
        argv.append("nodad")
        flags |= netlink.IFA_F_NODAD
    if noprefixroute:
        argv.append("noprefixroute")
        flags |= netlink.IFA_F_NOPREFIXROUTE
    if label is not None:
        argv += ["label", netlink.valid_label(_arg(label, "label"), dev)]
    lifetime = None
    if preferred_lft is not None:
        argv += ["preferred_lft", _lifetime(preferred_lft)]
        lifetime = netlink.FOREVER if str(preferred_lft) == "forever" else int(preferred_lft)
    _netlink(argv, dev, lambda index: netlink.add_address(
        index, family, packed, prefixlen, broadcast=brd, label=label, flags=flags,
        preferred_lft=lifetime))


def delete_address(dev: str, address: str, prefixlen: int) -> None:
    """`ip addr del ADDRESS/PREFIXLEN dev DEV`."""
    argv = ["addr", "del", _prefixed(address, prefixlen), "dev",
            netlink.valid_ifname(dev, "dev")]
    family, packed = inet.parse_ip(address)
    _netlink(argv, dev, lambda index: netlink.delete_address(index, family, packed,
                                                             prefixlen))


def delete_local_route(dev: str, address: str) -> None:
    """`ip route del local ADDRESS dev DEV table local`: the node stops taking packets for
    address (a new connection's SYN goes unanswered) while the address stays on dev, so
    the node can still send from it (a reset, say) until the address itself goes."""
    family, packed = inet.parse_ip(_arg(address, "address"))
    argv = ["route", "del", "local", inet.canonical(family, packed), "dev",
            netlink.valid_ifname(dev, "dev"), "table", "local"]
    _netlink(argv, dev, lambda index: netlink.delete_local_route(index, family, packed))


def label_address(address: str, label: int) -> None:
    """`ip addrlabel add prefix ADDRESS/128 label LABEL`, replacing a label the address
    has already (a leftover of an earlier run with another value): an IPv6 source
    address whose label no destination shares loses source selection (RFC 6724 rule 6),
    so the node's own connections do not leave from it."""
    family, packed = inet.parse_ip(_arg(address, "address"))
    if family != inet.AF_INET6:
        raise ValueError(f"address labels are for IPv6 addresses; {address} is not one")
    if not 0 <= label < netlink.FOREVER:  # the kernel keeps 0xffffffff for "no label"
        raise ValueError(f"address label {label} is out of range 0..{netlink.FOREVER - 1}")
    prefix = f"{inet.canonical(family, packed)}/128"
    argv = [IP, "addrlabel", "add", "prefix", prefix, "label", str(label)]
    try:
        current = netlink.address_labels().get((inet.canonical(family, packed), 128))
        if current == label:
            return
        if current is not None:
            netlink.delete_address_label(packed, 128)
        netlink.add_address_label(packed, 128, label)
    except netlink.NetlinkError as err:
        raise IprouteError(argv, RTNETLINK_FAILED, _as_ip_says(err)) from None


def unlabel_address(address: str) -> None:
    """`ip addrlabel del prefix ADDRESS/128`, when the address has a label of its own."""
    family, packed = inet.parse_ip(_arg(address, "address"))
    if family != inet.AF_INET6:
        raise ValueError(f"address labels are for IPv6 addresses; {address} is not one")
    argv = [IP, "addrlabel", "del", "prefix", f"{inet.canonical(family, packed)}/128"]
    try:
        netlink.delete_address_label(packed, 128)
    except netlink.NetlinkError as err:
        if err.errno != _ESRCH:  # it had none
            raise IprouteError(argv, RTNETLINK_FAILED, _as_ip_says(err)) from None


def set_link_up(dev: str) -> None:
    """`ip link set dev DEV up`."""
    _ip(["link", "set", "dev", netlink.valid_ifname(dev, "dev"), "up"])


def flush_route_cache(family: int) -> None:
    """`ip -4|-6 route flush cache`: drop cached routes that still point at the old
    owner of a moved address (heartbeat's flush_routes)."""
    _ip([_family_option(family), "route", "flush", "cache"])


def find_interface(address: str, prefixlen: int | None = None, *,
                   nic: str | None = None, proto: str | None = None) -> Found:
    """Derive the interface and prefix length for address from the main routing table,
    the way heartbeat's findif does when nic= or cidr_netmask= is empty.

    The route chosen is the longest on-link prefix containing address (and at most
    prefixlen long when that is given, and on nic when that is given): for IPv4 a route of
    scope link, for IPv6 one without a gateway. A 127.0.0.0/8 address with no such route
    falls back to the loopback routes of the local table. proto limits the routes to those
    of one protocol (`kernel`, `static`, a number...), as heartbeat 4.16's proto= does.
    The broadcast is computed for
    IPv4 prefixes up to /30 and is None otherwise. Raises FindifError with what to set,
    and ValueError when address is not a plain IP address.
    """
    family, packed = inet.parse_ip(address)
    bits = 32 if family == inet.AF_INET else 128
    if prefixlen is not None and not 1 <= prefixlen <= bits:
        raise ValueError(f"prefix length {prefixlen} is out of range 1..{bits}")
    if family == inet.AF_INET6 and not nic and inet.is_link_local(family, packed):
        raise FindifError(f"{address} is an IPv6 link-local address, valid on one link only; "
                          "set nic=")
    if not (nic and prefixlen):
        route = choose_route(_routes(family, "main", proto), family, packed, prefixlen, nic)
        if route is None and family == inet.AF_INET and packed[0] == 127:
            route = choose_route(_routes(family, "local"), family, packed, prefixlen, nic,
                                 loopback=True)
        if route is None:
            raise FindifError(_no_route_reason(address, prefixlen, nic))
        nic = nic or route["dev"]
        prefixlen = prefixlen or _route_prefixlen(route)
    return Found(nic, prefixlen, _broadcast_for(family, packed, prefixlen))


def choose_route(routes: list[dict], family: int, packed: bytes, prefixlen: int | None,
                 nic: str | None, *, loopback: bool = False) -> dict | None:
    """The route findif would pick from `ip -j route show` entries, or None.

    Host routes and the default route carry no prefix length to learn, so only network
    routes count; among equally long prefixes the lowest metric wins, as in the kernel.
    loopback=True looks for the `local` routes of scope host that cover 127.0.0.0/8.
    """
    best = None
    for route in routes:
        if not _usable(route, family, packed, prefixlen, nic, loopback):
            continue
        key = (_route_prefixlen(route), -route.get("metric", 0))
        if best is None or key > best[0]:
            best = (key, route)
    return None if best is None else best[1]


def _usable(route: dict, family: int, packed: bytes, prefixlen: int | None, nic: str | None,
            loopback: bool) -> bool:
    """Whether route is an on-link network route that covers packed (within prefixlen)."""
    dst = route.get("dst", "")
    if "/" not in dst or "dev" not in route or (nic and route["dev"] != nic):
        return False
    if loopback:
        on_link = route.get("type") == "local" and route.get("dev") == "lo"
    elif family == inet.AF_INET:
        on_link = route.get("type", "unicast") == "unicast" and route.get("scope") == "link"
    else:
        on_link = route.get("type", "unicast") == "unicast" and "gateway" not in route
    net, length = dst.split("/", 1)
    length_ok = prefixlen is None or int(length) <= prefixlen
    return on_link and length_ok and inet.network_contains(
        family, inet.parse_ip(net)[1], int(length), packed)


def _route_prefixlen(route: dict) -> int:
    return int(route["dst"].split("/", 1)[1])


def _routes(family: int, table: str, proto: str | None = None) -> list[dict]:
    """`ip -j -4|-6 route show table TABLE [proto PROTO]` as parsed JSON (json is only
    loaded here, off the monitor path)."""
    import json
    argv = ["-j", _family_option(family), "route", "show", "table", table]
    if proto:
        argv += ["proto", _arg(proto, "proto")]
    return json.loads(_ip(argv) or "[]")


def _no_route_reason(address: str, prefixlen: int | None, nic: str | None) -> str:
    target = address if prefixlen is None else f"{address}/{prefixlen}"
    if nic:
        return (f"nic {nic} has no on-link route covering {target}; "
                "set cidr_netmask=, or the nic that has such a route")
    return f"no interface has a route to {target}; set nic= and cidr_netmask="


def _broadcast_for(family: int, packed: bytes, prefixlen: int) -> str | None:
    """IPv4 broadcast of the address's network; /31 and /32 have none (RFC 3021)."""
    if family != inet.AF_INET or prefixlen > 30:
        return None
    return inet.broadcast_of(packed, prefixlen)


def _netlink(args: list[str], dev: str, change: "Callable[[int], None]") -> None:
    """Make the change that `ip args` makes, on interface dev, over rtnetlink; failures
    as ip reports them (IprouteError)."""
    argv = [IP, *args]
    link = netlink.link_by_name(dev)
    if link is None:
        raise IprouteError(argv, 1, f'Cannot find device "{dev}"')
    try:
        change(link.index)
    except netlink.NetlinkError as err:
        raise IprouteError(argv, RTNETLINK_FAILED, _as_ip_says(err)) from None


def _as_ip_says(err: "netlink.NetlinkError") -> str:
    """A refusal in ip's words: the kernel's own message as "Error: ...", else the errno's
    text after "RTNETLINK answers:"."""
    if err.kernel_message:
        return f"Error: {err.kernel_message.rstrip('.')}."
    import os
    return f"RTNETLINK answers: {os.strerror(err.errno)}"


def _ip(args: list[str]) -> str:
    """Run ip with args; its stdout, or IprouteError with ip's first stderr line. command
    is imported here: the changes on stop's and start's path go over netlink."""
    from ocf_lib.adapters import command
    argv = [IP, *args]
    try:
        result = command.run(argv, timeout=TIMEOUT)
    except command.CommandTimeout as err:
        raise IprouteError(argv, -9, str(err)) from None
    if result.rc != 0:
        raise IprouteError(argv, result.rc, result.stderr)
    return result.stdout


def _arg(value: str, what: str) -> str:
    """value, when it is safe as one `ip` argument: not empty, not option-like, no
    whitespace or control characters (which would let a parameter smuggle in keywords
    or break log lines)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if value.startswith("-"):
        raise ValueError(f"{what} {value!r} must not start with '-'")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(f"{what} {value!r} must not contain whitespace or control characters")
    return value


def _prefixed(address: str, prefixlen: int) -> str:
    """ADDRESS/PREFIXLEN, with address checked to be a plain IP and prefixlen in range."""
    family, packed = inet.parse_ip(_arg(address, "address"))
    bits = 32 if family == inet.AF_INET else 128
    if isinstance(prefixlen, bool) or not isinstance(prefixlen, int) or not 1 <= prefixlen <= bits:
        raise ValueError(f"prefix length {prefixlen!r} is out of range 1..{bits}")
    return f"{inet.canonical(family, packed)}/{prefixlen}"


def _broadcast_bytes(value: str, packed: bytes, prefixlen: int) -> bytes:
    """The broadcast to send for a checked value: "+" and "-" set and clear the host bits."""
    if value not in ("+", "-"):
        return inet.parse_ip(value)[1]
    host_bits = (1 << (32 - prefixlen)) - 1
    number = int.from_bytes(packed, "big")
    return (number | host_bits if value == "+" else number & ~host_bits).to_bytes(4, "big")


def _broadcast(value: str) -> str:
    if value in ("+", "-"):
        return value
    family, packed = inet.parse_ip(_arg(value, "broadcast"))
    if family != inet.AF_INET:
        raise ValueError(f"broadcast {value!r} must be an IPv4 address, '+' or '-'")
    return inet.canonical(family, packed)


def _lifetime(value: int | str) -> str:
    """A lifetime in seconds, or "forever"."""
    text = str(value)
    if text != "forever" and not (text.isascii() and text.isdigit()):
        raise ValueError(f"preferred_lft {value!r} must be a number of seconds or 'forever'")
    return text


def _family_option(family: int) -> str:
    if family == inet.AF_INET:
        return "-4"
    if family == inet.AF_INET6:
        return "-6"
    raise ValueError(f"address family {family!r} is neither AF_INET nor AF_INET6")
