"""The Debian package: built from a clean copy, lintian-clean, complete, installable with apt
on a clean Debian 12 and on a clean Debian 13 (one package for both, built on this machine's
release), removable without a trace, and an upgrade of 0.1.0 under a running resource."""
from __future__ import annotations

import glob
import gzip
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

import ocf_lib
import package_chroot as chroot
from lab import processes
from ocfshim import AGENT_NAMES, REPO

PACKAGE = chroot.PACKAGE
OCF_DIR = "/usr/lib/ocf/resource.d/kuth"
PRIVATE_DIR = f"/usr/share/{PACKAGE}"
DOC_DIR = f"/usr/share/doc/{PACKAGE}"
EXAMPLE = f"{DOC_DIR}/examples/kube-apiserver-lb.crm"
# Scripts that would start, stop or restart a service if a maintainer script called them.
SERVICE_TOOLS = ("systemctl", "invoke-rc.d", "deb-systemd-invoke", "service ", "start-stop-daemon")

pytestmark = [pytest.mark.package,
              pytest.mark.skipif(os.geteuid() != 0, reason="building and chroot need root")]


@pytest.fixture(scope="module")
def deb() -> str:
    """The package as `make deb` builds it, in dist/."""
    return chroot.build(os.path.join(REPO, "dist"))


@pytest.fixture(scope="module", params=chroot.SUITES)
def base(deb: str, tmp_path_factory, request) -> Iterator[str]:
    """A clean Debian 12 or 13 root for this package's relations, from the cached tarball
    (which is made once per machine and release)."""
    tarball = chroot.base_tarball(chroot.base_packages(deb), request.param)
    with chroot.unpacked(tarball, str(tmp_path_factory.mktemp(request.param))) as path:
        yield path


@pytest.fixture
def root(base: str, tmp_path) -> Iterator[str]:
    """A root of its own for each test, thrown away afterwards."""
    with chroot.overlaid(base, str(tmp_path)) as path:
        yield path


def deb_field(deb: str, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True,
                          check=True).stdout.strip()


def metadata_params(xml: str) -> list[str]:
    from lxml import etree
    return [p.get("name") for p in etree.fromstring(xml.encode()).iter("parameter")]


def dtd_errors(xml: str) -> str:
    """xmllint's complaints about xml against resource-agents' ra-api-1.dtd (empty: valid)."""
    proc = subprocess.run(["xmllint", "--noout", "--valid", "-"], input=xml, text=True,
                          capture_output=True, cwd="/usr/share/resource-agents")
    return proc.stderr if proc.returncode else ""


def assert_example_loads(root: str) -> None:
    """The documented crm configure example loads into a fresh CIB and crmsh checks it
    against the installed agents' meta-data (fencing off: this CIB has no fence device)."""
    cib = {"CIB_file": "/tmp/cib.xml"}
    empty = subprocess.run(["chroot", root, "cibadmin", "--empty"], capture_output=True,
                           text=True, check=True).stdout
    with open(os.path.join(root, "tmp", "cib.xml"), "w") as out:
        out.write(empty)
    try:
        chroot.chrooted(root, "crm_attribute", "--type", "crm_config", "--name",
                        "stonith-enabled", "--update", "false", env=cib)
        loaded = chroot.chrooted(root, "crm", "configure", "load", "update", EXAMPLE, env=cib)
        # crmsh prints crm_verify's quorum warning (no cluster runs here) as an ERROR line.
        errors = [line for line in (loaded.stdout + loaded.stderr).splitlines()
                  if "ERROR" in line and "(cluster_status)" not in line]
        assert errors == []
        shown = chroot.chrooted(root, "crm", "configure", "show", env=cib).stdout
        for expected in ("ocf:kuth:IPaddr2", "ocf:kuth:haproxy", "resource-stickiness=100"):
            assert expected in shown, shown
    finally:
        os.remove(os.path.join(root, "tmp", "cib.xml"))


