"""The `taskdispatch` command: `run`, `check` and `consistency`.

Each subcommand is the `main(argv)` of its module, so `taskdispatch run --help` shows that
module's own options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from taskdispatch import __version__

__all__ = ["main"]


def _run(argv: Sequence[str]) -> int:
    from taskdispatch.dev import supervisor  # dev tooling: imported only when asked for

    return supervisor.main(argv)


def _check(argv: Sequence[str]) -> int:
    from taskdispatch.store import checks

    return checks.main(argv)


def _consistency(argv: Sequence[str]) -> int:
    from taskdispatch.service import consistency

    return consistency.main(argv)


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "run": (_run, "run Redis (embedded unless configured), API, worker, beat and Flower"),
    "check": (_check, "the startup checks every process runs (Redis, eviction, persistence)"),
    "consistency": (_consistency, "verify that every index agrees with the task hashes"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taskdispatch",
        description="taskdispatch: a Redis-backed, Celery-based scheduler of per-account jobs.",
    )
    parser.add_argument("--version", action="version", version=f"taskdispatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        # The subcommand's own parser reads the rest, so its --help lists its options.
        commands.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    return COMMANDS[args.command][0](rest)
