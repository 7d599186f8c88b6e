"""Specification of taskdispatch.domain.messages: one table holds every message a client reads.

The code names messages by key; these tests read the source of `taskdispatch/` and `api/`
for every key it uses and check each against the table, and check the table's language.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from api import exceptions as api_exceptions
from taskdispatch.domain.messages import MESSAGES, text

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "taskdispatch").rglob("*.py"), *(ROOT / "api").rglob("*.py")])

# A message key passed as the first argument of the calls that build messages: text(),
# the exceptions that take a key, their base's super().__init__, and the API's 401 helper.
_KEY_CALL = re.compile(
    r"\b(?:text|InvalidTaskError|TaskConflictError|ScheduleError|TaskDispatchError"
    r"|super\(\)\.__init__|_unauthorized)\(\s*\"([A-Za-z_][A-Za-z0-9_]*)\""
)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")


def used_keys() -> dict[str, list[str]]:
    """Every message key the source names, with the files naming it."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        for key in _KEY_CALL.findall(path.read_text(encoding="utf-8")):
            found.setdefault(key, []).append(str(path.relative_to(ROOT)))
    for key in api_exceptions._HTTP_MESSAGES.values():
        found.setdefault(key, []).append("api/exceptions.py (_HTTP_MESSAGES)")
    return found


def test_messages_source_scan_finds_the_keys_of_every_kind_of_call() -> None:
    """The scan sees keys of text(), each exception, super().__init__ and _HTTP_MESSAGES."""
    keys = used_keys()
    for sample in (
        "stream_id",  # text(...) in api/routers/events.py
        "id_length",  # InvalidTaskError(...)
        "pause_conflict",  # TaskConflictError(...)
        "window_format",  # ScheduleError(...)
        "task_not_found",  # super().__init__(...) of TaskNotFoundError
        "unauthorized_missing",  # _unauthorized(...) in api/dependencies.py
        "route_not_found",  # _HTTP_MESSAGES
    ):
        assert sample in keys, f"the scan misses {sample}"


def test_messages_every_key_used_in_the_code_exists() -> None:
    """No message key named in taskdispatch/ or api/ is missing from MESSAGES."""
    missing = {key: files for key, files in used_keys().items() if key not in MESSAGES}
    assert missing == {}


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_messages_every_value_is_in_the_document_language(key: str) -> None:
    """Each message holds at least one CJK character: the API speaks Chinese."""
    assert _CJK.search(MESSAGES[key]), MESSAGES[key]


def test_messages_every_placeholder_is_a_plain_name() -> None:
    """Placeholders are bare names (`{field}`), so text() fills each from one keyword."""
    bad = {}
    for key, template in MESSAGES.items():
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is not None and (not name.isidentifier() or spec or conversion):
                bad[key] = template
    assert bad == {}


def test_text_fills_the_placeholders() -> None:
    """text(key, **params) is the message with every {placeholder} replaced."""
    assert text("task_not_found", task_id="t-1") == "任务不存在: t-1"
    assert text("id_length", field="sys_type", max=128, length=0) == (
        "sys_type 长度必须为 1..128 个字符，收到 0 个"
    )


def test_text_of_a_message_without_placeholders_is_the_message() -> None:
    """A message with nothing to fill comes back as written."""
    assert text("internal_error") == MESSAGES["internal_error"] == "内部服务器错误"


def test_text_missing_parameter_raises_key_error() -> None:
    """A placeholder left without a value is an error, never a half-filled message."""
    with pytest.raises(KeyError):
        text("task_not_found")
