"""The audit entry as the trail stores it: each value once, read back unchanged, in either
shape (this release's fields, or the release before's one JSON field)."""

from __future__ import annotations

import json

import pytest

from taskdispatch.store.audit import LEGACY_FIELD, AuditEntry

ID = "1767834000000-0"
TASK = "550e8400-e29b-41d4-a716-446655440000"

CREATE = AuditEntry(
    at_ms=1_767_834_000_000,
    actor="alice",
    action="create",
    task_id=TASK,
    account_id="account_1",
    changes={
        "xhs_account_name": {"before": None, "after": "账号1"},
        "interval": {"before": None, "after": 3600},
        "valid_time_range": {"before": None, "after": [8, 22]},
    },
)
PATCH = AuditEntry(
    at_ms=1_767_834_060_000,
    actor="ops-bot",
    action="patch",
    task_id=TASK,
    account_id="account_1",
    changes={
        "interval": {"before": 3600, "after": 7200},
        "tags": {"before": None, "after": ["team:a"]},
        "pause_note": {"before": "申诉", "after": None},
    },
    note="调整",
    request="bulk-1",
)
DELETE = AuditEntry(
    at_ms=1_767_834_120_000,
    actor="alice",
    action="delete",
    task_id=TASK,
    account_id="account_1",
    changes={"status": {"before": "pending", "after": None}},
)
LIMIT = AuditEntry(
    at_ms=1_767_834_180_000,
    actor="alice",
    action="limit.put",
    limit="l1",
    changes={"max_concurrent": {"before": 2, "after": 3}},
)
BULK = AuditEntry(
    at_ms=1_767_834_240_000,
    actor="ops-bot",
    action="bulk.pause",
    changes={"selected": {"before": None, "after": 2}, "failed": {"before": None, "after": 0}},
    request="bulk-1",
)


def _stored(entry: AuditEntry) -> dict[str, str]:
    flat = entry.fields()
    return dict(zip(flat[::2], flat[1::2], strict=True))


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(CREATE, id="create"),
        pytest.param(PATCH, id="patch"),
        pytest.param(DELETE, id="delete"),
        pytest.param(LIMIT, id="limit"),
        pytest.param(BULK, id="bulk"),
    ],
)
def test_entry_fields_read_back_as_the_entry(entry: AuditEntry) -> None:
    """from_fields(fields()) is the entry, with the trail's id and its changes in order."""
    read = AuditEntry.from_fields(ID, _stored(entry))
    assert read == AuditEntry(**{**vars(entry), "id": ID})
    assert list(read.changes) == list(entry.changes)


def test_entry_fields_hold_each_value_once() -> None:
    """A create stores each value it set, nothing for the empty "before" side."""
    assert _stored(CREATE) == {
        "at": "1767834000000",
        "actor": "alice",
        "action": "create",
        "task": TASK,
        "account": "account_1",
        "+xhs_account_name": '"账号1"',
        "+interval": "3600",
        "+valid_time_range": "[8,22]",
    }


def test_entry_fields_of_like_changes_repeat_the_same_names() -> None:
    """Two creates of the same fields name the same fields in the same order, which lets
    Redis keep the names once per node of the stream."""
    other = AuditEntry(**{**vars(CREATE), "task_id": "other", "account_id": "account_2"})
    assert CREATE.fields()[::2] == other.fields()[::2]


def test_entry_in_the_release_before_shape_is_read_from_its_json() -> None:
    """A trail entry of the release before (one JSON field) reads as the same entry."""
    legacy = {
        "at_ms": PATCH.at_ms,
        "actor": PATCH.actor,
        "action": PATCH.action,
        "task_id": TASK,
        "account_id": "account_1",
        "changes": PATCH.changes,
        "note": PATCH.note,
        "request": PATCH.request,
    }
    read = AuditEntry.from_fields(ID, {LEGACY_FIELD: json.dumps(legacy, ensure_ascii=False)})
    assert read == AuditEntry(**{**vars(PATCH), "id": ID})
