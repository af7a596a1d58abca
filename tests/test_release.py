"""Releases: NEWS.md names the version ocf_lib says, its versions descend as apt sorts them,
and tools/release gives builds versions that apt upgrades in order (no root needed)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

import ocf_lib
import package_chroot as chroot
from ocfshim import REPO

SEMANTIC = re.compile(r"^\d+\.\d+\.\d+$")
GIT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def newer(a: str, b: str) -> bool:
    """a sorts after b for dpkg and apt."""
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0


def in_order(versions: list[str]) -> bool:
    return all(newer(b, a) for a, b in zip(versions, versions[1:]))


def test_news_names_this_version_first_and_descends_as_apt_sorts() -> None:
    lines = chroot.release("releases").splitlines()
    versions, dates = [ln.split()[0] for ln in lines], [ln.split()[1] for ln in lines]
    assert versions[0] == ocf_lib.__version__
    assert [v for v in versions if not SEMANTIC.match(v)] == []
    assert in_order(versions[::-1])
    assert dates == sorted(dates, reverse=True)


def git(top: str, *argv: str) -> str:
    return subprocess.run(["git", "-C", top, *argv], capture_output=True, text=True,
                          check=True, env=GIT_ENV).stdout.strip()


@pytest.fixture
def project(tmp_path) -> str:
    """A repository of its own holding what tools/release reads, released as 1.0.0."""
    top = str(tmp_path / "project")
    for path in ("tools/release", "NEWS.md", "ocf_lib/__init__.py"):
        os.makedirs(os.path.dirname(os.path.join(top, path)), exist_ok=True)
        shutil.copy2(os.path.join(REPO, path), os.path.join(top, path))
    git(top, "init", "-q")
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "before the release")
    set_version(top, "1.0.0")
    git(top, "commit", "-q", "-am", "release 1.0.0")
    return top


def set_version(top: str, version: str) -> None:
    path = os.path.join(top, "ocf_lib", "__init__.py")
    with open(path) as source:
        text = re.sub(r'(?m)^__version__ = .*$', f'__version__ = "{version}"', source.read())
    with open(path, "w") as out:
        out.write(text)


def commit_something(top: str, name: str) -> str:
    with open(os.path.join(top, name), "w") as out:
        out.write(name)
    git(top, "add", name)
    git(top, "commit", "-q", "-m", name)
    return git(top, "rev-parse", "--short=7", "HEAD")


def test_builds_between_releases_sort_after_the_release_and_before_the_next(project,
                                                                          tmp_path) -> None:
    built = [chroot.release("version", project).strip()]
    assert built == ["1.0.0"]
    shallow = str(tmp_path / "shallow")
    for name in ("one", "two"):
        head = commit_something(project, name)
        built.append(chroot.release("version", project).strip())
        if name == "one":
            git(tmp_path, "clone", "-q", "--depth", "1", f"file://{project}", shallow)
            assert chroot.release("version", shallow).strip() == f"1.0.0+git0.shallow.g{head}"
    assert built[1:] == [f"1.0.0+git1.g{git(project, 'rev-parse', '--short=7', 'HEAD~1')}",
                         f"1.0.0+git2.g{head}"]
    with open(os.path.join(project, "two"), "a") as out:
        out.write("uncommitted")
    built.append(chroot.release("version", project).strip())
    assert built[-1] == f"1.0.0+git2.g{head}.dirty"
    git(project, "checkout", "-q", "--", "two")

    set_version(project, "1.0.1")
    git(project, "commit", "-q", "-am", "release 1.0.1")
    built.append(chroot.release("version", project).strip())
    assert built[-1] == "1.0.1"
    order = [built[0], f"1.0.0+git0.shallow.g{head}", *built[1:]]
    assert in_order(order), order


def test_a_tree_without_git_builds_the_plain_release(project, tmp_path) -> None:
    tree = str(tmp_path / "tarball")
    shutil.copytree(project, tree, ignore=shutil.ignore_patterns(".git"))
    commit_something(project, "after")
    assert chroot.release("version", tree).strip() == "1.0.0"


def test_changelog_entries_newest_first_with_a_build_on_top(project) -> None:
    head = commit_something(project, "after")
    version = chroot.release("version", project).strip()
    text = subprocess.run([os.path.join(project, "tools", "release"), "changelog",
                           "--version", version, "--maintainer", "T <t@example.invalid>",
                           "--date", "Sun, 06 Dec 2026 12:00:00 +0000"],
                          capture_output=True, text=True, check=True).stdout
    parsed = subprocess.run(["dpkg-parsechangelog", "-l", "-", "--all", "--format", "rfc822",
                             "-S", "Version"],
                            input=text, capture_output=True, text=True, check=True)
    assert parsed.stdout.split() == [version, *chroot.released()]
    assert f"commit {head}" in text
    assert max(len(line) for line in text.splitlines()) <= 80
