"""The package installs as a package: compatible ranges in pyproject.toml, the tools as
dependency groups, generated locks that make and the image install from, one version, a
`taskdispatch` command, and an image without test tools."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections import deque
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
from packaging.dependency_groups import resolve_dependency_groups
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

import taskdispatch

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEPENDENCIES = tuple(PYPROJECT["project"]["dependencies"])
GROUPS = PYPROJECT["dependency-groups"]
LOCKS = ROOT / "requirements"
TOOL_GROUPS = ("test", "lint", "fuzz", "browser")
TEST_TOOLS = {"pytest", "mypy", "ruff", "selenium", "schemathesis", "hypothesis", "fakeredis"}
# What each lock pins: the dependencies plus these groups (Makefile, `lock`).
LOCKED = {"runtime.lock": (), "dev.lock": ("dev",), "bench.lock": ("bench",)}


def _lock(name: str) -> dict[NormalizedName, tuple[str, Marker | None]]:
    """A lock's pins: name -> (exact version, marker). Anything but `name==version` fails."""
    pins: dict[NormalizedName, tuple[str, Marker | None]] = {}
    for line in (LOCKS / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==" and not requirement.extras, line
        pins[canonicalize_name(requirement.name)] = (specifier.version, requirement.marker)
    return pins


def _applies(marker: Marker | None, *, extra: str = "") -> bool:
    """Whether a marker holds on this interpreter (with this extra requested)."""
    return marker is None or marker.evaluate({"extra": extra})


def _declared(*groups: str) -> list[Requirement]:
    """The runtime dependencies and these groups' requirements (includes resolved)."""
    return [Requirement(r) for r in (*DEPENDENCIES, *resolve_dependency_groups(GROUPS, *groups))]


def _closure(requirements: list[Requirement]) -> set[NormalizedName]:
    """Every distribution these requirements pull in here, from the installed metadata, each
    extra followed wherever it is requested."""
    seen: set[tuple[NormalizedName, str]] = set()
    # A queued requirement's marker has been checked (for the extra that brought it in).
    queue = deque(r for r in requirements if _applies(r.marker))
    while queue:
        requirement = queue.popleft()
        name = canonicalize_name(requirement.name)
        for extra in {"", *requirement.extras} - {e for n, e in seen if n == name}:
            seen.add((name, extra))
            for line in requires(name) or []:
                sub = Requirement(line)
                if _applies(sub.marker, extra=extra):
                    queue.append(sub)
    return {name for name, _ in seen}


def _pip_installs(text: str) -> list[tuple[str, str]]:
    """Every `pip install` of a Makefile or Dockerfile: (the interpreter running pip, or ""
    for a bare `pip`, and its arguments without the quiet options)."""
    found = re.findall(r"(?:(\S+) -m )?pip install (.+?)(?: && \\)?$", text, re.MULTILINE)
    quiet = {"-q", "--disable-pip-version-check"}
    return [(python, " ".join(a for a in args.split() if a not in quiet)) for python, args in found]


def test_packaging_dependencies_are_ranges_not_pins() -> None:
    """pyproject declares lower-bounded ranges, runtime and every group; exact pins live only
    in the locks."""
    for requirement in _declared(*GROUPS):
        operators = {s.operator for s in requirement.specifier}
        assert ">=" in operators and not operators & {"==", "==="}, str(requirement)


def test_packaging_tools_are_dependency_groups_not_extras() -> None:
    """The tools are PEP 735 groups, `dev` includes test, lint, fuzz and browser, and nothing
    is published as an extra."""
    assert "optional-dependencies" not in PYPROJECT["project"]
    assert {*TOOL_GROUPS, "dev", "bench"} <= set(GROUPS)
    included = {item["include-group"] for item in GROUPS["dev"] if isinstance(item, dict)}
    assert included == set(TOOL_GROUPS)


@pytest.mark.parametrize(("lock", "groups"), LOCKED.items(), ids=list(LOCKED))
def test_packaging_lock_satisfies_every_declared_requirement(
    lock: str, groups: tuple[str, ...]
) -> None:
    """Each requirement of the dependencies and the lock's groups has a pin in the lock that
    its range admits."""
    pins = _lock(lock)
    for requirement in _declared(*groups):
        pinned, _ = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(pinned, prereleases=True), (str(requirement), pinned)


def test_packaging_build_requirement_is_locked() -> None:
    """`make venv` builds the editable install with the dev lock's setuptools, which the
    build-system range admits."""
    (build,) = (Requirement(r) for r in PYPROJECT["build-system"]["requires"])
    pinned, _ = _lock("dev.lock")[canonicalize_name(build.name)]
    assert build.specifier.contains(pinned)


def test_packaging_locks_agree_on_every_version() -> None:
    """runtime.lock and bench.lock are resolved under dev.lock: a package shared by two locks
    has one version and marker, and the runtime set is part of the dev set."""
    dev = _lock("dev.lock")
    runtime, bench = _lock("runtime.lock"), _lock("bench.lock")
    assert runtime.items() <= dev.items()
    assert {name: bench[name] for name in bench.keys() & dev.keys()} == {
        name: dev[name] for name in bench.keys() & dev.keys()
    }


def test_packaging_locks_are_generated_by_make_lock() -> None:
    """Every lock says it is uv's output of `make lock`, and no other requirements file (a
    hand-kept pin list) remains."""
    for lock in LOCKED:
        header = (LOCKS / lock).read_text().splitlines()[:2]
        assert header == [
            "# This file was autogenerated by uv via the following command:",
            "#    make lock",
        ], lock
    assert sorted(p.name for p in LOCKS.iterdir()) == sorted(LOCKED)
    assert [*ROOT.glob("requirements*.txt"), *ROOT.glob("bench/requirements*.txt")] == []


def test_packaging_dev_lock_is_installed_here() -> None:
    """This virtualenv holds every dev.lock pin that applies here, at its locked version."""
    wrong = {}
    for name, (pinned, marker) in _lock("dev.lock").items():
        if not _applies(marker):
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert wrong == {}


@pytest.mark.parametrize("lock", ["runtime.lock", "dev.lock"])
def test_packaging_lock_is_exactly_the_dependency_closure(lock: str) -> None:
    """The lock pins what its requirements pull in here (transitively, extras followed), and
    nothing else: no stale or hand-added pin. (bench.lock's extra packages are installed only
    by `make bench`; the agreement with dev.lock covers the rest of it.)"""
    pins = {n for n, (_, marker) in _lock(lock).items() if _applies(marker)}
    assert pins == _closure(_declared(*LOCKED[lock]))


def test_packaging_runtime_lock_has_no_test_tools() -> None:
    """No test, lint or browser tool is in the runtime lock (the image installs it)."""
    assert set(_lock("runtime.lock")) & TEST_TOOLS == set()


def test_packaging_make_installs_from_the_locks() -> None:
    """`make venv` (and so CI) installs dev.lock with plain pip, then the package without its
    dependencies; the bench targets add bench.lock; the stamp follows dev.lock."""
    makefile = (ROOT / "Makefile").read_text()
    assert _pip_installs(makefile) == [
        ("$(PY)", "-r requirements/dev.lock"),
        ("$(PY)", "--no-deps --no-build-isolation -e ."),
        ('"$$tmp/bin/python"', "uv==$(UV_VERSION)"),  # `make lock`'s throwaway virtualenv
        ("$(PY)", "-r requirements/bench.lock"),
        ("$(PY)", "-r requirements/bench.lock"),
    ]
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.MULTILINE)
    assert stamp is not None and "requirements/dev.lock" in stamp[1].split()


