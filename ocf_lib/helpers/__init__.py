"""The processes an action leaves behind, and how an agent asks them to work.

watch (what a resource asks the node's watcher to watch: typed targets and the registry),
watcher (the node's one watcher: reports a crash or a lost address to Pacemaker at once,
and hands an address's long-lived connections over to the other nodes).
"""
