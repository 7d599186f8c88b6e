"""`make test-repeat N=10`: run the real-process suites N times in a row and count failures.

A flaky test is a bug, so this is how stability is shown: every run is a fresh pytest
process over the fault, e2e and stack suites; the summary gives runs, failed runs, the
failed tests by name and the wall time, for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("tests/faults", "tests/e2e", "tests/stack")
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.repeat", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=2, help="pytest processes per run, as `make test` runs"
    )
    parser.add_argument("--log-dir", type=Path, default=ROOT / "var" / "test-repeat")
    parser.add_argument("suites", nargs="*", default=list(SUITES))
    args = parser.parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    failures: Counter[str] = Counter()
    failed_runs = 0
    began = time.monotonic()
    for n in range(1, args.runs + 1):
        started = time.monotonic()
        log = args.log_dir / f"run-{n:02d}.log"
        with log.open("w") as out:
            code = subprocess.call(
                [
                    *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
                    *(("-n", str(args.workers), "--dist", "worksteal") if args.workers > 1 else ()),
                    *args.suites,
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        failed = _FAILED.findall(log.read_text(errors="replace"))
        failures.update(failed)
        failed_runs += code != 0
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        print(
            f"run {n}/{args.runs}: exit {code} in {time.monotonic() - started:.0f} s; "
            f"{tail[0] if tail else ''}",
            flush=True,
        )
    wall_s = time.monotonic() - began
    print(
        f"\n{args.runs} runs of {' '.join(args.suites)}: {failed_runs} failed, "
        f"wall time {wall_s / 60:.1f} min ({wall_s / args.runs:.0f} s per run); logs in "
        f"{args.log_dir}"
    )
    for name, count in failures.most_common():
        print(f"  {count}x {name}")
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
