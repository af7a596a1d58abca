"""The guide's haproxy.cfg (lab/data/guide.cfg, as the guide prints it), and the same
adapted to the cluster: what every node of the lab has in /etc/haproxy/haproxy.cfg."""
from __future__ import annotations

import os

from lab.topology import KUBE_MASTERS

GUIDE_CFG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "guide.cfg")


def haproxy_config(check_interval: str = "1s", extra: str = "") -> str:
    """The guide's haproxy.cfg for the cluster: servers kube-mast01..03 are the stand-ins;
    everything else as in the guide (stats socket in /run/haproxy, chroot, user haproxy,
    daemon, wildcard frontends on :6443 and :32700, the stats page with admin:admin) but the
    health checks, every check_interval instead of `inter 10s downinter 5s`, so a test sees a
    server go DOWN in seconds. extra: sections appended."""
    with open(GUIDE_CFG, encoding="utf-8") as f:
        text = f.read()
    for number, (name, address) in enumerate(KUBE_MASTERS.items(), 1):
        text = text.replace(f"{name} 192.168.4.2{number}:", f"{name} {address}:")
    text = text.replace("inter 10s downinter 5s",
                        f"inter {check_interval} downinter {check_interval}")
    if "192.168.4." in text or f"inter {check_interval}" not in text:
        raise ValueError(f"{GUIDE_CFG} changed: adapt haproxy_config()")
    return text + extra