def test_lintian_finds_no_errors_or_warnings(deb: str) -> None:
    changes = deb.replace("_all.deb", "_amd64.changes")
    proc = subprocess.run(["lintian", "--fail-on", "error,warning", "--pedantic", changes],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tags = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert tags == []


def test_package_holds_every_agent_its_man_page_the_library_and_the_docs(deb: str) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    files = {line.split()[-1].lstrip("."): line.split()[0] for line in listing
             if not line.startswith("d")}
    library = sorted(os.path.relpath(p, REPO) for package in ("ocf_lib", "agents")
                     for p in glob.glob(os.path.join(REPO, package, "**", "*.py"),
                                       recursive=True))
    examples = os.listdir(os.path.join(REPO, "packaging", "debian", "crm"))
    expected = ({f"{OCF_DIR}/{a}" for a in AGENT_NAMES}
                | {f"/usr/share/man/man7/ocf_kuth_{a}.7.gz" for a in AGENT_NAMES}
                | {f"{PRIVATE_DIR}/metadata/{a}.xml" for a in AGENT_NAMES}
                | {f"{PRIVATE_DIR}/{m}" for m in library}
                | {f"{DOC_DIR}/{d}" for d in ("README.Debian", "changelog.gz", "copyright",
                                               "NEWS.md.gz")}
                | {f"{DOC_DIR}/examples/{e}" for e in examples}
                | {f"/usr/share/python3/runtime.d/{PACKAGE}.rtupdate",
                   f"/usr/share/lintian/overrides/{PACKAGE}"})
    assert set(files) == expected
    assert all(files[f"{OCF_DIR}/{a}"] == "-rwxr-xr-x" for a in AGENT_NAMES)


def test_man_pages_render_cleanly_and_list_every_parameter(deb: str, tmp_path) -> None:
    subprocess.run(["dpkg-deb", "-x", deb, str(tmp_path)], check=True)
    for agent in AGENT_NAMES:
        page = tmp_path / f"usr/share/man/man7/ocf_kuth_{agent}.7.gz"
        shown = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                               text=True, env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80"})
        assert (shown.returncode, shown.stderr) == (0, "")
        with open(os.path.join(REPO, "metadata", f"{agent}.xml")) as xml:
            assert [p for p in metadata_params(xml.read()) if p not in shown.stdout] == []


def test_version_comes_from_ocf_lib_and_relations_are_debians(deb: str) -> None:
    version = deb_field(deb, "Version")
    assert version == chroot.build_version()
    assert version == ocf_lib.__version__ or version.startswith(f"{ocf_lib.__version__}+git")
    assert deb_field(deb, "Architecture") == "all"
    assert deb_field(deb, "Depends") == "iproute2, python3:any (>= 3.11~)"
    assert deb_field(deb, "Recommends") == ("crmsh | pcs, haproxy, pacemaker, "
                                            "pacemaker-cli-utils")
    assert deb_field(deb, "Suggests") == "resource-agents"


def test_changelog_and_library_name_the_package_version(deb: str, tmp_path) -> None:
    """apt changelog shows the build's own version first, then each release of NEWS.md; the
    library says the package's version (a watcher of another version is replaced by it)."""
    subprocess.run(["dpkg-deb", "-x", deb, str(tmp_path)], check=True)
    with gzip.open(tmp_path / DOC_DIR.lstrip("/") / "changelog.gz", "rt") as changelog:
        text = changelog.read()
    versions = subprocess.run(["dpkg-parsechangelog", "-l", "-", "--all", "--format", "rfc822",
                               "-S", "Version"], input=text, capture_output=True, text=True,
                              check=True).stdout.split()
    released, built = chroot.released(), deb_field(deb, "Version")
    assert versions == ([] if built in released else [built]) + released
    library = tmp_path / PRIVATE_DIR.lstrip("/") / "ocf_lib" / "__init__.py"
    assert f'__version__ = "{built}"' in library.read_text().splitlines()


def test_maintainer_scripts_never_start_stop_or_restart_anything(deb: str, tmp_path) -> None:
    subprocess.run(["dpkg-deb", "-e", deb, str(tmp_path / "control")], check=True)
    scripts = [p for p in (tmp_path / "control").iterdir()
               if p.name in ("preinst", "postinst", "prerm", "postrm")]
    for script in scripts:
        text = script.read_text()
        assert not [tool for tool in SERVICE_TOOLS if tool in text], script.name


def test_apt_installs_it_on_a_clean_debian_and_purge_leaves_nothing(deb: str, root: str) -> None:
    chroot.publish(root, [deb])
    before = chroot.files_of(root)
    installed = chroot.chrooted(root, "apt-get", "install", "-y", "-q", PACKAGE).stdout
    assert "1 newly installed" in installed

    for agent in AGENT_NAMES:
        xml = chroot.chrooted(root, f"{OCF_DIR}/{agent}", "meta-data").stdout
        assert dtd_errors(xml) == ""
        info = chroot.chrooted(root, "crm", "ra", "info", f"ocf:kuth:{agent}").stdout
        assert [p for p in metadata_params(xml) if p not in info] == []
        page = chroot.chrooted(root, "man", "-w", f"ocf_kuth_{agent}").stdout.strip()
        assert page == f"/usr/share/man/man7/ocf_kuth_{agent}.7.gz"

    assert_example_loads(root)

    chroot.chrooted(root, "apt-get", "purge", "-y", "-q", PACKAGE)
    assert sorted(chroot.files_of(root) ^ before) == []
    assert chroot.service_requests(root) == ""


def test_upgrade_from_0_1_0_leaves_running_ipaddr2_and_haproxy_untouched(
        deb: str, root: str, lan, tmp_path) -> None:
    """Every build before releases was 0.1.0 (the override builds one): installing this
    package over it is an upgrade for dpkg and apt, under running resources."""
    node, _peer = lan
    older = chroot.build(str(tmp_path / "older"), "0.1.0")
    for package in (older, deb):
        shutil.copy(package, os.path.join(root, "tmp"))
    with open(os.path.join(root, HAPROXY_CONF.lstrip("/")), "w") as conf:
        conf.write(HAPROXY_CFG)
    chroot.chrooted(root, "apt-get", "install", "-y", "-q", f"/tmp/{os.path.basename(older)}")
    with chroot.proc_mounted(root):
        upgrade_under_running_resources(root, node, f"/tmp/{os.path.basename(deb)}",
                                        deb_field(deb, "Version"))


def test_installed_agents_pass_ocf_tester(deb: str, root: str, lan) -> None:
    """ocf-tester from the root's own resource-agents, against the agents apt installed
    there, in a test node's network namespace: IPaddr2 alone, then haproxy with the VIP its
    configuration binds started by the installed IPaddr2, as in the guide's group."""
    node, _peer = lan
    chroot.publish(root, [deb])
    chroot.chrooted(root, "apt-get", "install", "-y", "-q", PACKAGE)
    with open(os.path.join(root, HAPROXY_CONF.lstrip("/")), "w") as conf:
        conf.write(HAPROXY_CFG)
    options = {"IPaddr2": [f"{k.removeprefix('OCF_RESKEY_')}={v}"
                           for k, v in RESOURCES["IPaddr2"].items() if k.startswith("OCF_RESKEY")],
               "haproxy": [f"conffile={HAPROXY_CONF}"]}
    with chroot.proc_mounted(root):
        for agent, started_first in (("IPaddr2", []), ("haproxy", ["IPaddr2"])):
            for dependency in started_first:
                assert run_resource(root, node, dependency, "start") == 0, dependency
            argv = ["ocf-tester", "-n", f"test-{agent}"]
            for option in options[agent]:
                argv += ["-o", option]
            proc = chroot.chrooted(root, *argv, f"{OCF_DIR}/{agent}", check=False,
                                   prefix=("nsenter", f"--net=/run/netns/{node.name}"))
            for dependency in started_first:
                assert run_resource(root, node, dependency, "stop") == 0, dependency
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            assert "passed all tests" in proc.stdout
    assert "198.18.0.10/24" not in node.addresses("lan0")
    assert live_haproxy(node) == []


HAPROXY_CONF = "/etc/haproxy/kuth-upgrade-test.cfg"
HAPROXY_CFG = """\
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend kube-apiserver
    bind 198.18.0.10:6443
    default_backend masters
backend masters
    server peer 198.18.0.2:6443 check inter 1s
"""
RESOURCES = {
    "IPaddr2": {"OCF_RESOURCE_INSTANCE": "vip", "OCF_RESKEY_ip": "198.18.0.10",
                "OCF_RESKEY_nic": "lan0", "OCF_RESKEY_cidr_netmask": "24"},
    "haproxy": {"OCF_RESOURCE_INSTANCE": "lb", "OCF_RESKEY_conffile": HAPROXY_CONF},
}


def run_resource(root: str, node, agent: str, action: str) -> int:
    """One action of a resource's agent as installed in root, in node's network namespace
    (nsenter, not `ip netns exec`: every action must see the same mounts, as on a node)."""
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESKEY_CRM_meta_timeout": "20000",
           "OCF_RESKEY_CRM_meta_interval": "20000" if action == "monitor" else "0",
           **RESOURCES[agent]}
    return chroot.chrooted(root, f"{OCF_DIR}/{agent}", action, env=env, check=False,
                           prefix=("nsenter", f"--net=/run/netns/{node.name}")).returncode


