"""bench-scale's configurations (bench/scale.py): what the nodes serve at each size."""
from bench import scale
from lab import holders
from lab.topology import KUBE_MASTERS


def test_haproxy_holds_its_share_of_idle_connections_for_an_hour():
    text = scale.scale_haproxy_config()
    assert f"global\n    maxconn {scale.HAPROXY_MAXCONN}\n" in text
    assert "timeout client 1h" in text and "timeout server 1h" in text
    for address in KUBE_MASTERS.values():
        assert f"{address}:{scale.BACKEND_PORT} check" in text


def test_haproxy_serves_up_to_its_limit_and_the_nodes_past_it():
    small = scale.pacemaker_config(scale.AGENTS["kuth"], "guide", scale.HAPROXY_MAX)
    assert "ocf:kuth:haproxy" in small and "ocf:heartbeat:anything" not in small
    large = scale.pacemaker_config(scale.AGENTS["heartbeat"], "clone", 50_000)
    assert "ocf:heartbeat:anything" in large and "ocf:heartbeat:IPaddr2" in large
    processes = holders.processes_for(50_000) + 1
    assert f"serve {scale.KUBE_PORT} {processes}" in large
    assert "clone haproxy-clone haproxy-resource" in large


def test_resident_processes_are_summed_by_kind():
    assert scale.kinds(["kuth-watcher", "kuth-refuser", "kuth-watcher"]) == \
        "kuth-refuser, kuth-watcher x2"
