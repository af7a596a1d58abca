"""The connection hand-over (ocf_lib.logic.handover and its text form, handover_codec):
what the owner writes to attrd and when, and what a takeover's tickler reads and tickles.
No root needed and no cluster: attrd is a dictionary (bench.handover_cost's) or a
stand-in attrd_updater, the connections are made up, time is a counter."""
import os
import string
import time

import pytest

from bench import handover_cost as bench
from bench.handover_cost import clients
from ocf_lib.logic import handover
from ocf_lib.logic import handover_codec as codec

V4 = bytes([198, 18, 1, 100])


# -- the text form ----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [4, 16])
def test_a_list_comes_back_from_its_text_whole(size):
    edges = {codec.pack(bytes(size), 1, 443), codec.pack(b"\xff" * size, 65535, 65535)}
    records = clients(3000, ipv6=size == 16) | edges
    decoded = codec.decode(codec.encode(records, size))
    assert {len(client) for client, _, _ in decoded} == {size}
    assert sorted(codec.pack(*connection) for connection in decoded) == sorted(records)
    assert codec.decode(codec.encode([codec.pack(V4, 40001, 6443)], 4)) == [(V4, 40001, 6443)]


def test_no_connection_is_an_empty_text_and_a_header_without_shards():
    assert codec.encode([], 4) == "" and codec.decode("") == []
    assert codec.header(0, [], 4) == "1:0:"
    assert codec.parse_header("1:0:") == codec.parse_header(None) == (0, [])


def test_the_text_passes_through_attrd_updater_and_xml_unchanged():
    """No space, quote, XML special or control character: the value is one argument of
    attrd_updater, sits in an XML attribute, and comes back between double quotes."""
    text = codec.header(4, clients(5000), 4)
    assert set(text) <= set(string.ascii_letters + string.digits + "+/=:")


@pytest.mark.parametrize("text", ["garbage!", "eJwrSS0u0U1KTU4sSgEAHGsEZw==",
                                  codec.encode(clients(100), 4)[:-20], "AAAA"])
def test_a_damaged_text_is_refused_not_misread(text):
    with pytest.raises(ValueError):
        codec.decode(text)


@pytest.mark.parametrize("value", ["none", "198.18.1.100,40001,6443", "2:1:", "1:x:",
                                   "1:999:"])
def test_a_header_of_another_form_is_refused(value):
    """The text form of earlier releases ("none", "client,port,port ..."), a later version,
    a damaged count."""
    with pytest.raises(ValueError):
        codec.parse_header(value)


@pytest.mark.parametrize("ipv6", [False, True])
@pytest.mark.parametrize("count", [2_000, 20_000, 50_000, handover.HANDOVER_MAX])
def test_every_list_up_to_the_maximum_fits_in_bounded_shards(count, ipv6):
    """Also the worst case: IPv6 clients with one connection each (random identifiers)."""
    size = 16 if ipv6 else 4
    records = clients(count, per_client=1 if ipv6 else 3, ipv6=ipv6)
    shards = codec.shard_count(count, size)
    texts = codec.split(records, shards, size)
    assert 1 <= shards <= codec.MAX_SHARDS
    assert max(map(len, texts)) <= codec.SHARD_MAX
    assert sorted(codec.pack(*c) for text in texts for c in codec.decode(text)) == sorted(records)


def test_a_connection_keeps_its_shard_while_others_come_and_go():
    """So a shard rewritten alone (its owner lost in the middle of a new base) still holds
    its part of the list."""
    before = clients(20_000, seed=1)
    after = set(sorted(before)[:15_000]) | clients(5_000, seed=2)
    shards_before = [{codec.pack(*c) for c in codec.decode(t)} for t in codec.split(before, 8, 4)]
    shards_after = [{codec.pack(*c) for c in codec.decode(t)} for t in codec.split(after, 8, 4)]
    for old, new in zip(shards_before, shards_after):
        assert old & after <= new


# -- the owner's side: what is written, and when ------------------------------------------------