def upgrade_under_running_resources(root: str, node, newer: str, version: str) -> None:
    """Start the VIP and HAProxy from the installed package, upgrade to newer (of version),
    and see an upgrade that moves nothing: dpkg -s and dpkg's log name the new version,
    same addresses, same processes, no service request, both still healthy."""
    for agent in RESOURCES:
        assert run_resource(root, node, agent, "start") == 0, agent
    addresses, processes = node.addresses("lan0"), node.pids()
    assert "198.18.0.10/24" in addresses
    old = chroot.chrooted(root, "dpkg-query", "-W", "-f", "${Version}", PACKAGE).stdout

    installed = chroot.chrooted(root, "apt-get", "install", "-y", "-q", newer).stdout
    assert "1 upgraded, 0 newly installed" in installed, installed
    status = chroot.chrooted(root, "dpkg", "-s", PACKAGE).stdout.splitlines()
    assert "Status: install ok installed" in status and f"Version: {version}" in status
    with open(os.path.join(root, "var/log/dpkg.log")) as log:
        assert f" upgrade {PACKAGE}:all {old} {version}" in log.read()
    assert node.addresses("lan0") == addresses
    haproxy = live_haproxy(node)
    assert len(haproxy) == 2 and set(haproxy) <= set(processes), "one master, one worker"
    assert set(node.pids()) <= set(processes)  # nothing started; announcers may have ended
    assert chroot.service_requests(root) == ""
    assert [run_resource(root, node, agent, "monitor") for agent in RESOURCES] == [0, 0]

    for agent in reversed(RESOURCES):
        assert run_resource(root, node, agent, "stop") == 0, agent
    assert "198.18.0.10/24" not in node.addresses("lan0")
    assert live_haproxy(node) == []


def live_haproxy(node) -> list[int]:
    """haproxy processes in node's namespace, without zombies that init has yet to reap."""
    inside = set(node.pids())  # pgrep sees the machine's pid namespace: keep the node's
    pids = [int(p) for p in node.run("pgrep", "-x", "haproxy", check=False).stdout.split()]
    return [pid for pid in pids if pid in inside and processes.alive(pid)]
