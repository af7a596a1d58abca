"""The OCF resource agents of provider kuth: one module each (declarations and actions),
run by the executable of the same agent name next to it."""
