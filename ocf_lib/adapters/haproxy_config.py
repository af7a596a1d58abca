"""The facts an agent needs from haproxy.cfg, read the way HAProxy reads its words.

Not a parser of HAProxy's language: `haproxy -c` judges validity. This module only
finds what the agent acts on -- daemon or master-worker, pidfile, user/group, chroot,
the stats sockets (to monitor through and to create directories for) and the bind
addresses (to tell when listeners are up). It splits lines as HAProxy's parse_line does:
`#` starts a comment outside quotes, backslash escapes, "double quotes" expand
environment variables, 'single quotes' keep everything; adjacent parts form one word.

Not on the monitor path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers",
            "userlist", "mailers", "program", "http-errors", "ring", "cache",
            "log-forward", "fcgi-app")
"""Keywords that open a section in HAProxy 2.6; every other line belongs to the last."""

_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "#": "#", " ": " ", "$": "$", "r": "\r",
            "n": "\n", "t": "\t"}
_UNIX_PREFIXES = ("unix@", "uxst@")
_IPV4_PREFIXES = ("ipv4@", "tcp4@")
_IPV6_PREFIXES = ("ipv6@", "tcp6@")
_OTHER_PREFIXES = ("abns@", "fd@", "sockpair@", "tcp@", "udp@", "udp4@", "udp6@", "quic4@",
                   "quic6@", "uxdg@")


class ConfigReadError(Exception):
    """haproxy.cfg could not be read or says something this module cannot interpret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StatsSocket:
    """A `stats socket` line of the global section. path is the file for a unix socket,
    the address as written for a TCP one (`unix` False).
    level defaults to operator (enough for show commands, not for `set server`)."""
    path: str
    level: str = "operator"
    mode: int | None = None
    expose_fd_listeners: bool = False
    user: str | None = None
    group: str | None = None
    unix: bool = True


@dataclass(frozen=True)
class Bind:
    """One address of a `bind` line in a frontend or listen section.

    family is "ipv4", "ipv6", "unix" or another HAProxy prefix without its "@" (abns,
    fd, sockpair...). A wildcard address (`*`, empty) is "0.0.0.0" or, with ipv6@,
    "::"; `:::6443` is "::" port 6443. port is None for sockets without one; port_last
    is the end of a range (`:8000-8010`) and equals port otherwise. nonlocal_ok: the line
    lets HAProxy bind an address the host lacks (transparent) or binds it in another
    network namespace (namespace).
    """
    section: str
    name: str
    family: str
    address: str
    port: int | None
    port_last: int | None
    nonlocal_ok: bool = False


@dataclass
class HaproxyConfig:
    """What read_config found. user/group are names as written (`user`, `group`),
    uid/gid numbers as written (`uid`, `gid`); `ids()` turns either into numbers."""
    daemon: bool = False
    master_worker: bool = False
    pidfile: str | None = None
    user: str | None = None
    group: str | None = None
    uid: int | None = None
    gid: int | None = None
    chroot: str | None = None
    stats_sockets: list[StatsSocket] = field(default_factory=list)
    binds: list[Bind] = field(default_factory=list)
    frontends: list[str] = field(default_factory=list)
    listens: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)

    def unix_stats_sockets(self, level: str | None = None) -> list[StatsSocket]:
        """The unix stats sockets, optionally only those at exactly this level."""
        return [s for s in self.stats_sockets
                if s.unix and (level is None or s.level == level)]

    def ids(self) -> tuple[int, int]:
        """(uid, gid) HAProxy switches to, -1 where the config keeps root's (os.chown's
        "unchanged"); names are looked up here, on this node."""
        return (_id(self.uid, self.user, "user"), _id(self.gid, self.group, "group"))


def read_config(path: str) -> HaproxyConfig:
    """Read haproxy.cfg, or a directory of *.cfg files in the order HAProxy loads them."""
    config = HaproxyConfig()
    reader = _Reader(config)
    for file in _files(path):
        reader.read_file(file)
    return config


def split_line(line: str, env: dict[str, str] | None = None) -> list[str]:
    """The words of one configuration line, as HAProxy 2.6 splits them."""
    return _Splitter(line, os.environ if env is None else env).words()


