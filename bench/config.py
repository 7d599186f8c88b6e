"""Sizes and repeat counts of each profile: full (`make bench`), quick, and the test's smallest."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROFILES", "Profile"]


@dataclass(frozen=True)
class Profile:
    name: str
    # 1. tick cost: stored sizes, due per tick, timed ticks per size.
    tick_sizes: tuple[int, ...]
    tick_due: int
    tick_repeats: int
    # The repeats are split over this many interleaved rounds (see bench/tick.py).
    tick_rounds: int
    # PersistentScheduler keeps every entry in the beat process and compares them all on every
    # tick: sizes above this are not attempted (the report says why, from the last measured).
    persistent_max: int
    # 2. dispatch throughput: slots due at once, runs per figure.
    dispatch_due: int
    dispatch_repeats: int
    # 3. scheduling lag: task counts of the sweep, windows per count and their length.
    lag_counts: tuple[int, ...]
    lag_warmup_s: float
    lag_windows: int
    lag_window_s: float
    lag_concurrency: int
    # 4. API: stored sizes, seconds per load run, runs per figure, connections.
    api_sizes: tuple[int, ...]
    api_duration_s: float
    api_repeats: int
    api_connections: int
    # 5. memory: tasks stored, runs.
    memory_n: int
    memory_repeats: int
    # 6. limits: rounds per timed run, runs per case.
    limits_rounds: int = 200
    limits_repeats: int = 5
    # 7. capacity: task counts run at one interval (s) by one worker (pool size) and one beat,
    # warm-up, measured windows and their length, the idle window; tasks stored for the
    # storage and read costs.
    capacity_tasks: tuple[int, ...] = (100, 300)
    capacity_interval_s: int = 2
    capacity_concurrency: int = 4
    capacity_warmup_s: float = 8.0
    capacity_windows: int = 3
    capacity_window_s: float = 8.0
    capacity_idle_s: float = 6.0
    capacity_stored: int = 100_000
    # 9. worker floor: tasks per phase, phases of each kind (the pool is lag_concurrency).
    worker_n: int = 2_000
    worker_repeats: int = 3


PROFILES = {
    "full": Profile(
        name="full",
        tick_sizes=(1_000, 10_000, 100_000, 1_000_000),
        tick_due=10,
        tick_repeats=15,
        tick_rounds=3,
        persistent_max=100_000,
        dispatch_due=10_000,
        dispatch_repeats=3,
        lag_counts=(250, 500, 1_000, 2_000),
        lag_warmup_s=12.0,
        lag_windows=3,
        lag_window_s=10.0,
        lag_concurrency=4,
        api_sizes=(1_000, 100_000),
        api_duration_s=4.0,
        api_repeats=3,
        api_connections=8,
        memory_n=100_000,
        memory_repeats=2,
    ),
    "quick": Profile(
        name="quick",
        tick_sizes=(1_000, 10_000),
        tick_due=10,
        tick_repeats=8,
        tick_rounds=2,
        persistent_max=10_000,
        dispatch_due=1_000,
        dispatch_repeats=3,
        lag_counts=(100,),
        lag_warmup_s=6.0,
        lag_windows=3,
        lag_window_s=3.0,
        lag_concurrency=4,
        api_sizes=(1_000, 10_000),
        api_duration_s=1.0,
        api_repeats=3,
        api_connections=8,
        memory_n=10_000,
        memory_repeats=2,
        capacity_tasks=(100,),
        capacity_warmup_s=5.0,
        capacity_windows=2,
        capacity_window_s=4.0,
        capacity_idle_s=3.0,
        capacity_stored=10_000,
        worker_n=500,
        worker_repeats=2,
    ),
    # The smallest size of everything cheap, for tests/bench/test_bench_quick.py.
    "test": Profile(
        name="test",
        tick_sizes=(1_000,),
        tick_due=10,
        tick_repeats=3,
        tick_rounds=1,
        persistent_max=1_000,
        dispatch_due=200,
        dispatch_repeats=2,
        lag_counts=(20,),
        lag_warmup_s=4.0,
        lag_windows=2,
        lag_window_s=2.0,
        lag_concurrency=2,
        api_sizes=(200,),
        api_duration_s=0.5,
        api_repeats=2,
        api_connections=4,
        memory_n=1_000,
        memory_repeats=2,
        limits_rounds=20,
        limits_repeats=2,
        capacity_tasks=(20,),
        capacity_concurrency=2,
        capacity_warmup_s=3.0,
        capacity_windows=1,
        capacity_window_s=2.0,
        capacity_idle_s=2.0,
        capacity_stored=1_000,
        worker_n=50,
        worker_repeats=1,
    ),
}