class Attrd(bench.Attrd):
    """attrd as a dictionary, for the test's time only, with a made-up clock."""

    def __init__(self, monkeypatch, members=("node1", "node2", "node3")):
        super().__init__(list(members), monkeypatch.setattr)
        self.now = 0.0

    def clock(self):
        return self.now

    def handed_to(self, node: str) -> set[codec.Record]:  # type: ignore[override]
        return super().handed_to(node, "kuth-vip-connections")


def owner(attrd: Attrd, looks: list[set[codec.Record]]) -> handover.HandOver:
    hand_over = handover.HandOver("198.18.1.20", "vip:0", "node1", clock=attrd.clock)
    feed = iter(looks)

    def look():
        hand_over.look_count += 1
        return next(feed)
    hand_over.look_count = 0
    hand_over.look = look  # type: ignore[method-assign]
    return hand_over


def rounds(attrd: Attrd, hand_over: handover.HandOver, count: int) -> None:
    for _ in range(count):
        hand_over()
        attrd.now += handover.HANDOVER_PERIOD


def test_a_connection_seen_twice_in_a_row_is_handed_to_every_other_node(monkeypatch):
    attrd = Attrd(monkeypatch)
    first, second = codec.pack(V4, 40001, 6443), codec.pack(V4, 40002, 6443)
    hand_over = owner(attrd, [{first}, {first, second}, {first, second}, {second}, {second}])
    hand_over()
    assert attrd.handed_to("node2") == attrd.handed_to("node3") == set()
    hand_over()
    assert attrd.handed_to("node2") == attrd.handed_to("node3") == {first}
    assert ("kuth-vip-connections", "node1") not in attrd.values, "not to itself"
    rounds(attrd, hand_over, 3)
    assert attrd.handed_to("node2") == attrd.handed_to("node3") == {second}


def test_a_look_counts_established_connections_with_ipv4_clients_of_dual_stack_sockets(
        monkeypatch):
    from ocf_lib.adapters import sock_diag

    class Conn:
        def __init__(self, remote, state=sock_diag.ESTABLISHED):
            self.state, self.remote, self.local = state, (remote, 40001), ("198.18.1.20", 6443)

    monkeypatch.setattr(sock_diag, "on_address", lambda ip: [
        Conn("198.18.1.100"), Conn("::ffff:198.18.1.101"), Conn("198.18.1.102", state=99)])
    assert handover.HandOver("198.18.1.20", "vip", "node1").look() == {
        codec.pack(bytes([198, 18, 1, 100]), 40001, 6443),
        codec.pack(bytes([198, 18, 1, 101]), 40001, 6443)}


def test_the_addresses_of_a_node_share_each_look_and_each_check(monkeypatch):
    """50 addresses cost one dump of the connections a round, and one question to the
    membership and one list asked back of each other node every VERIFY_PERIOD; a node that
    lost its lists gets every address's anew."""
    from ocf_lib.adapters import sock_diag
    attrd = Attrd(monkeypatch, members=("node1", "node2"))
    asked = {"dumps": 0, "members": 0, "values": 0}
    members, values = handover.pacemaker.member_names, handover.pacemaker.attribute_values

    def count(kind, call):
        def counted(*args, **kwargs):
            asked[kind] += 1
            return call(*args, **kwargs)
        return counted

    class Conn:
        state = sock_diag.ESTABLISHED

        def __init__(self, local, port):
            self.local, self.remote = (local, 6443), ("198.18.1.100", port)

    ips = [f"198.18.2.{n}" for n in range(50)]
    monkeypatch.setattr(handover.pacemaker, "member_names", count("members", members))
    monkeypatch.setattr(handover.pacemaker, "attribute_values", count("values", values))
    monkeypatch.setattr(sock_diag, "on_addresses", count("dumps", lambda wanted: {
        ip: [Conn(ip, 40000 + n)] for n, ip in enumerate(wanted)}))
    group = handover.HandOvers("node1", clock=attrd.clock)
    for n, ip in enumerate(ips):
        group.add(ip, f"vip{n}")
    for _ in range(30):  # 60 s
        assert group() == {}
        attrd.now += handover.HANDOVER_PERIOD
    assert asked == {"dumps": 30, "members": 2, "values": 1}
    assert attrd.handed_to("node2") == set()  # the fake reads vip's list: none here
    assert super(Attrd, attrd).handed_to("node2", "kuth-vip7-connections") == {
        codec.pack(bytes([198, 18, 1, 100]), 40007, 6443)}
    written = len(attrd.writes)
    attrd.values.clear()  # node2 left and came back
    attrd.now += handover.VERIFY_PERIOD
    group()
    assert len(attrd.writes) == written + 50
    assert super(Attrd, attrd).handed_to("node2", "kuth-vip49-connections") != set()