def parse_address(text: str) -> tuple[str, str, int | None, int | None]:
    """(family, address, port, port_last) of one HAProxy address such as `*:6443`,
    `:::6443`, `ipv6@:443`, `unix@/run/x.sock`, `/run/x.sock`, `192.0.2.1:80-81`."""
    for prefixes, family in ((_UNIX_PREFIXES, "unix"), (_IPV4_PREFIXES, "ipv4"),
                             (_IPV6_PREFIXES, "ipv6")):
        for prefix in prefixes:
            if text.startswith(prefix):
                return _with_family(family, text[len(prefix):])
    for prefix in _OTHER_PREFIXES:
        if text.startswith(prefix):
            return (prefix[:-1], text[len(prefix):], None, None)
    if text.startswith("/"):
        return ("unix", text, None, None)
    return _with_family("", text)


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        try:
            names = sorted(os.listdir(path))
        except OSError as err:
            raise ConfigReadError(f"cannot list configuration directory {path}: "
                                  f"{err.strerror}") from None
        return [os.path.join(path, name) for name in names
                if name.endswith(".cfg") and os.path.isfile(os.path.join(path, name))]
    return [path]


def _with_family(family: str, text: str) -> tuple[str, str, int | None, int | None]:
    """Split host and port at the last colon (IPv6 hosts hold colons; `[::1]:80` too)."""
    if family == "unix":
        return ("unix", text, None, None)
    host, sep, ports = text.rpartition(":")
    if not sep:
        raise ConfigReadError(f"address {text!r} has no port")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not family:
        family = "ipv6" if ":" in host else "ipv4"
    if host in ("", "*"):
        host = "::" if family == "ipv6" else "0.0.0.0"
    first, _, last = ports.partition("-")
    try:
        port = int(first)
        return (family, host, port, int(last) if last else port)
    except ValueError:
        raise ConfigReadError(f"address {text!r} has no valid port") from None


def _id(number: int | None, name: str | None, kind: str) -> int:
    if number is not None:
        return number
    if name is None:
        return -1
    import grp
    import pwd
    try:
        return pwd.getpwnam(name).pw_uid if kind == "user" else grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigReadError(f"{kind} {name!r} of haproxy.cfg does not exist on this node"
                              ) from None


class _Splitter:
    """HAProxy's word splitting, one character at a time."""

    def __init__(self, line: str, env: os._Environ[str] | dict[str, str]) -> None:
        self.line, self.env, self.pos = line, env, 0

    def words(self) -> list[str]:
        words: list[str] = []
        word: list[str] = []
        in_word = False          # a quoted "" is a word though it adds no character
        quote = ""
        while self.pos < len(self.line):
            char = self.line[self.pos]
            self.pos += 1
            if not quote and char == "#":
                break
            if not quote and char in " \t\r\n":
                if in_word:
                    words.append("".join(word))
                word, in_word = [], False
                continue
            in_word = True
            if char in "\"'" and quote in ("", char):
                quote = "" if quote else char
            elif char == "\\" and quote != "'":
                word.append(self._escape())
            elif char == "$" and quote == '"':
                word.append(self._variable())
            else:
                word.append(char)
        if quote:
            raise ConfigReadError(f"unmatched quote ({quote}) in line: {self.line.strip()}")
        if in_word:
            words.append("".join(word))
        return words

    def _escape(self) -> str:
        if self.pos >= len(self.line):
            return ""
        char = self.line[self.pos]
        self.pos += 1
        if char == "x":
            digits = self.line[self.pos:self.pos + 2]
            self.pos += 2
            try:
                return chr(int(digits, 16))
            except ValueError:
                raise ConfigReadError(f"bad \\x escape in line: {self.line.strip()}") from None
        if char not in _ESCAPES:
            raise ConfigReadError(f"unknown escape \\{char} in line: {self.line.strip()}")
        return _ESCAPES[char]

    def _variable(self) -> str:
        """`$NAME` or `${NAME}` inside double quotes: the environment's value or ""."""
        if self.line.startswith("{", self.pos):
            end = self.line.find("}", self.pos)
            if end < 0:
                raise ConfigReadError(f"unterminated ${{ in line: {self.line.strip()}")
            name, self.pos = self.line[self.pos + 1:end], end + 1
        else:
            start = self.pos
            while self.pos < len(self.line) and (self.line[self.pos].isalnum()
                                                 or self.line[self.pos] == "_"):
                self.pos += 1
            name = self.line[start:self.pos]
        return self.env.get(name, "")


