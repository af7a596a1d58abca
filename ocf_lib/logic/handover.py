"""The long-lived connections on a floating address, handed from its owner to the other
nodes, so that the node that takes the address over after losing the owner can tickle
their clients (ocf_lib.adapters.tickle) instead of leaving them on a dead connection until
their own timeout.

The owner's watcher (ocf_lib.helpers.watcher) runs a HandOver; the start that takes
the address over leaves a tickler (TakeOver). Neither is on a monitor's or a stop's path:
the agent imports this module only in start, the watcher only when it hands over.

The list lives in private attrd attributes of every other node (held by attrd, never
written to the CIB; a lost node's own attributes go with it, those it wrote for the
survivors stay), in the text form of ocf_lib.logic.handover_codec: a header, and for a list
too long for one value, shards. What it costs stays bounded as connections come and go:

- deltas: the shards hold a base, the header the connections added since, and only the
  header is rewritten until the headers written since the base add up to the base's size:
  then a new base costs no more than they did (the ski-rental rule; with a delta that
  grows steadily it makes the base's period the one that writes least). A connection gone
  stays in the list until the next base, or until STALE_FRACTION of the base is gone (one
  useless ACK on a takeover: its client answers with a reset the new owner ignores);
- a rate limit: RATE characters a second on average (a token bucket), whatever the churn;
- nothing written while nothing changed: every VERIFY_PERIOD the owner reads the headers
  back (a local question to attrd, nothing on the ring) and writes again only for a node
  that lacks its list (attrd drops what was written for a node that was away).

CTDB, the model, sends its whole tickle list to every node whenever it changed, at most
every 20 s (tickle_update_interval), and sends the tickles with each of its three ARPs.
"""

import os
import time

from ocf_lib.adapters import pacemaker, process
from ocf_lib.logic import handover_codec as codec
from ocf_lib.helpers.go import give_go, went

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocf_lib.adapters import sock_diag
    from ocf_lib.adapters.tickle import Tickle

    Clock = Callable[[], float]

HANDOVER_MAX = 65_536  # connections a node hands over for one address
HANDOVER_PERIOD = 2.0  # seconds between two looks at the connections
VERIFY_PERIOD = 30.0  # seconds between two checks that every other node holds the list
STALE_FRACTION = 0.25  # connections of the base gone that make a new base
RATE = 64_000  # characters a second written on average, to all other nodes together
BURST = 2_000_000  # characters the rate limit lets through at once after a quiet time


def handover_attribute(resource: str) -> str:
    """The private node attribute that carries the header of the connections to tickle."""
    return f"kuth-{resource.split(':', 1)[0]}-connections"


