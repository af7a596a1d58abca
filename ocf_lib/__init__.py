"""ocf_lib: the library under the kuth OCF resource agents.

Modules on an agent's monitor path import only cheap built-in modules (os, sys, time,
_struct, _socket, select, fcntl, syslog, errno; the C modules under struct and socket,
without their Python wrappers): Pacemaker runs monitor every few seconds on
every node, and `re`, `enum`, `json`, `socket`, `subprocess`, `logging` or `typing` would each
add milliseconds to every run. Heavier modules are imported inside the functions that need
them. For the same reason those modules do without `from __future__ import annotations`
(an import of its own): their annotations are plain 3.11 syntax, quoted where they name a
type imported only for type checkers.
"""

__version__ = "0.3.1"
