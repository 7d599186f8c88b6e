"""The short soak: 300 tasks at 1-5 s on 2 workers and 2 beats for 20 s, nothing goes wrong."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.faults.soak import run_soak

pytestmark = pytest.mark.e2e


def test_soak_300_tasks_20_s_zero_overlaps_duplicates_and_lost_rounds(
    redis_url: str, tmp_path: Path
):
    """Zero overlaps, duplicate slots and lost rounds; every task ran; the lag is printed."""
    report = run_soak(tasks=300, seconds=20, redis_url=redis_url, log_dir=tmp_path)
    print("\n" + json.dumps(asdict(report)))
    assert report.violations() == {}
    assert report.tasks_never_run == 0
    assert report.failed == 0
    assert report.rounds_ok >= 300