def test_packaging_image_installs_the_runtime_lock_only() -> None:
    """The Dockerfile installs runtime.lock and the package; tests, bench and the other locks
    stay out of the build context."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert _pip_installs(dockerfile) == [("", "-r requirements/runtime.lock"), ("", "--no-deps .")]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests/", "bench/", "requirements/dev.lock", "requirements/bench.lock"} <= set(ignored)


def test_packaging_version_has_one_source() -> None:
    """pyproject reads the version from taskdispatch.__version__; the installed one agrees."""
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "taskdispatch.__version__"
    assert version("taskdispatch") == taskdispatch.__version__


@pytest.mark.e2e
def test_packaging_pip_install_in_a_fresh_venv_gives_the_command(tmp_path: Path) -> None:
    """`pip install .` into a new virtualenv, then `taskdispatch --help` lists its commands."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, str(ROOT)], check=True, timeout=600, cwd=tmp_path)
    out = subprocess.run(
        [str(venv / "bin" / "taskdispatch"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,  # not the checkout: the installed package alone
    )
    for command in ("run", "check", "consistency"):
        assert command in out.stdout
    shown = subprocess.run(
        [str(venv / "bin" / "taskdispatch"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert shown.stdout.strip() == f"taskdispatch {taskdispatch.__version__}"