def test_nothing_is_written_while_nothing_changes(monkeypatch):
    """Not even every VERIFY_PERIOD (what earlier releases rewrote every 10 s): the owner
    reads the headers back, which costs the ring nothing."""
    attrd = Attrd(monkeypatch)
    held = clients(500)
    hand_over = owner(attrd, [held] * 100)
    rounds(attrd, hand_over, 2)
    written = len(attrd.writes)
    rounds(attrd, hand_over, 98)  # 196 s, six checks
    assert len(attrd.writes) == written


def test_a_node_that_lost_its_list_or_joined_gets_it_whole_at_the_next_check(monkeypatch):
    attrd = Attrd(monkeypatch)
    held = clients(20_000)
    hand_over = owner(attrd, [held] * 40)
    rounds(attrd, hand_over, 2)
    for key in [key for key in attrd.values if key[1] == "node2"]:
        del attrd.values[key]  # node2 was away: attrd dropped what was written for it
    attrd.members.append("node4")
    rounds(attrd, hand_over, 16)
    assert attrd.handed_to("node2") == attrd.handed_to("node4") == held


def test_changes_rewrite_the_header_only_until_the_headers_cost_as_much_as_a_new_base(
        monkeypatch):
    attrd = Attrd(monkeypatch, members=("node1", "node2"))
    base = clients(20_000)
    looks = [base, base]
    for step in range(1, 9):  # 2,000 more every two looks
        looks += [base | clients(2_000 * step, seed=7)] * 2
    hand_over = owner(attrd, looks)
    rounds(attrd, hand_over, 2)
    shards, base_chars = hand_over.shards, hand_over.base_chars
    assert shards >= 2 and attrd.handed_to("node2") == base
    attrd.writes.clear()
    while len(attrd.writes) < 2:
        rounds(attrd, hand_over, 1)
    assert [name for _, name, _ in attrd.writes] == ["kuth-vip-connections"] * 2, \
        "a header for each change"
    while all(name == "kuth-vip-connections" for _, name, _ in attrd.writes):
        rounds(attrd, hand_over, 1)
        assert attrd.handed_to("node2") == looks[hand_over.look_count - 2] & looks[
            hand_over.look_count - 1]
    headers = sum(chars for _, name, chars in attrd.writes if name == "kuth-vip-connections")
    assert headers <= base_chars + attrd.writes[-1][2], "no more than a base in headers"
    assert len(attrd.values) == hand_over.shards + 1, "no shard of another count is left"


def test_connections_gone_stay_in_the_list_until_a_new_base_drops_them(monkeypatch):
    """A gone connection in the list costs one useless tickle; a missing one a client's
    timeout. Once a quarter of the base is gone, a new base drops them, and the list that
    fits in its header again leaves no shard behind."""
    attrd = Attrd(monkeypatch, members=("node1", "node2"))
    base = clients(20_000)
    few = set(sorted(base)[:100])
    hand_over = owner(attrd, [base, base, set(sorted(base)[:19_000]),
                              set(sorted(base)[:19_000]), few, few])
    rounds(attrd, hand_over, 4)
    assert attrd.handed_to("node2") == base
    rounds(attrd, hand_over, 2)
    assert attrd.handed_to("node2") == few
    assert list(attrd.values) == [("kuth-vip-connections", "node2")]


def test_the_rate_limit_holds_writes_back_and_lets_them_through_later(monkeypatch):
    attrd = Attrd(monkeypatch, members=("node1", "node2"))
    monkeypatch.setattr(handover, "BURST", 1000)
    monkeypatch.setattr(handover, "RATE", 1000)
    base = clients(5_000)
    more = base | clients(10, seed=3)
    hand_over = owner(attrd, [base, base, more, more, more, more] + [more] * 20)
    rounds(attrd, hand_over, 2)
    spent = sum(chars for _, _, chars in attrd.writes)
    assert spent > 1000 and attrd.handed_to("node2") == base
    rounds(attrd, hand_over, 2)
    assert attrd.handed_to("node2") == base, "in debt: the change waits"
    waited = 0
    while attrd.handed_to("node2") != more:
        rounds(attrd, hand_over, 1)
        waited += 1
    assert (waited + 2) * handover.HANDOVER_PERIOD >= (spent - 1000) / handover.RATE


