"""Meta-data: generated from the declarations, escaped, DTD-valid, and committed equal."""
import os
import shutil
import subprocess
import sys

import pytest

from ocfshim import AGENT_NAMES, AGENTS, REPO, public_agent

DTD_DIR = "/usr/share/resource-agents"
SAMPLE = os.path.join(os.path.dirname(__file__), "data", "sample_agent")


def metadata_of(path):
    proc = subprocess.run([path, "meta-data"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def dtd_valid(xml):
    return subprocess.run(["xmllint", "--noout", "--valid", "-"], input=xml, text=True,
                          capture_output=True, cwd=DTD_DIR)


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_agent_metadata_is_valid_against_ra_api_dtd(name):
    proc = dtd_valid(metadata_of(os.path.join(AGENTS, name)))
    assert proc.returncode == 0, proc.stderr


def committed(name):
    with open(os.path.join(REPO, "metadata", f"{name}.xml")) as xml:
        return xml.read()


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_committed_metadata_equals_what_the_declarations_make(name):
    made = subprocess.run([sys.executable, "-B", "-S", "-m", "agents", name], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout
    assert made == committed(name), "run `make metadata` and commit metadata/"


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_the_agent_prints_the_committed_metadata(name):
    assert metadata_of(os.path.join(AGENTS, name)) == committed(name)


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_without_the_generated_file_the_declarations_print_it(name, tmp_path):
    for package in ("agents", "ocf_lib"):
        shutil.copytree(os.path.join(REPO, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    assert metadata_of(str(tmp_path / "agents" / name)) == committed(name)


def test_special_characters_are_escaped_and_still_valid():
    xml = metadata_of(SAMPLE)
    assert "Sample &lt;agent&gt; &amp; co" in xml
    assert "&quot;escaping&quot;" in xml
    assert dtd_valid(xml).returncode == 0


def test_declarations_appear_with_types_defaults_and_actions():
    from lxml import etree
    root = etree.fromstring(metadata_of(SAMPLE).encode())
    params = {p.get("name"): p for p in root.iter("parameter")}
    assert params["name"].get("required") == "1" and params["name"].get("unique") == "1"
    assert params["count"].find("content").get("type") == "integer"
    assert params["count"].find("content").get("default") == "3"
    assert params["flag"].find("content").get("default") == "false"
    assert params["delay"].find("content").get("default") == "1500ms"
    monitors = [a for a in root.iter("action") if a.get("name") == "monitor"]
    assert [(m.get("interval"), m.get("depth")) for m in monitors] == [("10s", "0"), ("60s", "10")]
    assert {a.get("name") for a in root.iter("action")} >= {"meta-data", "usage", "start", "stop"}


def test_metadata_runs_as_nobody(needs_root):  # su to nobody
    proc = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c",
                           f"{public_agent('IPaddr2')} meta-data"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "<resource-agent" in proc.stdout


def test_ipaddr2_gets_the_legacy_reload_and_a_restart_only_for_a_new_ip():
    """What Pacemaker (2.1.5 and 3.0.0 alike) decides reload or restart by: an OCF version
    below 1.1 in <version> with a `reload` action is the legacy reload, and the parameters
    marked unique="1" are the ones whose change restarts (op-force-restart). ip only: a
    unique nic or cidr_netmask would make crmsh 4.4.1 refuse, and pcs 0.11/0.12 ask --force
    for, a second address on the same nic; the reload moves the address for those itself."""
    from lxml import etree
    root = etree.fromstring(committed("IPaddr2").encode())
    assert root.findtext("version") == "1.0"
    actions = {a.get("name") for a in root.iter("action")}
    assert "reload" in actions and "reload-agent" not in actions
    assert [p.get("name") for p in root.iter("parameter") if p.get("unique") == "1"] == ["ip"]
    assert not [p for p in root.iter("parameter") if p.get("reloadable") is not None]
