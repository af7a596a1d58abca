"""The lab's topology: the guide's two HAProxy nodes, three kube-apiservers and a client,
with every address in 198.18.0.0/15 (set aside for benchmarks), inside namespaces only.

    ring switch  198.18.0.0/24  node ring0 .1 .2 .3          Corosync (knet)
    lan switch   198.18.1.0/24  node lan0  .1 .2 .3          where the VIP lives (VIP_NETWORK)
                                kube-mast01..03  .11 .12 .13  HTTP on :6443 (kube-apiservers)
                                client           .100         sends traffic
                                power switch     .250         the fence device (lab.fencing)
"""
NAME_PREFIX = "hapx"
RING_NETWORK = "198.18.0"
VIP_NETWORK = "198.18.1"
CLIENT_ADDRESS = f"{VIP_NETWORK}.100"
POWER_ADDRESS = f"{VIP_NETWORK}.250"
POWER_PORT = 1229
KUBE_MASTERS = {f"kube-mast0{n}": f"{VIP_NETWORK}.{10 + n}" for n in (1, 2, 3)}
KUBE_PORT = 6443
NODE_HTTP_PORT = 80
STATS_PORT = 32700
STATS_AUTH = ("admin", "admin")
