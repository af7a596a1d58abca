"""The soak (`make soak`): random faults on the lab's 2- and 3-node clusters, fencing on,
with short requests and watch streams through the VIP, and invariants checked after every
event. `events` are the faults, `checks` the invariants, `soak` the run and its report.
Run from the checkout's root: `python3 -m soak.soak --minutes 30 --seed 1`.
"""