class Bucket:
    """A token bucket: spend() is allowed while the bucket is not in debt, and refills at
    rate a second up to burst; a large write may leave it in debt for a while."""

    def __init__(self, rate: float, burst: float, clock: "Clock" = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.at = burst, clock()

    def allows(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens >= 0

    def spend(self, amount: int) -> None:
        self.tokens -= amount


class HandOver:
    """The owner's side, called by its watcher every HANDOVER_PERIOD: tell every other node
    which long-lived connections this node holds on ip. A connection counts once two looks
    in a row saw it established (short requests come and go between them)."""

    period = HANDOVER_PERIOD  # what the watcher waits between two calls

    def __init__(self, ip: str, resource: str, node: str,
                 clock: "Clock" = time.monotonic) -> None:
        from ocf_lib.adapters import inet
        self.ip = ip
        self.size = len(inet.parse_ip(ip)[1])
        self.attribute = handover_attribute(resource)
        self.node = node
        self.clock = clock
        self.bucket = Bucket(RATE, BURST, clock)
        self.seen: set[codec.Record] = set()
        self.peers: list[str] = []
        self.verified = -VERIFY_PERIOD
        self.base: set[codec.Record] = set()  # in the shards
        self.base_chars = 0
        self.since_base = 0  # characters of the headers written since the base (one copy)
        self.shards = 0
        self.delta: set[codec.Record] | None = None  # in the header; None: write all anew
        self.header = ""

    def __call__(self) -> None:
        """One round; OSError or PacemakerError when the list could not be read or told."""
        self.round(self.look())

    def round(self, now: set[codec.Record]) -> None:
        """One round with the connections established now (look())."""
        current = now & self.seen
        self.seen = now
        if len(current) > HANDOVER_MAX:
            current = set(sorted(current)[:HANDOVER_MAX])
        if self.clock() >= self.verified + VERIFY_PERIOD:
            self.verify()
        self.update(current)

    def look(self, connections: "list[sock_diag.Connection] | None" = None
             ) -> set[codec.Record]:
        """The established connections on the address (of connections, when given: those
        sock_diag.on_addresses found for it), clients in its family (an IPv4 client of a
        dual-stack socket appears as ::ffff:a.b.c.d)."""
        from ocf_lib.adapters import inet, sock_diag
        found = set()
        for conn in sock_diag.on_address(self.ip) if connections is None else connections:
            if conn.state == sock_diag.ESTABLISHED:
                client = inet.parse_ip(conn.remote[0])[1][-self.size:]
                found.add(codec.pack(client, conn.remote[1], conn.local[1]))
        return found

    def verify(self) -> None:
        """Learn the other nodes, and whether each still holds the header last written; a
        node that does not gets everything anew at the next update."""
        members = pacemaker.member_names(joined=True)
        self.verified_as([peer for peer in members if peer != self.node], self.lost(members))

    def lost(self, members: list[str]) -> bool:
        """Whether a member lacks the header last written (attrd drops what was written
        for a node while it was away)."""
        if self.delta is None:
            return False
        peers = [peer for peer in members if peer != self.node]  # never written for itself
        held = pacemaker.attribute_values(self.attribute, peers)
        return any(held.get(peer) != self.header for peer in peers)

    def verified_as(self, peers: list[str], lost: bool) -> None:
        """Take peers as the other nodes; everything is written anew at the next update when
        they changed or a peer lost its list. A node that left and came back lost what attrd
        held for it, while the local copy of its value may survive: its return changes the
        peers, which rewrites all."""
        if lost or peers != self.peers:
            self.delta = None
        self.peers = peers
        self.verified = self.clock()

    def update(self, current: set[codec.Record]) -> None:
        """Write what changed, within the rate limit: the header with the delta against
        the base, or a new base when the headers cost as much as one, or the connections
        gone since the base grew too many (or when all is to be written anew)."""
        delta = current - self.base
        stale = len(self.base) - len(self.base & current) > STALE_FRACTION * len(self.base)
        if delta == self.delta and not stale or not self.peers or not self.bucket.allows():
            return
        if self.delta is None or stale:
            self.rebase(current)
            return
        header = codec.header(self.shards, delta, self.size)
        if len(header) > (codec.SHARD_TARGET if self.shards else codec.INLINE_MAX) or (
                self.shards and self.since_base + len(header) > self.base_chars):
            self.rebase(current)
            return
        self.write(self.attribute, header)
        self.delta, self.header = delta, header
        self.since_base += len(header)

    def rebase(self, current: set[codec.Record]) -> None:
        """Write current as the new base: its shards first, then the header that names
        them, then drop the shards of an earlier number of shards. A write that fails
        leaves all to be written anew."""
        self.delta = None
        shards = codec.shard_count(len(current), self.size)
        header = codec.header(0, current, self.size) if not shards else ""
        if len(header) > codec.INLINE_MAX:
            shards = 1
        texts = codec.split(current, shards, self.size) if shards else []
        while shards < codec.MAX_SHARDS and any(len(t) > codec.SHARD_MAX for t in texts):
            shards *= 2
            texts = codec.split(current, shards, self.size)
        for index, text in enumerate(texts):
            self.write(codec.shard_name(self.attribute, shards, index), text)
        if shards:
            header = codec.header(shards, (), self.size)
        self.write(self.attribute, header)
        if self.shards != shards:
            for index in range(self.shards):
                for peer in self.peers:
                    pacemaker.delete_attribute(codec.shard_name(self.attribute, self.shards,
                                                                index), node=peer)
        self.base = current if shards else set()
        self.base_chars = sum(map(len, texts))
        self.since_base = 0
        self.shards = shards
        self.delta = current - self.base
        self.header = header

    def write(self, name: str, value: str) -> None:
        """value as name of every other node, counted against the rate limit."""
        for peer in self.peers:
            pacemaker.update_attribute(name, value, node=peer, private=True)
        self.bucket.spend(len(value) * len(self.peers))


class HandOvers:
    """Every address of a node that hands over, served together by the node's watcher:
    one look at the connections of all of them (sock_diag.on_addresses) every period, and
    one question to the membership every VERIFY_PERIOD, with one address's list asked
    back of every other node (attrd drops all a node held when it was away, so one tells
    for all). The cost of an idle node stays that of one address, whatever their number."""

    period = HANDOVER_PERIOD  # what the watcher waits between two calls

    def __init__(self, node: str, clock: "Clock" = time.monotonic) -> None:
        self.node, self.clock = node, clock
        self.members: dict[str, HandOver] = {}  # by resource
        self.verified = -VERIFY_PERIOD

    def add(self, ip: str, resource: str) -> None:
        self.members[resource] = HandOver(ip, resource, self.node, self.clock)

    def remove(self, resource: str) -> None:
        self.members.pop(resource, None)

    def __call__(self) -> dict[str, str]:
        """One round for every address; what failed, by resource (a failure of one
        address leaves the others' rounds alone)."""
        from ocf_lib.adapters import sock_diag
        from ocf_lib.adapters.pacemaker import PacemakerError
        members = dict(self.members)  # the watcher adds and removes meanwhile
        failures = {}
        if members and self.clock() >= self.verified + VERIFY_PERIOD:
            try:
                self.verify(members)
            except (OSError, PacemakerError) as err:
                failures = dict.fromkeys(members, str(err))
        try:
            found = sock_diag.on_addresses([h.ip for h in members.values()])
        except OSError as err:
            return dict.fromkeys(members, str(err))
        for resource, hand_over in members.items():
            try:
                hand_over.round(hand_over.look(found[hand_over.ip]))
            except (OSError, PacemakerError) as err:
                failures[resource] = str(err)
        return failures

    def verify(self, hand_overs: dict[str, HandOver]) -> None:
        members = pacemaker.member_names(joined=True)
        peers = [peer for peer in members if peer != self.node]
        sample = next((h for h in hand_overs.values() if h.delta is not None), None)
        lost = sample.lost(members) if sample else False
        for hand_over in hand_overs.values():
            hand_over.verified_as(peers, lost)
        self.verified = self.clock()


class HandedOver:
    """The list handed over to node for resource, asked of attrd in steps, so that a
    tickler does other work while attrd answers: the header at once (made), the shards it
    names (ask_shards, once the header is known), then connections()."""

    def __init__(self, resource: str, node: str) -> None:
        self.attribute = handover_attribute(resource)
        self.node = node
        self.header = pacemaker.AttributeQuery(self.attribute, node)
        self.shards: dict[str, pacemaker.AttributeQuery] = {}
        self.problems: list[str] = []
        self.delta: list[codec.Connection] = []

    def ask_shards(self) -> None:
        """Wait for the header; ask for the shards it names."""
        try:
            count, self.delta = codec.parse_header(self.header.value())
        except ValueError as err:
            self.problems.append(str(err))
            return
        names = (codec.shard_name(self.attribute, count, i) for i in range(count))
        self.shards = {name: pacemaker.AttributeQuery(name, self.node) for name in names}

    def connections(self) -> list[codec.Connection]:
        """Every connection the shards and the header hold, in no order; one damaged shard
        costs its own part only (problems says which). A connection that is in the header
        as well as in a shard (it was gone and came back since the shards were written) is
        there twice: its second tickle costs its client one answer, no more."""
        found: list[codec.Connection] = []
        for name, query in self.shards.items():
            try:
                found += codec.decode(query.value() or "")
            except ValueError as err:
                self.problems.append(f"{name}: {err}")
        return found + self.delta

    def forget(self) -> None:
        """Delete the header and its shards. Never fails: the next owner writes them anew."""
        for name in [self.attribute, *self.shards]:
            try:
                pacemaker.delete_attribute(name, node=self.node)
            except pacemaker.PacemakerError:
                pass


TICKLER = "kuth-tickler"  # the take-over's process name
TICKLER_WAIT = 120.0  # seconds a tickler waits for its start to have announced the address
TICKLER_TIDY = 5.0  # seconds after its tickles that it forgets the list, once the failover is done
# Each client is tickled TICKLE_ROUNDS times, TICKLE_SPACING seconds apart at least: a
# tickle, or the client's answer, or the announcement before it (the agent's default five
# go out 0.2 s apart) lost once is made good by the next round, as CTDB repeats its tickles
# with each of its ARPs. A client's kernel answers an out-of-window ACK once per 500 ms of
# a connection (net.ipv4.tcp_invalid_ratelimit): a tickle sooner after the one it answered
# would be wasted.
TICKLE_ROUNDS = 3
TICKLE_SPACING = 0.55
# Within a round, batches of at most TICKLE_BATCH every TICKLE_GAP seconds: 200,000 a
# second, 50,000 clients in 0.25 s. A batch is one default transmit queue (txqueuelen 1000);
# on 1 Gbit/s it leaves in 0.7 ms (84 bytes a frame on the wire), so the queue is empty again
# long before the next, and a client network sees 134 Mbit/s at most; the clients' answers
# and their reconnections reach the listener spread the same way, not in one burst
# that overflows its accept queue (somaxconn 4096).
TICKLE_BATCH = 1000
TICKLE_GAP = 0.005
# A tickle's send costs the sender what the kernel does for it on the sending CPU: 2.5 µs
# where the answers come back on other CPUs (a NIC that spreads its receive work), about
# 10 µs where the whole exchange runs within the send (the lab, whose hosts are namespaces of
# one machine: the tickle, the client's answer and this node's reset). One process then
# needs half a second for 50,000; TICKLE_SENDERS share the batches, one a CPU.
TICKLE_SENDERS = 2


def tickle_rounds(batches: int, send: "Callable[[int], int]", clock: "Clock" = time.monotonic,
                  sleep: "Callable[[float], object]" = time.sleep, gap: float = TICKLE_GAP
                  ) -> int:
    """Call send(batch) for batches 0..batches-1, TICKLE_ROUNDS times each: a batch
    gap after the one before at least, and TICKLE_SPACING after its own previous
    send at least (from when that send was done: a round that took longer than planned
    delays the next one's batches, never brings a client's tickles closer). Return what
    the first round's sends returned, summed."""
    sent_at = [float("-inf")] * batches
    reached = 0
    due = clock()
    for round_ in range(TICKLE_ROUNDS):
        for batch in range(batches):
            due = max(due, sent_at[batch] + TICKLE_SPACING)
            wait = due - clock()
            if wait > 0:
                sleep(wait)
            sent = send(batch)
            sent_at[batch] = clock()
            if not round_:
                reached += sent
            due += gap
    return reached


class TakeOver:
    """What a start does for the clients of the node it replaces: tickle those of the
    connections that node handed over (HandOver), as soon as the address is announced,
    without making start wait. Made before the address is added, it leaves a process of
    its own (TICKLER) that asks attrd for the list at once (attrd, busy in a failover,
    answers in tens of milliseconds, while the address goes up) and tickles once start
    calls announced(). A start that fails or dies before never calls it: the process then
    ends without tickling. OSError when the process could not be started."""

    def __init__(self, ip: str, resource: str, node: str) -> None:
        self.ip = ip
        go, self._announced = os.pipe()
        try:
            self.pid = process.spawn_detached(lambda: _take_over(ip, resource, node, go),
                                              keep=(go,), name=TICKLER)
        except OSError:
            os.close(self._announced)
            raise
        finally:
            os.close(go)

    def announced(self) -> None:
        """The address is here and announced: the tickles may go. Never fails (a tickler
        gone has nothing to tickle)."""
        give_go(self._announced, True)


def _take_over(ip: str, resource: str, node: str, go: int) -> None:
    """The tickler's life: ask attrd for the list's header while start adds the address
    (at nice 10: start comes first); once start says the address is announced, take the
    priority back (its own and the question's: what follows is on clients' path), end
    this node's remains on the address while attrd answers for the shards, send the
    tickles (tickle_clients) and, once the rest of the failover has run, forget the list.
    To syslog."""
    import syslog
    handed = HandedOver(resource, node)
    if not went(go, TICKLER_WAIT):
        return  # start failed, or never got there
    process.hurry(*handed.header.pids())
    handed.ask_shards()
    end_remains(ip)
    connections = handed.connections()
    for problem in handed.problems:
        syslog.syslog(syslog.LOG_WARNING, f"part of the hand-over of {ip} is lost: {problem}")
    if not connections:
        return
    try:
        sent = tickle_clients(ip, connections)
    except OSError as err:
        syslog.syslog(syslog.LOG_WARNING, f"cannot tickle the clients of {ip}: {err}")
    else:
        syslog.syslog(syslog.LOG_NOTICE, f"tickled {sent} client(s) of connections handed "
                                         f"over on {ip}, {TICKLE_ROUNDS} times each")
    time.sleep(TICKLER_TIDY)
    handed.forget()


def end_remains(ip: str) -> None:
    """End this node's TIME_WAIT remains on ip before its clients are tickled (it may have
    held the address less than a minute ago; see ocf_lib.adapters.sock_diag.time_waits): a
    client's answer that met one would get an ACK, not the reset. Linux before 6.0 cannot
    end them; the tickles go out all the same. Never fails."""
    from ocf_lib.adapters import sock_diag
    try:
        sock_diag.destroy(sock_diag.time_waits(ip))
    except (sock_diag.Unsupported, OSError):
        pass


def tickle_clients(ip: str, connections: "list[codec.Connection]") -> int:
    """Tickle, from ip (now here), the clients of connections another node held on it,
    in tickle_rounds, from TICKLE_SENDERS processes at most (one a CPU), each with its share
    of the batches at its share of the pace; return how many the first round reached.
    OSError when none can be sent from this process."""
    batches = -(-len(connections) // TICKLE_BATCH)
    senders = max(1, min(TICKLE_SENDERS, len(os.sched_getaffinity(0)), batches))
    gap = TICKLE_GAP * senders
    others = [_fork_sender(ip, connections, range(share, batches, senders), gap)
              for share in range(1, senders)]
    try:
        return (_send_share(ip, connections, range(0, batches, senders), gap)
                + sum(map(_reached, others)))
    except OSError:
        for child in others:
            _reached(child)
        raise


def _send_share(ip: str, connections: "list[codec.Connection]", mine: range, gap: float,
                parent: int | None = None) -> int:
    """Send the batches mine of connections in tickle_rounds, gap apart at least, each
    prepared just before its first send (so the first tickles leave at once); return how
    many the first round reached. With parent, end (without a word) once that process is
    gone: a stop that ended the tickler ends its other senders too."""
    from ocf_lib.adapters import tickle
    sender = tickle.Sender(ip)
    preparer = tickle.Preparer(ip)
    prepared: dict[int, list[Tickle]] = {}

    def send(index: int) -> int:
        if parent is not None and os.getppid() != parent:
            os._exit(0)
        if index not in prepared:
            first = mine[index] * TICKLE_BATCH
            prepared[index] = preparer.prepare(connections[first:first + TICKLE_BATCH])
        return sender.send(prepared[index])

    try:
        return tickle_rounds(len(mine), send, gap=gap)
    finally:
        sender.close()


def _fork_sender(ip: str, connections: "list[codec.Connection]", mine: range,
                 gap: float) -> tuple[int, int]:
    """A process that sends the batches mine (_send_share) and writes how many its first
    round reached to a pipe: (its pid, the pipe's read end)."""
    parent = os.getpid()
    readable, writable = os.pipe()
    pid = os.fork()
    if not pid:
        reached = 0
        try:
            os.close(readable)
            reached = _send_share(ip, connections, mine, gap, parent)
        except Exception:  # nothing to report but its count
            pass
        finally:
            try:
                os.write(writable, str(reached).encode())
            finally:
                os._exit(0)
    os.close(writable)
    return pid, readable


def _reached(child: tuple[int, int]) -> int:
    """Wait for a sender _fork_sender made; what its first round reached (0 when it
    failed)."""
    pid, readable = child
    try:
        os.waitpid(pid, 0)
        return int(os.read(readable, 32) or b"0")
    finally:
        os.close(readable)
