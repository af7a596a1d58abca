"""The processes an action leaves behind, and how an agent asks them to work.

Every one is started by ocf_lib.adapters.process.spawn_detached, and those a later action
must end are recorded in their resource's state directory through registry:

watch (what a resource asks the node's watcher to watch: typed targets and the registry of
them), watcher (the node's one watcher: reports a crash or a lost address to Pacemaker at
once, and hands an address's long-lived connections over to the other nodes), announcer
(an address's announcements, the repeats in the background), refuser (resets for the SYNs
of an address just given up), go (the word an action gives a helper it started ahead),
registry (the helpers' pid records). The tickler of a takeover is
ocf_lib.logic.handover.TakeOver.
"""
