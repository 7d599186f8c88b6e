"""Requests per client across every API process: a token bucket in Redis.

`TASKDISPATCH_RATE_LIMIT` is `<count>/<second|minute|hour>`: a client may send `count`
requests at once (the burst) and then one every `period / count`. Each bucket is one hash
(`Keys.rate`), taken from by one Lua call (`lua/ratelimit_take.lua`), so it holds across API
replicas and costs one round trip per request; the script reads Redis's own clock, so
replicas with skewed clocks share one time. An idle client's bucket expires once it would be
full again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RateLimit", "parse_rate_limit"]

_PERIODS_S = {"second": 1, "minute": 60, "hour": 3600}
_FORM = re.compile(r"\s*([1-9][0-9]{0,8})\s*/\s*(second|minute|hour)\s*")


@dataclass(frozen=True)
class RateLimit:
    count: int
    period_s: int

    @property
    def per_ms(self) -> float:
        """Tokens added back per millisecond."""
        return self.count / (self.period_s * 1000)

    @property
    def period_name(self) -> str:
        return next(name for name, s in _PERIODS_S.items() if s == self.period_s)


def parse_rate_limit(value: str) -> RateLimit:
    """`"600/minute"` -> RateLimit(600, 60); ValueError naming the accepted form."""
    match = _FORM.fullmatch(value)
    if match is None:
        raise ValueError(
            f"TASKDISPATCH_RATE_LIMIT must be <count>/<second|minute|hour>, e.g. 600/minute; "
            f"got {value!r}"
        )
    return RateLimit(int(match.group(1)), _PERIODS_S[match.group(2)])