def test_bytes_written_stay_bounded_at_20000_connections_with_1_percent_churn(monkeypatch):
    """1% of the connections replaced every second for two minutes: the average stays
    below the rate limit, and every connection held for two looks is in the list
    (bench.handover_cost measures the same at 50,000)."""
    got = bench.churn(20_000, 0.01, 2, 3, False, monkeypatch.setattr)
    assert got["chars_per_s"] <= handover.RATE
    assert got["missing"] == 0


# -- the tickles: paced, repeated ---------------------------------------------------------------

class FakeTime:
    """A clock that sleep() moves on, and a send that takes cost seconds of it."""

    def __init__(self, cost: float) -> None:
        self.now, self.cost = 100.0, cost
        self.sends: list[tuple[float, int]] = []  # (when it was done, batch)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds

    def send(self, batch: int) -> int:
        self.now += self.cost
        self.sends.append((self.now, batch))
        return handover.TICKLE_BATCH


@pytest.mark.parametrize("cost", [0.0, 0.0025, 0.013])
@pytest.mark.parametrize("batches", [1, 2, 50, 100])
def test_each_batch_is_sent_in_every_round_paced_and_spaced(batches, cost):
    """Batches TICKLE_GAP apart at least; one client's tickles TICKLE_SPACING apart at
    least, also when sending takes longer than the pace allows (13 ms a batch: the lab,
    where the clients' kernels answer within the send)."""
    fake = FakeTime(cost)
    began = fake.now
    reached = handover.tickle_rounds(batches, fake.send, fake.clock, fake.sleep)
    assert reached == batches * handover.TICKLE_BATCH, "the first round's, counted once"
    assert [batch for _, batch in fake.sends] == list(range(batches)) * handover.TICKLE_ROUNDS
    assert fake.sends[0][0] == began + cost, "the first batch at once"
    for (at, _), (later, _) in zip(fake.sends, fake.sends[1:]):
        assert later - at >= min(handover.TICKLE_GAP, cost) - 1e-9
    for batch in range(batches):
        times = [at for at, sent in fake.sends if sent == batch]
        assert all(b - a >= handover.TICKLE_SPACING - 1e-9 for a, b in zip(times, times[1:]))


def test_50000_clients_are_tickled_within_a_quarter_second_and_twice_more_within_1_4_s():
    fake = FakeTime(0.0)
    handover.tickle_rounds(50, fake.send, fake.clock, fake.sleep)
    assert fake.sends[49][0] - 100 < 0.25
    assert fake.sends[-1][0] - 100 < 1.4


def test_a_round_that_outlasts_the_spacing_delays_the_next_one_without_a_pause():
    """100 batches at 13 ms each: the first round takes 1.3 s; the second starts once it
    is done, its first batch long past its spacing, and keeps the pace of the sends."""
    fake = FakeTime(0.013)
    handover.tickle_rounds(100, fake.send, fake.clock, fake.sleep)
    first_round_done, second_begins = fake.sends[99][0], fake.sends[100][0]
    assert second_begins - first_round_done == pytest.approx(0.013)


# -- the takeover: the tickler reads the list while start goes on -------------------------------

def fake_attrd_updater(monkeypatch, tmp_path, values: dict[str, str]) -> None:
    """attrd_updater first on PATH: records its arguments, answers -Q 0.3 s late with the
    value of values for the attribute asked (fails as attrd_updater does for one unset)."""
    stored = tmp_path / "values"
    stored.mkdir()
    for name, value in values.items():
        (stored / name).write_text(value)
    fake = tmp_path / "attrd_updater"
    fake.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {tmp_path}/argv
