"""Adapters: one module per outside system, each knowing nothing of OCF.

netlink (links and addresses read from the kernel, and changed; the one check of interface
names), iproute (changes as `ip` makes them, and fails them), announce (gratuitous ARP and
unsolicited NA), refuse (resets for the SYNs of an address just given up), sock_diag (TCP
connections on an address, listed and destroyed), tickle (ACKs that make a lost owner's
clients reset), command (programs run with argument lists), process (processes and
pidfiles from /proc), inet (address parsing), haproxy_api (the HAProxy runtime API),
haproxy_config (the facts agents need from haproxy.cfg), pacemaker (node attributes and
members through Pacemaker's tools).
"""
