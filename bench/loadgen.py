"""A closed-loop HTTP load generator in its own process (used when `wrk` is not installed).

`python -m bench.loadgen JSON` with url, method, paths (cycled), body template (`{n}` is
replaced by a unique number), connections and duration; prints one JSON line with the
request count, errors and latency percentiles. An asyncio httpx client is heavier than wrk,
so on a small machine it can be the bound: the report says which generator ran.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any

import httpx

from bench.stats import percentile


async def _load(args: dict[str, Any]) -> dict[str, Any]:
    paths = itertools.cycle(args["paths"])
    # Unique across runs too: every POST must create a new account.
    run_id = time.time_ns()
    numbers = (f"{run_id}-{i}" for i in itertools.count())
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=args["connections"])

    async with httpx.AsyncClient(base_url=args["url"], limits=limits, timeout=30) as client:

        async def one_connection() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                body = args.get("body")
                content = body.replace("{n}", next(numbers)) if body else None
                t0 = time.perf_counter()
                response = await client.request(
                    args["method"],
                    next(paths),
                    content=content,
                    headers={"content-type": "application/json"},
                )
                latencies.append(time.perf_counter() - t0)
                if response.status_code >= 400:
                    errors += 1

        # After the client exists: building it (TLS context, certificates) takes most of a second.
        t0 = time.perf_counter()
        deadline = t0 + args["duration_s"]
        await asyncio.gather(*(one_connection() for _ in range(args["connections"])))
        elapsed = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def main() -> None:
    print(json.dumps(asyncio.run(_load(json.loads(sys.argv[1])))))


if __name__ == "__main__":
    main()
