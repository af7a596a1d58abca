"""Logging the way Pacemaker's resource agents log.

The destinations follow resource-agents' ocf-shellfuncs, read from the environment that
pacemaker-execd passes (the HA_* names, or their PCMK_* forms):
- on a terminal (an operator running the agent by hand), messages go to stderr;
- else to syslog when HA_LOGFACILITY names a facility ("none" or empty turns it off),
  and appended to HA_LOGFILE when set; with neither, to stderr, which execd logs;
- debug messages only when HA_debug is set and not "0", to syslog and HA_DEBUGLOG.
A log destination that fails (a full disk, no permission for `nobody`) never fails the
action: logging is best effort.
"""

import os
import sys
import time

DEBUG, INFO, WARNING, ERROR = "debug", "info", "warning", "error"
_SYSLOG_FACILITIES = ("auth", "authpriv", "cron", "daemon", "kern", "local0", "local1",
                      "local2", "local3", "local4", "local5", "local6", "local7", "lpr",
                      "mail", "news", "syslog", "user", "uucp")


def _setting(name: str) -> str:
    """HA_<NAME> (HA_debug keeps its lower case), else PCMK_<name>: Pacemaker sets either
    form for its children."""
    ha_name = "HA_debug" if name == "debug" else f"HA_{name.upper()}"
    return os.environ.get(ha_name) or os.environ.get(f"PCMK_{name}") or ""


class Logger:
    """Writes one agent's messages; `tag` names the agent, the resource and the pid."""

    def __init__(self, agent: str) -> None:
        instance = os.environ.get("OCF_RESOURCE_INSTANCE", "")
        self.tag = (os.environ.get("HA_LOGTAG")
                    or (f"{agent}({instance})[{os.getpid()}]" if instance
                        else f"{agent}[{os.getpid()}]"))
        facility = _setting("logfacility").lower()
        self.facility = facility if facility in _SYSLOG_FACILITIES else ""
        self.logfile = _setting("logfile")
        self.debuglog = _setting("debuglog")
        self.debug_enabled = _setting("debug") not in ("", "0")
        try:
            self.interactive = os.isatty(2)
        except OSError:
            self.interactive = False

    def debug(self, msg: str) -> None:
        self.log(DEBUG, msg)

    def info(self, msg: str) -> None:
        self.log(INFO, msg)

    def warning(self, msg: str) -> None:
        self.log(WARNING, msg)

    def error(self, msg: str) -> None:
        self.log(ERROR, msg)

    def log(self, level: str, msg: str, *, to_stderr: bool = True) -> None:
        """Send msg at level to the configured destinations. `to_stderr=False` is for text
        already printed on stderr (an exit reason), so it is not printed twice."""
        if level == DEBUG and not self.debug_enabled:
            return
        line = f"{level.upper()}: {msg}"
        if self.interactive:
            if to_stderr:
                self._write(sys.stderr, f"{self.tag}: {line}\n")
            return
        if self.facility:
            self._syslog(level, line)
        if self.logfile and level != DEBUG:
            self._append(self.logfile, f"{_stamp()} {self.tag}: {line}\n")
        if self.debuglog and self.debuglog != self.logfile:
            self._append(self.debuglog, f"{self.tag}: {_stamp()} {line}\n")
        if to_stderr and not self.facility and not self.logfile and (
                level != DEBUG or not self.debuglog):
            self._write(sys.stderr, f"{_stamp()} {self.tag}: {line}\n")

    def debug_text(self, text: str) -> None:
        """Multi-line text (a traceback) for the debug log only, never stderr or the main log:
        to HA_DEBUGLOG when set, else to syslog at debug priority."""
        if self.debuglog:
            self._append(self.debuglog, "".join(f"{self.tag}: {_stamp()} DEBUG: {line}\n"
                                                for line in text.splitlines()))
        else:
            for line in text.splitlines():
                self._syslog(DEBUG, line)

    def _syslog(self, level: str, line: str) -> None:
        import syslog
        priority = {DEBUG: syslog.LOG_DEBUG, INFO: syslog.LOG_INFO,
                    WARNING: syslog.LOG_WARNING, ERROR: syslog.LOG_ERR}[level]
        facility = getattr(syslog, f"LOG_{(self.facility or 'daemon').upper()}")
        try:
            syslog.openlog(self.tag, 0, facility)
            syslog.syslog(priority, line)
        except OSError:
            pass

    @staticmethod
    def _append(path: str, text: str) -> None:
        try:
            # O_NOFOLLOW: a log in /tmp could be a symlink planted by any user.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o640)
        except OSError:
            return
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        except OSError:
            pass
        finally:
            os.close(fd)

    @staticmethod
    def _write(stream: object, text: str) -> None:
        try:
            stream.write(text)  # type: ignore[attr-defined]
            stream.flush()  # type: ignore[attr-defined]
        except (OSError, ValueError):
            pass


def _stamp() -> str:
    return time.strftime("%b %d %H:%M:%S")
