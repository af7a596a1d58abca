"""The connection holders of bench-scale (lab.holders), on their own: two hosts on a link,
servers on one, held connections from several source addresses of the other."""
import subprocess
import time

import pytest

from lab import holders

PORT = 6444


@pytest.fixture
def servers(lan):
    """A server of two processes sharing PORT on node (198.18.0.1); a third source address on
    peer. Yields node, peer and the server's first process."""
    node, peer = lan
    peer.ip("addr", "add", "198.18.0.3/24", "dev", "lan0")
    proc = node.popen(*holders.serve_command(PORT, 2), stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while node.run("ss", "-Hltn").stdout.count(f":{PORT} ") < 2:
        assert time.monotonic() < deadline, "servers not listening"
        time.sleep(0.05)
    yield node, peer, proc
    proc.kill()
    proc.wait()


def test_connections_reset_by_the_server_are_reported_with_their_time(servers, monkeypatch):
    node, peer, _ = servers
    monkeypatch.setattr(holders, "PER_PROCESS", 150)
    with holders.Held(peer.exec_argv, "198.18.0.1", PORT, 300,
                      ["198.18.0.2", "198.18.0.3"]) as held:
        held.wait_ready(30)
        sources = peer.run("ss", "-Htn", "state", "established").stdout
        assert "198.18.0.2:" in sources and "198.18.0.3:" in sources
        time.sleep(0.3)
        assert held.still_open() == 300
        before = time.monotonic()
        node.run("ss", "-K", "state", "established", "sport", f"= :{PORT}")
        deadline = time.monotonic() + 5
        while held.still_open() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held.ends(before, time.monotonic(), ("reset",)) == 300
        assert held.still_open() == 0


def test_a_stopped_server_ends_every_connection_of_its_processes(servers):
    node, peer, server = servers
    with holders.Held(peer.exec_argv, "198.18.0.1", PORT, 50, ["198.18.0.2"]) as held:
        held.wait_ready(30)
        server.terminate()  # as a service manager stops it: the other process goes with it
        deadline = time.monotonic() + 5
        while held.still_open() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {kind for kind, _ in held.ended.values()} == {"closed"}
        assert len(held.ended) == 50


def test_churn_replaces_connections_without_reporting_them(servers):
    node, peer, _ = servers
    with holders.Held(peer.exec_argv, "198.18.0.1", PORT, 200, ["198.18.0.2"],
                      churn=0.05) as held:
        held.wait_ready(30)
        first = set(node.run("ss", "-Htn", "state", "established").stdout.split("\n"))
        time.sleep(2.5)
        now = set(node.run("ss", "-Htn", "state", "established").stdout.split("\n"))
        assert len(now) == len(first)
        assert len(first - now) >= 10  # 10 a second replaced
        assert held.still_open() == 200


def test_a_request_is_answered_and_its_connection_closed(servers):
    node, peer, _ = servers
    reply = peer.run("python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                     f"'http://198.18.0.1:{PORT}/', timeout=5).read().decode())").stdout
    assert reply.strip() == "held"