class _Reader:
    """Walks the lines, tracking the section, and fills the HaproxyConfig."""

    def __init__(self, config: HaproxyConfig) -> None:
        self.config = config
        self.section = ""
        self.name = ""

    def read_file(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError as err:
            raise ConfigReadError(f"cannot read {path}: {err.strerror}") from None
        for number, line in enumerate(lines, 1):
            try:
                self._line(split_line(line))
            except ConfigReadError as err:
                raise ConfigReadError(f"{path}:{number}: {err.reason}") from None

    def _line(self, words: list[str]) -> None:
        if not words:
            return
        keyword = words[0]
        if keyword.startswith("."):
            self._directive(words)
        elif keyword in SECTIONS:
            self.section, self.name = keyword, words[1] if len(words) > 1 else ""
            sections = {"frontend": self.config.frontends, "listen": self.config.listens,
                        "backend": self.config.backends}
            if keyword in sections:
                sections[keyword].append(self.name)
        elif self.section == "global":
            self._global(words)
        elif self.section in ("frontend", "listen") and keyword == "bind":
            self._bind(words)

    @staticmethod
    def _directive(words: list[str]) -> None:
        """Conditional blocks would need HAProxy's predicates; refuse rather than guess
        which lines count. Messages (.notice, .warning...) change nothing."""
        if words[0] in (".if", ".elif", ".else", ".endif"):
            raise ConfigReadError(f"conditional block {words[0]} is not supported here")

    def _global(self, words: list[str]) -> None:
        keyword, args = words[0], words[1:]
        config = self.config
        if keyword == "daemon":
            config.daemon = True
        elif keyword == "master-worker":
            config.master_worker = True
        elif keyword in ("pidfile", "chroot", "user", "group") and args:
            setattr(config, keyword, args[0])
        elif keyword in ("uid", "gid") and args:
            setattr(config, keyword, _number(keyword, args[0]))
        elif keyword == "stats" and args[:1] == ["socket"]:
            config.stats_sockets.append(_stats_socket(args[1:]))

    def _bind(self, words: list[str]) -> None:
        if len(words) < 2 or not words[1]:
            raise ConfigReadError(f"bind without an address in {self.section} {self.name}")
        nonlocal_ok = any(option in words[2:] for option in ("transparent", "namespace"))
        for address in words[1].split(","):
            family, host, port, port_last = parse_address(address)
            self.config.binds.append(Bind(self.section, self.name, family, host, port,
                                          port_last, nonlocal_ok))


def _stats_socket(args: list[str]) -> StatsSocket:
    """`stats socket <address> [options...]`; unknown options are skipped. HAProxy 2.6
    applies no `unix-bind` prefix, mode or owner to stats sockets (tried), and a relative
    `unix@name` is relative to the directory haproxy started in."""
    if not args:
        raise ConfigReadError("stats socket without a path")
    family, path, _, _ = parse_address(args[0])
    options: dict[str, str] = {}
    expose = False
    rest = iter(args[1:])
    for option in rest:
        if option == "expose-fd":
            expose = next(rest, "") == "listeners"
        elif option in ("level", "mode", "user", "group", "uid", "gid"):
            options[option] = next(rest, "")
    mode = options.get("mode")
    try:
        mode_bits = None if mode is None else int(mode, 8)
    except ValueError:
        raise ConfigReadError(f"stats socket {args[0]}: mode {mode!r} is not octal") from None
    return StatsSocket(path=path if family == "unix" else args[0],
                       level=options.get("level", "operator"), mode=mode_bits,
                       expose_fd_listeners=expose,
                       user=options.get("user") or options.get("uid"),
                       group=options.get("group") or options.get("gid"),
                       unix=family == "unix")


def _number(keyword: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigReadError(f"{keyword} {text!r} is not a number") from None