[ "$1" = -Q ] || exit 0
sleep 0.3
[ -f "{stored}/$3" ] || {{ echo 'Could not query value' >&2; exit 6; }}
echo "name=\\"$3\\" host=\\"$5\\" value=\\"$(cat "{stored}/$3")\\""
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


def test_a_takeover_asks_attrd_at_once_and_tickles_once_the_address_is_announced(
        monkeypatch, tmp_path):
    """The tickler asks for the header when start begins; once start says the address is
    announced, it asks for the shards the header names and tickles; start waits for none
    of it. A damaged shard costs its own part only. The list is forgotten
    afterwards (TICKLER_TIDY later)."""
    monkeypatch.setattr(handover, "TICKLER_TIDY", 0.1)
    records = clients(6_000)
    parts = codec.split(records, 2, 4)
    fake_attrd_updater(monkeypatch, tmp_path, {
        "kuth-vip-connections": codec.header(2, [codec.pack(V4, 40001, 6443)], 4),
        "kuth-vip-connections-2-0": parts[0], "kuth-vip-connections-2-1": "damaged"})
    tickled = tmp_path / "tickled"
    monkeypatch.setattr(handover, "end_remains", lambda ip: None)
    monkeypatch.setattr(handover, "tickle_clients", lambda ip, connections: tickled.write_text(
        f"{ip} {len(connections)}") or len(connections))
    began = time.monotonic()
    take_over = handover.TakeOver("198.18.1.20", "vip:1", "node2")
    _wait_for(lambda: (tmp_path / "argv").exists(), "the question asked")
    assert not tickled.exists(), "nothing before the address is announced"
    take_over.announced()
    assert time.monotonic() - began < 0.25, "start waits for neither attrd nor the tickles"
    _wait_for(lambda: "-D" in (tmp_path / "argv").read_text(), "the list forgotten", 10)
    assert tickled.read_text() == f"198.18.1.20 {len(codec.decode(parts[0])) + 1}"
    asked = (tmp_path / "argv").read_text().splitlines()
    assert asked[0] == "-Q -n kuth-vip-connections -N node2"
    assert sorted(asked[1:3]) == [f"-Q -n kuth-vip-connections-2-{i} -N node2" for i in (0, 1)]
    _wait_for(lambda: len((tmp_path / "argv").read_text().splitlines()) == 6, "all forgotten")
    assert sorted((tmp_path / "argv").read_text().splitlines()[3:]) == [
        "-n kuth-vip-connections -D -N node2", "-n kuth-vip-connections-2-0 -D -N node2",
        "-n kuth-vip-connections-2-1 -D -N node2"]


@pytest.mark.parametrize("values", [{}, {"kuth-vip-connections": "1:0:"},
                                    {"kuth-vip-connections": "198.18.1.100,40001,6443"}])
def test_a_takeover_without_a_list_or_without_its_start_announcing_tickles_nobody(
        monkeypatch, tmp_path, values):
    """attrd_updater fails for an attribute it does not know; an old owner that held no
    long-lived connection handed over an empty list; one of an earlier release wrote a
    form this one does not read; a start that failed never says announced."""
    fake_attrd_updater(monkeypatch, tmp_path, values)
    tickled = tmp_path / "tickled"
    monkeypatch.setattr(handover, "end_remains", lambda ip: None)
    monkeypatch.setattr(handover, "tickle_clients", lambda ip, connections: tickled.touch() or 1)
    announced = handover.TakeOver("198.18.1.20", "vip", "node2")
    announced.announced()
    failed = handover.TakeOver("198.18.1.20", "vip", "node2")
    os.close(failed._announced)  # what the end of a failed start's process does
    _wait_for(lambda: not any(_is_tickler(t.pid) for t in (announced, failed)),
              "the ticklers ended", timeout=20)  # at nice 10, on a busy machine
    assert not tickled.exists()
    assert "-D" not in (tmp_path / "argv").read_text()


def _is_tickler(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip() == handover.TICKLER
    except OSError:
        return False


def _wait_for(predicate, what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {what}"
        time.sleep(0.02)


def test_the_hand_over_attribute_is_the_resources_not_the_clone_instances() -> None:
    assert handover.handover_attribute("vip") == "kuth-vip-connections"
    assert handover.handover_attribute("vip:2") == "kuth-vip-connections"
