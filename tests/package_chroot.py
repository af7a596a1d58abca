"""Clean Debian 12 and 13 roots for the package tests, debootstrapped once and then cached.

One package, built on either release, must install and work on both. A base root is minbase plus the package's own Depends and Recommends (so apt installs only
kuth-resource-agents in every run) plus the few programs the tests drive inside it (`man`, `ocf-tester`,
`crm`). It is kept as a tarball under /var/cache/kuth-resource-agents/, named by its release
and a hash of that package set: a change of dependencies makes a new base, a repeated run unpacks the old
one once, and each test writes to an overlay on it. Services are never started inside:
/usr/sbin/policy-rc.d refuses every action and logs it, which also lets a test prove that
our maintainer scripts asked for none.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from ocfshim import REPO

PACKAGE = "kuth-resource-agents"
CACHE_DIR = "/var/cache/kuth-resource-agents"
SUITES = ("bookworm", "trixie")   # Debian 12 and 13
MIRROR = "http://deb.debian.org/debian"
# What the tests run inside the root besides the package's own relations: ocf-tester comes
# with resource-agents and validates meta-data with xmllint (libxml2-utils).
TEST_TOOLS = ("man-db", "crmsh", "resource-agents", "libxml2-utils")
# Bump when the way the base is made changes, so old tarballs are not reused.
RECIPE = "1"
POLICY_LOG = "/var/log/kuth-policy-rc.d.log"
POLICY_RC_D = f"""#!/bin/sh
# Test root: never start, stop or restart a service; remember who asked.
echo "$*" >> {POLICY_LOG}
exit 101
"""
LOCAL_REPO = "/srv/kuth-repo"
LOCAL_LIST = "/etc/apt/sources.list.d/kuth-local.list"
# HOME in /tmp: crmsh's history files are not the package's and must not look like leftovers.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
             "DEBIAN_FRONTEND": "noninteractive"}


def build(out: str, version: str | None = None) -> str:
    """tools/build-deb into out (a clean copy of the checkout; `make deb` does the same into
    dist/), of version if given, else of the checkout's own (tools/release version); the
    path of the .deb it made."""
    argv = [os.path.join(REPO, "tools", "build-deb")] + (["--version", version] if version else [])
    expected = version or build_version()
    proc = subprocess.run([*argv, out], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return os.path.join(out, f"{PACKAGE}_{expected}_all.deb")


def build_version() -> str:
    """The version a build of the checkout gets now (VERSION, or VERSION+gitN.gHASH)."""
    return release("version").strip()


def released() -> list[str]:
    """NEWS.md's versions, newest first as written."""
    return [line.split()[0] for line in release("releases").splitlines()]


def release(command: str, top: str = REPO) -> str:
    """What tools/release (of the checkout at top) prints for command."""
    return subprocess.run([os.path.join(top, "tools", "release"), command],
                          capture_output=True, text=True, check=True).stdout


def relations(deb: str) -> list[str]:
    """The packages a node gets with `apt-get install` of deb: its Depends and Recommends,
    the first choice of each alternative, without versions or architecture qualifiers."""
    names = []
    for field in ("Depends", "Recommends"):
        value = subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True,
                               check=True).stdout
        for relation in filter(None, (r.strip() for r in value.split(","))):
            names.append(relation.split("|")[0].split()[0].split(":")[0])
    return names


def base_packages(deb: str) -> list[str]:
    return sorted(set(relations(deb)) | set(TEST_TOOLS))


