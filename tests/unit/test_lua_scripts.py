"""The Lua scripts' files against their registry (taskdispatch/store/scripts.py): each header names
every KEYS and ARGV entry its callers pass, and nothing else reads KEYS or ARGV."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

import pytest

from taskdispatch.domain.models import TASK_FIELDS
from taskdispatch.store.scripts import SCRIPTS, LuaScript, lua_text

_LOCAL = re.compile(r"^local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?$")
_TAIL = re.compile(r"^-- (KEYS|ARGV)\[(\d+)\.\.\]: \S")
_INDEXED = re.compile(r"\b(KEYS|ARGV)\[\s*\d")
# A key built in the script: a concatenation as a command's first argument, as a function's
# first argument, or assigned to a name saying key.
_BUILT_KEY = re.compile(r"redis\.call\('\w+',\s*[^,()]*\.\.|\w*key\w* = [^\n]*\.\.|\w\(\w+ \.\. ")
# Scripts that follow ids they read to keys not known before: the limits scripts (a waiter's
# id to its task hash, a task's `waits` to those limits' waiters; see limits.py) and the
# API's one-round-trip read (a task's account lease and its limit's places; read only).
_FOLLOWS_IDS = {"limits_admit", "limits_release", "limits_leave", "limits_wake", "store_read"}


@dataclass(frozen=True)
class Header:
    """What a script's header declares: its fixed KEYS and ARGV (1..n, in order) and the
    index where each variadic tail starts, if any."""

    keys: list[int]
    args: list[int]
    key_tail: int | None
    arg_tail: int | None
    body: str


def _header(name: str) -> Header:
    text = lua_text(name)
    head, _, body = text.partition("\n\n")
    lines = head.splitlines()
    assert lines[0].startswith("-- "), f"{name}: opens with no comment saying what it does"
    assert any("Returns" in line for line in lines if line.startswith("--")), (
        f"{name}: header does not state its return value"
    )
    found: dict[str, list[int]] = {"KEYS": [], "ARGV": []}
    tails: dict[str, int] = {}
    for line in lines:
        if (local := _LOCAL.match(line)) is not None:
            found[local.group(2)].append(int(local.group(3)))
        elif (tail := _TAIL.match(line)) is not None:
            tails[tail.group(1)] = int(tail.group(2))
        else:
            assert line.startswith("--") or re.fullmatch(r"local \w+ = \d+", line), (
                f"{name}: header line is neither a comment nor a named entry: {line!r}"
            )
    return Header(found["KEYS"], found["ARGV"], tails.get("KEYS"), tails.get("ARGV"), body)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_lua_header_declares_exactly_the_registered_counts(script: LuaScript) -> None:
    """A header names KEYS[1..k] and ARGV[1..a] in order, as the registry declares, and
    declares a tail exactly where the registry has repeated groups."""
    header = _header(script.name)
    assert header.keys == list(range(1, script.keys + 1))
    assert header.args == list(range(1, script.args + 1))
    assert header.key_tail == (script.keys + 1 if script.key_group else None)
    assert header.arg_tail == (script.args + 1 if script.arg_group else None)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_lua_body_reads_no_numbered_keys_or_args(script: LuaScript) -> None:
    """Past its header a script reads KEYS and ARGV only through named offsets."""
    assert _INDEXED.findall(_header(script.name).body) == []


def test_lua_files_all_registered() -> None:
    """Every .lua file is a registered script or the limits' shared prelude."""
    names = {
        path.name.removesuffix(".lua")
        for path in files("taskdispatch.store").joinpath("lua").iterdir()
        if path.name.endswith(".lua")
    }
    assert names == {s.name for s in SCRIPTS} | {"limits_common"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_lua_script_builds_no_key_names(script: LuaScript) -> None:
    """No command's key is a concatenation (a key the caller did not pass), except where the
    limits scripts follow ids they read."""
    built = _BUILT_KEY.findall(script.source)
    assert (built != []) == (script.name in _FOLLOWS_IDS), built


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_lua_fields_come_from_the_task_field_table(script: LuaScript) -> None:
    """Every task hash field a script names (`F.<name>`) is in models.TASK_FIELDS, and the
    source sent to Redis defines exactly those."""
    used = set(re.findall(r"\bF\.(\w+)", script.source))
    assert used <= set(TASK_FIELDS)
    if used:
        assert script.source.startswith("local F = {")


@pytest.mark.parametrize(
    ("keys", "args"),
    [
        (["due", "flag", "beats", "running", "resume"], ["1", "2", "3", "4", "5", "6", "7"]),
        (["due", "flag", "beats", "running", "resume", "t1"], [*"12345678"]),
        (["due", "flag", "beats", "running", "resume"], [*"12345678", "t1"]),
    ],
)
def test_lua_call_with_wrong_counts_is_refused(keys: list[str], args: list[str]) -> None:
    """A call whose keys or arguments do not fit the declaration raises before Redis."""
    beat_claim = next(s for s in SCRIPTS if s.name == "beat_claim")
    with pytest.raises(ValueError, match="beat_claim"):
        beat_claim.check(keys, args)


def test_lua_optional_tail_bounded() -> None:
    """The audit entry's task hash is optional and single."""
    audit_add = next(s for s in SCRIPTS if s.name == "audit_add")
    audit_add.check(["trail"], ["1", "prev", "at", "1"])
    audit_add.check(["trail", "task"], ["1", "prev", "at", "1"])
    with pytest.raises(ValueError, match="audit_add"):
        audit_add.check(["trail", "task", "other"], ["1", "prev"])
