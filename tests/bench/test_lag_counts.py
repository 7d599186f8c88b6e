"""The lag sweep's task counts: the profile's, plus one at the edge of the claim."""

from __future__ import annotations

from bench import lag
from bench.config import PROFILES


def test_counts_without_capacity_are_the_profiles() -> None:
    """With no worker capacity measured, the sweep is the profile's counts."""
    assert lag.counts(PROFILES["full"], None) == sorted(PROFILES["full"].lag_counts)


def test_counts_with_capacity_add_the_largest_load_within_the_claim_share() -> None:
    """The added count asks at most 80% of the capacity, and one task more would ask more."""
    capacity = 253.0
    (added,) = set(lag.counts(PROFILES["full"], capacity)) - set(PROFILES["full"].lag_counts)
    assert lag._demand_per_s(added) <= lag.CLAIM_SHARE * capacity
    assert lag._demand_per_s(added + 1) > lag.CLAIM_SHARE * capacity