def base_tarball(packages: list[str], suite: str) -> str:
    """The cached base root of release suite for this package set, made now if missing (a
    few minutes)."""
    key = hashlib.sha256(" ".join([suite, MIRROR, RECIPE, *packages]).encode()).hexdigest()[:16]
    tarball = os.path.join(CACHE_DIR, f"{suite}-base-{key}.tar.zst")
    if not os.path.exists(tarball):
        os.makedirs(CACHE_DIR, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
            root = os.path.join(work, "root")
            _debootstrap(root, packages, suite)
            subprocess.run(["tar", "--zstd", "-cf", f"{tarball}.part", "-C", root, "."],
                           check=True)
            os.rename(f"{tarball}.part", tarball)
            _remove_tree(root)
        for stale in set(glob.glob(os.path.join(CACHE_DIR, f"{suite}-base-*"))) - {tarball}:
            os.remove(stale)
    return tarball


def _debootstrap(root: str, packages: list[str], suite: str) -> None:
    subprocess.run(["debootstrap", "--variant=minbase", suite, root, MIRROR], check=True,
                   capture_output=True, env=CLEAN_ENV)
    _write(root, "/usr/sbin/policy-rc.d", POLICY_RC_D, mode=0o755)
    shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
    chrooted(root, "apt-get", "update", "-q")
    with proc_mounted(root):
        chrooted(root, "apt-get", "install", "-y", "-q", *packages)
    chrooted(root, "apt-get", "clean")
    _write(root, POLICY_LOG, "")


def _write(root: str, path: str, text: str, mode: int = 0o644) -> None:
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as out:
        out.write(text)
    os.chmod(full, mode)


def chrooted(root: str, *argv: str, check: bool = True, prefix: tuple[str, ...] = (),
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv inside root with a clean environment plus env; prefix (e.g. `ip netns exec
    NS`) runs outside the chroot first. The output is captured as text."""
    assignments = [f"{k}={v}" for k, v in {**CLEAN_ENV, **(env or {})}.items()]
    proc = subprocess.run([*prefix, "chroot", root, "env", "-i", *assignments, *argv],
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def mounts_under(root: str) -> list[str]:
    real = os.path.realpath(root)
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    return [p for p in points if p == real or p.startswith(real + "/")]


@contextlib.contextmanager
def proc_mounted(root: str) -> Iterator[None]:
    """/proc inside root for as long as the block runs (postinst scripts of the base
    packages need it), unmounted also when the block fails."""
    target = os.path.join(root, "proc")
    subprocess.run(["mount", "-t", "proc", "proc", target], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", target], check=False)
        if target in mounts_under(root):
            subprocess.run(["umount", "-l", target], check=True)


def _remove_tree(root: str) -> None:
    """Delete a root, but never through a mount point left inside it."""
    if mounts_under(root):
        raise RuntimeError(f"{root} still has mounts {mounts_under(root)}: not deleting")
    shutil.rmtree(root)


@contextlib.contextmanager
def unpacked(tarball: str, parent: str) -> Iterator[str]:
    """The base root unpacked under parent (read by overlays only), deleted afterwards."""
    root = os.path.join(parent, "base")
    os.makedirs(root)
    try:
        subprocess.run(["tar", "--zstd", "-xf", tarball, "-C", root], check=True)
        yield root
    finally:
        _remove_tree(root)


@contextlib.contextmanager
def overlaid(base: str, parent: str) -> Iterator[str]:
    """A writable root over base whose changes vanish afterwards: each test starts clean
    without unpacking the tarball again."""
    upper, work, root = (os.path.join(parent, d) for d in ("upper", "work", "root"))
    for directory in (upper, work, root):
        os.makedirs(directory)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base},upperdir={upper},workdir={work}", root], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", root], check=False)
        if root in mounts_under(root):
            subprocess.run(["umount", "-l", root], check=True)
        for directory in (upper, work, root):
            _remove_tree(directory)


def publish(root: str, debs: list[str]) -> None:
    """A local apt repository inside root holding debs, next to Debian's (whose indexes came
    with the base), and an `apt-get update` of the local one only."""
    repo = os.path.join(root, LOCAL_REPO.lstrip("/"))
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(repo)
    for deb in debs:
        shutil.copy(deb, repo)
    index = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo,
                           capture_output=True, text=True, check=True).stdout
    _write(root, f"{LOCAL_REPO}/Packages", index)
    _write(root, LOCAL_LIST, f"deb [trusted=yes] file:{LOCAL_REPO} ./\n")
    chrooted(root, "apt-get", "update", "-q", "-o", f"Dir::Etc::sourcelist={LOCAL_LIST}",
             "-o", "Dir::Etc::sourceparts=-", "-o", "APT::Get::List-Cleanup=0")


def files_of(root: str) -> set[str]:
    """Every path in root except apt's, dpkg's and the logs' bookkeeping (which purge keeps
    by design) and caches that are rebuilt, such as man-db's index."""
    skip = ("/var/lib/dpkg", "/var/lib/apt", "/var/cache", "/var/log", "/srv/kuth-repo",
            "/proc", "/tmp", "/run", "/etc/apt/sources.list.d")
    found = set()
    for top, dirs, files in os.walk(root):
        rel = "/" + os.path.relpath(top, root).lstrip(".")
        if rel.rstrip("/").startswith(skip):
            dirs.clear()
            continue
        found.update(os.path.join(rel, name) for name in dirs + files)
    return found


def service_requests(root: str) -> str:
    with open(os.path.join(root, POLICY_LOG.lstrip("/"))) as log:
        return log.read()
