"""The worker-floor section of the bench still runs: its smallest profile, end to end.

`python -m bench --profile test --only worker` starts a real worker and beat against its own
Redis; only the shape of the results is checked, never a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_worker_floor_section_measures_plain_tasks_and_rounds(tmp_path: Path) -> None:
    """Both phases complete and give rates; the report has the section."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--profile", "test", "--only", "worker"),
            *("--out", str(tmp_path / "benchmarks.md"), "--json", str(tmp_path / "r.json")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    worker = json.loads((tmp_path / "r.json").read_text())["worker"]
    for key in ("plain_per_s", "rounds_per_s", "ratio"):
        assert set(worker[key]) == {"median", "lo", "hi", "n"}
        assert worker[key]["median"] > 0
    assert "## 9. The worker's floor" in (tmp_path / "benchmarks.md").read_text()
