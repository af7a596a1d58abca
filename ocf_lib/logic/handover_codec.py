"""The text form of a hand-over: the long-lived TCP connections on a floating address, as
attrd attribute values (see ocf_lib.logic.handover for who writes and reads them).

A value has to pass through `attrd_updater -U VALUE`, attrd's IPC and Corosync, and back out
of `attrd_updater -Q` between double quotes. So it is plain ASCII without spaces, quotes or
XML specials (base64), and each value stays far below the 128 KiB that Linux allows one
command-line argument (MAX_ARG_STRLEN) and that Pacemaker's IPC buffer holds uncompressed
(2.1.5 and 3.0.0 compress a larger message with bzip2 first).

A list is a sorted binary form, then deflated, then base64: connections grouped by the port
on the address (one or two: 6443, 443), then by client, each client's address as the
difference to the previous one (clients of one subnet sort close together: one or two
bytes for IPv4, about eight for random IPv6 interface identifiers) and its ports as two
bytes each (ephemeral ports are random: there is nothing to save on them). About 3.2
characters a connection for IPv4 clients with three connections each, 14 for IPv6 clients
with one (docs/handover.md has the figures).

A large list is cut into shards by a hash of the connection, so that a connection stays in
its shard while the others come and go, and one shard rewritten alone still describes its
part of the list.
"""

import array
import binascii
import sys
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections costs the resident watcher a millisecond and memory
    from collections.abc import Iterable

Record = int  # a connection: client's address << 32 | client's port << 16 | port on the address
Connection = tuple[bytes, int, int]  # the same unpacked: (client's packed address, ports)

VERSION = "1"  # the first field of a header: a reader skips a form it does not know
INLINE_MAX = 4_000  # characters of a list that stays whole in its header (no base)
SHARD_TARGET = 64_000  # characters a shard or a header aims at
SHARD_MAX = 96_000  # characters a value never exceeds: under 128 KiB with attrd's XML around
MAX_SHARDS = 32
EXPECTED_CHARS = {4: 4, 16: 15}  # characters a connection takes, by address size: the sizing


def pack(client: bytes, client_port: int, port: int) -> Record:
    """A connection as one integer: a set of 50,000 takes a fifth of the memory of tuples,
    in a watcher that keeps two or three."""
    return int.from_bytes(client, "big") << 32 | client_port << 16 | port


def encode(records: "Iterable[Record]", size: int) -> str:
    """The text of records ('' for none), clients' addresses of size bytes."""
    by_port: dict[int, list[int]] = {}
    for record in records:
        by_port.setdefault(record & 0xFFFF, []).append(record >> 16)
    if not by_port:
        return ""
    out = bytearray([size])
    for port in sorted(by_port):
        clients: list[tuple[int, list[int]]] = []
        for end in sorted(by_port[port]):  # client << 16 | client's port
            if not clients or clients[-1][0] != end >> 16:
                clients.append((end >> 16, []))
            clients[-1][1].append(end & 0xFFFF)
        _varint(out, port)
        _varint(out, len(clients))
        previous = 0
        for client, ports in clients:
            _varint(out, client - previous)
            _varint(out, len(ports))
            out += b"".join(p.to_bytes(2, "big") for p in ports)
            previous = client
    return binascii.b2a_base64(zlib.compress(out), newline=False).decode("ascii")


def decode(text: str) -> list[Connection]:
    """The connections of a text encode() made ([] for ''); ValueError when it is not one.
    At a takeover this is on the clients' path (50,000 connections in about 20 ms): a
    client's address is made once, and its ports come out of the bytes all at once."""
    if not text:
        return []
    try:
        data = zlib.decompress(binascii.a2b_base64(text.encode("ascii")))
    except (binascii.Error, zlib.error, UnicodeEncodeError) as err:
        raise ValueError(f"not a list of connections: {err}") from None
    if not data or data[0] not in EXPECTED_CHARS:
        raise ValueError("not a list of connections: unknown address size")
    size, at, connections = data[0], 1, []
    swap = sys.byteorder == "little"
    try:
        while at < len(data):
            port, at = _read_varint(data, at)
            clients, at = _read_varint(data, at)
            if port > 0xFFFF:
                raise ValueError("not a list of connections: it is damaged")
            number = 0
            for _ in range(clients):  # most steps and counts take one byte: read at once
                step = data[at]
                step, at = (step, at + 1) if step < 0x80 else _read_varint(data, at)
                count = data[at]
                count, at = (count, at + 1) if count < 0x80 else _read_varint(data, at)
                number += step
                end = at + 2 * count
                if end > len(data) or number >> 8 * size:
                    raise ValueError("not a list of connections: it is cut short or damaged")
                client = number.to_bytes(size, "big")
                if count == 1:
                    connections.append((client, data[at] << 8 | data[at + 1], port))
                else:
                    ports = array.array("H", data[at:end])
                    if swap:
                        ports.byteswap()
                    connections += [(client, client_port, port) for client_port in ports]
                at = end
    except IndexError:
        raise ValueError("not a list of connections: it is cut short") from None
    return connections


def header(shards: int, records: "Iterable[Record]", size: int) -> str:
    """The value that names the shards of a list and holds its other records (a delta, or
    the whole list when it has no shards)."""
    return f"{VERSION}:{shards}:{encode(records, size)}"


def parse_header(value: str | None) -> tuple[int, list[Connection]]:
    """(shards, connections) of a header; (0, []) for none. ValueError for a value this
    version cannot read (another version's, or damaged)."""
    if not value:
        return 0, []
    version, _, rest = value.partition(":")
    shards, _, text = rest.partition(":")
    if version != VERSION or not shards.isdigit() or int(shards) > MAX_SHARDS:
        raise ValueError(f"not a hand-over header of version {VERSION}: {value[:40]!r}")
    return int(shards), decode(text)


def shard_name(attribute: str, shards: int, index: int) -> str:
    """The attribute that holds shard index of a list in shards: a new number of shards
    writes new attributes, so that a header and the shards it names always go together."""
    return f"{attribute}-{shards}-{index}"


def shard_of(record: Record, shards: int) -> int:
    """The shard a connection lives in: the same as long as the number of shards stays."""
    return (record >> 16 ^ record >> 32) % shards


def shard_count(records: int, size: int) -> int:
    """How many shards a list of that many records of that address size needs (0: small
    enough to be rewritten whole in its header), a power of two, at most MAX_SHARDS."""
    chars = records * EXPECTED_CHARS[size]
    shards = 0 if chars <= INLINE_MAX else 1
    while shards and chars > shards * SHARD_TARGET and shards < MAX_SHARDS:
        shards *= 2
    return shards


def split(records: "Iterable[Record]", shards: int, size: int) -> list[str]:
    """The texts of records cut into shards (shard_of)."""
    parts: list[list[Record]] = [[] for _ in range(shards)]
    for record in records:
        parts[shard_of(record, shards)].append(record)
    return [encode(part, size) for part in parts]


def _varint(out: bytearray, number: int) -> None:
    """number (>= 0) in 7-bit groups, lowest first, the high bit saying more follow."""
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    number = shift = 0
    while True:
        byte = data[at]
        at += 1
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            return number, at
        shift += 7
        if shift > 140:
            raise ValueError("not a list of connections: a number runs on")
