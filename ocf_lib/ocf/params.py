"""Typed resource parameters: declared once, read from OCF_RESKEY_<name>, parsed and checked.

The four OCF content types are supported. An empty value counts as unset (crmsh writes
`nic=""` for "use the default"), so the default applies. Booleans accept what resource-agents'
`ocf_is_true` accepts, in any case, and refuse what is neither true nor false instead of
silently taking it as false.
"""

import os

STRING, INTEGER, BOOLEAN, TIME = "string", "integer", "boolean", "time"
_TRUE = ("yes", "true", "1", "on", "ja")
_FALSE = ("no", "false", "0", "off", "nein")
# Pacemaker's time units, in seconds.
_TIME_UNITS = (("ms", 0.001), ("msec", 0.001), ("us", 1e-6), ("usec", 1e-6), ("s", 1.0),
               ("sec", 1.0), ("m", 60.0), ("min", 60.0), ("h", 3600.0), ("hr", 3600.0))


class ParamError(ValueError):
    """A parameter value that cannot be used; the message is an operator-facing reason."""


class Param:
    """One declared parameter. `default` is the parsed value used when the key is unset or
    empty; `minimum`/`maximum` bound integers; `choices` limits strings."""

    def __init__(self, name: str, kind: str, *, default: object = None, required: bool = False,
                 unique: bool = False, shortdesc: str, longdesc: str = "",
                 minimum: int | None = None, maximum: int | None = None,
                 choices: tuple[str, ...] = ()) -> None:
        if kind not in (STRING, INTEGER, BOOLEAN, TIME):
            raise ValueError(f"unknown parameter type {kind!r}")
        self.name = name
        self.kind = kind
        self.default = default
        self.required = required
        self.unique = unique
        self.shortdesc = shortdesc
        self.longdesc = longdesc or shortdesc
        self.minimum = minimum
        self.maximum = maximum
        self.choices = choices

    @property
    def env_key(self) -> str:
        return f"OCF_RESKEY_{self.name}"

    def raw(self, environ: dict[str, str] | os._Environ[str]) -> str:
        """The value as Pacemaker passed it, '' when unset."""
        return environ.get(self.env_key, "")

    def parse(self, text: str) -> object:
        """The typed value of text; ParamError with the reason when it is not acceptable."""
        if text == "":
            return self.default
        if self.kind == INTEGER:
            return self._check_range(parse_integer(self.name, text))
        if self.kind == BOOLEAN:
            return parse_boolean(self.name, text)
        if self.kind == TIME:
            return parse_time(self.name, text)
        if "\x00" in text:
            raise ParamError(f"{self.name} contains a NUL character")
        if self.choices and text not in self.choices:
            raise ParamError(f"{self.name}={_shown(text)} is not one of: {', '.join(self.choices)}")
        return text

    def default_text(self) -> str:
        """The default as the meta-data shows it."""
        if self.default is None:
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, float) and self.default.is_integer():
            return f"{int(self.default)}s"
        if isinstance(self.default, float):
            return f"{int(self.default * 1000)}ms"
        return str(self.default)

    def _check_range(self, value: int) -> int:
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"{self.name}={value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(f"{self.name}={value} is above the maximum {self.maximum}")
        return value


def parse_integer(name: str, text: str) -> int:
    """A decimal integer, optionally signed; nothing else (no floats, hex or spaces)."""
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise ParamError(f"{name}={_shown(text)} is not an integer")
    return int(text)


def parse_boolean(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ParamError(f"{name}={_shown(text)} is not a boolean; use true or false")


def parse_time(name: str, text: str) -> float:
    """Seconds, from a Pacemaker time: '30', '30s', '500ms', '2min', '1h'."""
    lowered = text.strip().lower()
    number, scale = lowered, 1.0
    for unit, factor in sorted(_TIME_UNITS, key=lambda u: -len(u[0])):
        if lowered.endswith(unit) and lowered[:-len(unit)].strip():
            number, scale = lowered[:-len(unit)].strip(), factor
            break
    if not number.isascii() or not number.isdigit() or len(number) > 12:
        raise ParamError(f"{name}={_shown(text)} is not a time such as 30s or 500ms")
    return int(number) * scale


def _shown(text: str) -> str:
    """A value quoted for a one-line message: control characters escaped, length capped."""
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    return shown
