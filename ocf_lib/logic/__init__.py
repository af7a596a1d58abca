"""The agents' own logic, built from the adapters and the framework.

vip (a floating address: where it belongs, served or not, added and removed),
handover (its long-lived connections told to the other nodes, tickled after a takeover),
haproxy_runtime (an HAProxy master-worker started, checked, reloaded and stopped).
"""
