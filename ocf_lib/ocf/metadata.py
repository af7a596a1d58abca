"""Meta-data XML generated from an agent's declarations.

Written as text with every value escaped, not with an XML library: `meta-data` is run by
`crm ra info`, by Pacemaker on every agent load and by `ocf-tester` as `nobody`, and must not
pay for lxml. The output is valid against resource-agents' ra-api-1.dtd, which is why it names
that DTD and keeps to its vocabulary (no OCF 1.1 `reload-agent`, content types
string|integer|boolean|time, parameter attributes `required` and `unique` only).

A parameter's longdesc ends with its default (`Default: 600s`), taken from its declaration:
crm ra info and pcs 0.12 show `<content default=...>` themselves, but pcs 0.11 (Debian 12,
RHEL 9) prints only the longdesc, so its users would never see a default otherwise.
"""
from __future__ import annotations

from collections.abc import Iterable

from ocf_lib.ocf.params import Param

# The OCF API version the agents claim, in the <version> element (Pacemaker reads the
# element's text, not the resource-agent's version attribute: daemons/controld/
# controld_metadata.c, lines 156-163 at Pacemaker-2.1.5, 145-154 at Pacemaker-3.0.0). Below
# 1.1 an advertised `reload` is the legacy reload: a change of a parameter that is not
# unique="1" reloads the agent, one that is restarts it (append_restart_list, in
# controld_execd.c at 2.1.5, controld_cib.c at 3.0.0). 1.1 would mean `reload-agent` and
# reloadable="1", which ocf-tester's ra-api-1.dtd refuses.
OCF_API_VERSION = "1.0"


class ActionSpec:
    """An action as the meta-data advertises it; times in seconds."""

    def __init__(self, name: str, timeout: int, interval: int | None = None,
                 depth: int | None = None) -> None:
        self.name = name
        self.timeout = timeout
        self.interval = interval
        self.depth = depth


def escape(text: str) -> str:
    """Text safe inside an XML element or a double-quoted attribute."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def render(name: str, version: str, shortdesc: str, longdesc: str,
           params: Iterable[Param], actions: Iterable[ActionSpec]) -> str:
    """The whole meta-data document, ending in a newline."""
    lines = ['<?xml version="1.0"?>',
             '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">',
             f'<resource-agent name="{escape(name)}" version="{escape(version)}">',
             f"<version>{OCF_API_VERSION}</version>",
             f'<longdesc lang="en">\n{escape(longdesc.strip())}\n</longdesc>',
             f'<shortdesc lang="en">{escape(shortdesc)}</shortdesc>',
             "", "<parameters>"]
    for param in params:
        lines += [f'<parameter name="{escape(param.name)}" unique="{int(param.unique)}" '
                  f'required="{int(param.required)}">',
                  f'<longdesc lang="en">\n{escape(_longdesc(param))}\n</longdesc>',
                  f'<shortdesc lang="en">{escape(param.shortdesc)}</shortdesc>',
                  f'<content type="{param.kind}" default="{escape(param.default_text())}" />',
                  "</parameter>"]
    lines += ["</parameters>", "", "<actions>"]
    for action in actions:
        attrs = f'name="{escape(action.name)}" timeout="{action.timeout}s"'
        if action.interval is not None:
            attrs += f' interval="{action.interval}s"'
        if action.depth is not None:
            attrs += f' depth="{action.depth}"'
        lines.append(f"<action {attrs} />")
    lines += ["</actions>", "</resource-agent>"]
    return "\n".join(lines) + "\n"


def _longdesc(param: Param) -> str:
    """The parameter's description, its default (if any) on a last line of its own."""
    default = param.default_text()
    return param.longdesc.strip() + (f"\nDefault: {default}" if default else "")
