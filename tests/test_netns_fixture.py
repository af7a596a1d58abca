"""The namespace fixture itself: hosts reach each other, and nothing is left after."""
import subprocess
import time


def test_lan_hosts_reach_each_other(lan):
    node, peer = lan
    node.run("ping", "-c1", "-W2", "198.18.0.2")
    node.run("ping", "-c1", "-W2", "2001:2::2")
    assert "198.18.0.1/24" in node.addresses("lan0")


def test_cleanup_removes_namespaces_and_processes(netns_pool):
    ns = netns_pool.new()
    proc = ns.popen("sleep", "60")
    for _ in range(250):  # popen returns before the child has entered the namespace
        if ns.pids():
            break
        time.sleep(0.02)
    netns_pool.cleanup()
    assert proc.wait(timeout=5) != 0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.name not in listed
