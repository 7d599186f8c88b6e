"""The README's walkthrough runs as written: every bash block, pasted into a shell."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api import ApiProcess
from tests.support.stack import e2e_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _walkthrough_blocks() -> list[str]:
    """The bash blocks of the README's "Walkthrough" section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.partition("## Walkthrough")[2].partition("\n## ")[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    with ApiProcess(e2e_env(redis_url), tmp_path / "api.log") as process:
        yield process


def _run(block: str, base_url: str) -> str:
    # As pasted into a terminal, against this test's API instead of localhost:8000.
    script = block.replace("http://localhost:8000", base_url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _answers(out: str) -> list[object]:
    """The JSON values curl printed, back to back (curl -s adds no newline), and the text
    between them as strings."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while i < len(out):
        if out[i] in "{[":
            value, i = decoder.raw_decode(out, i)
            found.append(value)
        else:
            end = min((j for j in (out.find("{", i), out.find("[", i)) if j >= 0), default=len(out))
            found.extend(line for line in out[i:end].split("\n") if line.strip())
            i = end
    return found


def test_readme_walkthrough_runs_as_written(api: ApiProcess) -> None:
    """Health, create (id kept in TASK_ID), list, pause, resume and start all succeed."""
    blocks = _walkthrough_blocks()
    assert len(blocks) == 2
    health, created, *answers = _answers(_run(blocks[0], api.base_url))
    assert isinstance(health, dict) and health["status"] == "healthy"
    assert isinstance(created, str)
    task_id = created.removeprefix("created ")
    assert answers[0]["total"] == 1 and answers[0]["tasks"][0]["task_id"] == task_id
    assert [a["message"] for a in answers[1:]] == ["任务暂停成功", "任务恢复成功", "调度器已启动"]
    assert answers[1]["task_id"] == task_id and answers[2]["status"] == "pending"


def test_readme_watching_rounds_block_creates_the_short_task(api: ApiProcess) -> None:
    """The second block creates account_2 with a 5 s interval and reads it back."""
    created, account = _answers(_run(_walkthrough_blocks()[1], api.base_url))
    assert isinstance(created, dict) and isinstance(account, dict)
    assert created["success"] is True
    assert account["tasks"][0]["interval"] == 5
