"""Adapters: one module per outside system, each knowing nothing of OCF.

netlink (links and addresses read from the kernel, and changed), iproute (changes as `ip`
makes them, and fails them),
announce (gratuitous ARP and unsolicited NA), command (programs run with argument lists),
process (processes and pidfiles from /proc), inet (address parsing), haproxy_api (the
HAProxy runtime API), haproxy_config (the facts agents need from haproxy.cfg).
"""
