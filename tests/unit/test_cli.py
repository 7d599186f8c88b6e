"""Specification of taskdispatch.dev.cli: the `taskdispatch` command and its subcommands.

`main(argv)` is called in this process (argparse exits through SystemExit); the commands
that reach Redis are pointed at the session's private server through the environment.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskdispatch import __version__
from taskdispatch.dev.cli import main
from taskdispatch.dev.embedded_redis import free_port
from taskdispatch.settings import get_settings
from taskdispatch.store.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys("td:")


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """TASKDISPATCH_* pointing at the session Redis, read afresh by get_settings()."""
    monkeypatch.setenv("TASKDISPATCH_REDIS_URL", redis_url)
    monkeypatch.setenv("TASKDISPATCH_KEY_PREFIX", "td:")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_cli_version_exits_0_printing_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints "taskdispatch <version>" and exits with status 0."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"taskdispatch {__version__}\n"


def test_cli_without_a_command_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """No subcommand is a usage error: status 2, the usage line on stderr."""
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("usage: taskdispatch ")


def test_cli_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A command that does not exist is a usage error naming the valid choices."""
    with pytest.raises(SystemExit) as info:
        main(["launch"])
    assert info.value.code == 2
    assert "invalid choice: 'launch'" in capsys.readouterr().err


def test_cli_check_help_shows_the_check_options(capsys: pytest.CaptureFixture[str]) -> None:
    """`check --help` is the check command's own help, listing its options."""
    with pytest.raises(SystemExit) as info:
        main(["check", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: taskdispatch check ")
    for option in ("--process", "--beat-alive", "--worker-consuming"):
        assert option in out


def test_cli_check_with_a_reachable_redis_returns_0(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` against the session Redis passes and says so on stdout."""
    assert main(["check"]) == 0
    assert "passed the startup checks" in capsys.readouterr().out


def test_cli_check_with_an_unreachable_redis_returns_1(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` against a port nothing listens on fails with one line on stderr."""
    env.setenv("TASKDISPATCH_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    assert main(["check"]) == 1
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err


def test_cli_check_options_reach_the_check_command(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Options after `check` are the check command's: --beat-alive fails with no beat."""
    assert main(["check", "--beat-alive", "5"]) == 1
    assert "no beat heartbeat" in capsys.readouterr().err


def test_cli_consistency_on_an_empty_store_prints_consistent_true(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`consistency` on an empty store prints {"consistent": true, ...} and returns 0."""
    assert main(["consistency"]) == 0
    assert json.loads(capsys.readouterr().out) == {"consistent": True, "problems": []}


def test_cli_consistency_with_a_stray_index_entry_returns_1(
    env: pytest.MonkeyPatch, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An index entry without its task is reported, and the command returns 1."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.zadd(KEYS.due(), {"ghost": 1})
    client.close()
    assert main(["consistency"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["consistent"] is False
    assert any("ghost" in problem for problem in report["problems"])


def test_cli_module_help_lists_run_check_and_consistency() -> None:
    """`python -m taskdispatch --help` exits 0 and lists every subcommand."""
    done = subprocess.run(
        [sys.executable, "-m", "taskdispatch", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # Each subcommand starts a line of the help, indented by four spaces.
    listed = re.findall(r"^ {4}(\w+)", done.stdout, flags=re.MULTILINE)
    assert set(listed) >= {"run", "check", "consistency"}
