"""The package installs as a package: pinned runtime set, optional groups, one version, a
`taskdispatch` command, and an image without test tools."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import taskdispatch

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEST_TOOLS = {"pytest", "mypy", "ruff", "selenium", "schemathesis", "hypothesis", "fakeredis"}


def _pins(path: Path) -> set[str]:
    """The `name==version` lines of a requirements file (comments and -r lines left out)."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {line.lower() for line in lines if line and not line.startswith("-")}


def _group(*names: str) -> set[str]:
    groups = PYPROJECT["project"]["optional-dependencies"]
    return {pin.lower() for name in names for pin in groups[name]}


def _names(pins: set[str]) -> set[str]:
    return {re.split(r"[\[=<>]", pin)[0] for pin in pins}


def test_packaging_runtime_pins_are_the_package_dependencies() -> None:
    """requirements.txt (the image's set) and pyproject's dependencies pin the same."""
    assert _pins(ROOT / "requirements.txt") == {
        p.lower() for p in PYPROJECT["project"]["dependencies"]
    }


def test_packaging_dev_pins_are_the_optional_groups() -> None:
    """requirements-dev.txt holds exactly the dev, test, lint, fuzz and browser groups."""
    assert _pins(ROOT / "requirements-dev.txt") == _group("dev", "test", "lint", "fuzz", "browser")


def test_packaging_bench_pins_are_the_bench_group() -> None:
    """bench/requirements.txt (make bench) holds exactly the bench group."""
    assert _pins(ROOT / "bench" / "requirements.txt") == _group("bench")


def test_packaging_runtime_set_has_no_test_tools() -> None:
    """No test, lint or browser tool is a runtime dependency (the image installs those)."""
    assert _names(_pins(ROOT / "requirements.txt")) & TEST_TOOLS == set()


def test_packaging_image_installs_the_runtime_set_only() -> None:
    """The Dockerfile installs requirements.txt and the package; tests/ stay out of it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n]+)", dockerfile)
    assert installs == ["-r requirements.txt", "--no-deps ."]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests/", "bench/", "requirements-dev.txt"} <= set(ignored)


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
