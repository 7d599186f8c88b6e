"""The Lua scripts, each in its own file under `store/lua/`, and the one way to call them.

Lua is used where a change must be atomic across keys or read-then-write (and for the API's
one-round-trip read of tasks with their facts). Every script
opens with a comment saying what it does and what it returns, then names each KEYS and ARGV
entry as a local; a variadic tail (a list of keys or arguments) is declared there too and
read by loops with named offsets. A script touches only the keys passed in KEYS, so it is
valid on Redis Cluster when its keys share a slot. Two follow ids they read to keys that
cannot be named before: the limits scripts (a waiter's task hash, see `limits.py`) and the
API's one-round-trip read (`store_read.lua`: a task's account lease and its limit's places;
read only).

Task hash field names inside Lua come from `models.TASK_FIELDS`: a script that reads `F.`
gets `local F = {...}` generated from it ahead of its source. The limits scripts share
`limits_common.lua`, placed after each one's header (its functions read the header's
locals).

Each `LuaScript` declares how many keys and arguments its callers pass (fixed ones, then
optional repeated groups); every call is checked against that, and
`tests/unit/test_lua_scripts.py` checks each file's header against it. A script's source is
read once per process and registered once per client; in a pipeline (often a MULTI) it is
queued with EVAL, since an EVALSHA unknown to a restarted Redis would fail the transaction.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript, Script

from taskdispatch.domain.models import TASK_FIELDS

__all__ = [
    "AUDIT_ADD",
    "AUDIT_TASK_PAGE",
    "BEAT_CLAIM",
    "BEAT_RELEASE_CLAIMS",
    "CONDITIONS_COMMIT",
    "LEASE_RELEASE",
    "LEASE_RENEW",
    "LIMITS_ADMIT",
    "LIMITS_LEAVE",
    "LIMITS_RELEASE",
    "LIMITS_WAKE",
    "NOTIFIER_CLAIM",
    "NOTIFIER_FLUSH",
    "NOTIFIER_LEAD",
    "NOTIFIER_RECORD",
    "PROGRESS_WRITE",
    "RATELIMIT_TAKE",
    "SCRIPTS",
    "STORE_READ",
    "LuaScript",
    "field_table",
    "lua_text",
]

Arg = str | int | float | bytes
_FIELD_USE = re.compile(r"\bF\.([A-Za-z_]\w*)")
_REGISTERED: weakref.WeakKeyDictionary[Any, dict[str, Script | AsyncScript]] = (
    weakref.WeakKeyDictionary()
)


def lua_text(name: str) -> str:
    """The text of `taskdispatch/store/lua/<name>.lua`, as stored."""
    return files("taskdispatch.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def field_table(text: str) -> str:
    """`local F = {...}`: the task hash fields script `text` reads (`F.<name>`), named as
    `models.TASK_FIELDS` names them (KeyError for a field it does not have)."""
    used = sorted(set(_FIELD_USE.findall(text)))
    entries = ", ".join(f"{name} = '{TASK_FIELDS[name]}'" for name in used)
    return f"local F = {{{entries}}}\n" if used else ""


@dataclass(frozen=True)
class LuaScript:
    """One script: its file's name and the keys and arguments its callers pass.

    `keys`/`args` are the fixed ones; after them come repeated groups of `key_group` keys
    and `arg_group` arguments (0: none). With both, a call passes as many key groups as
    argument groups, unless `paired` is false; `max_key_groups` bounds the key groups.
    """

    name: str
    keys: int
    args: int
    key_group: int = 0
    arg_group: int = 0
    paired: bool = True
    max_key_groups: int | None = None
    prelude: str | None = None

    @cached_property
    def source(self) -> str:
        """The script as sent to Redis: the field table, its header, the shared prelude (if
        any), its body; comment lines left out (a pipeline sends the source every time)."""
        text = lua_text(self.name)
        if self.prelude is not None:
            header, _, body = text.partition("\n\n")
            text = f"{header}\n\n{lua_text(self.prelude)}\n{body}"
        code = "".join(
            line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("--")
        )
        return field_table(code) + code

    def check(self, keys: Sequence[str], args: Sequence[Arg]) -> None:
        """Raise ValueError unless `keys` and `args` have the counts this script declares."""
        key_groups = _groups(self.name, "keys", len(keys), self.keys, self.key_group)
        arg_groups = _groups(self.name, "args", len(args), self.args, self.arg_group)
        if self.max_key_groups is not None and key_groups > self.max_key_groups:
            raise ValueError(f"{self.name}: at most {self.max_key_groups} key group(s)")
        if self.key_group and self.arg_group and self.paired and key_groups != arg_groups:
            raise ValueError(f"{self.name}: {key_groups} key groups, {arg_groups} arg groups")

    def __call__(self, client: Redis, *, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run it on `client` (EVALSHA, loading it when Redis does not know it)."""
        self.check(keys, args)
        script = self._registered(client)
        assert isinstance(script, Script)
        return script(keys=list(keys), args=list(args), client=client)

    async def run_async(
        self, client: AsyncRedis, *, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """Run it on an asyncio `client`."""
        self.check(keys, args)
        script = self._registered(client)
        assert isinstance(script, AsyncScript)
        return await script(keys=list(keys), args=list(args), client=client)

    def queue(self, pipe: Any, *, keys: Sequence[str], args: Sequence[Arg]) -> None:
        """Queue it in pipeline `pipe` (sync or asyncio) as an EVAL."""
        self.check(keys, args)
        pipe.eval(self.source, len(keys), *keys, *args)

    def _registered(self, client: Redis | AsyncRedis) -> Script | AsyncScript:
        on_client = _REGISTERED.get(client)
        if on_client is None:
            on_client = _REGISTERED[client] = {}
        script = on_client.get(self.name)
        if script is None:
            script = on_client[self.name] = client.register_script(self.source)
        return script


def _groups(name: str, what: str, given: int, fixed: int, group: int) -> int:
    extra = given - fixed
    if extra < 0 or (extra and not group) or (group and extra % group):
        shape = f"{fixed}" + (f" + {group} per group" if group else "")
        raise ValueError(f"{name}: {given} {what} given, it takes {shape}")
    return extra // group if group else 0


AUDIT_ADD = LuaScript("audit_add", keys=1, args=2, key_group=1, arg_group=1, paired=False,
                      max_key_groups=1)  # fmt: skip
AUDIT_TASK_PAGE = LuaScript("audit_task_page", keys=3, args=2)
BEAT_CLAIM = LuaScript("beat_claim", keys=5, args=10, key_group=1, arg_group=1)
BEAT_RELEASE_CLAIMS = LuaScript("beat_release_claims", keys=1, args=1, key_group=1, arg_group=3)
CONDITIONS_COMMIT = LuaScript("conditions_commit", keys=3, args=4)
LEASE_RENEW = LuaScript("lease_renew", keys=3, args=5, key_group=1)
LEASE_RELEASE = LuaScript("lease_release", keys=1, args=1)
LIMITS_ADMIT = LuaScript(
    "limits_admit", keys=5, args=11, key_group=3, arg_group=4, prelude="limits_common"
)
LIMITS_RELEASE = LuaScript(
    "limits_release", keys=2, args=4, key_group=2, arg_group=2, prelude="limits_common"
)
LIMITS_LEAVE = LuaScript("limits_leave", keys=3, args=5, prelude="limits_common")
LIMITS_WAKE = LuaScript("limits_wake", keys=4, args=6, prelude="limits_common")
NOTIFIER_LEAD = LuaScript("notifier_lead", keys=1, args=2)
NOTIFIER_FLUSH = LuaScript("notifier_flush", keys=2, args=2, key_group=2, arg_group=4)
NOTIFIER_CLAIM = LuaScript("notifier_claim", keys=1, args=3, key_group=1, arg_group=1)
NOTIFIER_RECORD = LuaScript("notifier_record", keys=4, args=8)
PROGRESS_WRITE = LuaScript("progress_write", keys=3, args=6)
RATELIMIT_TAKE = LuaScript("ratelimit_take", keys=1, args=2)
STORE_READ = LuaScript("store_read", keys=4, args=5, key_group=2)

SCRIPTS: tuple[LuaScript, ...] = (
    AUDIT_ADD,
    AUDIT_TASK_PAGE,
    BEAT_CLAIM,
    BEAT_RELEASE_CLAIMS,
    CONDITIONS_COMMIT,
    LEASE_RENEW,
    LEASE_RELEASE,
    LIMITS_ADMIT,
    LIMITS_RELEASE,
    LIMITS_LEAVE,
    LIMITS_WAKE,
    NOTIFIER_LEAD,
    NOTIFIER_FLUSH,
    NOTIFIER_CLAIM,
    NOTIFIER_RECORD,
    PROGRESS_WRITE,
    RATELIMIT_TAKE,
    STORE_READ,
)
