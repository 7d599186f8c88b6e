"""Specification of taskdispatch.store.notifications: what a PUT body may hold, and its record."""

from __future__ import annotations

from typing import Any

import pytest

from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.store.notifications import (
    NOTIFY_EVENTS,
    Notification,
    NotifyMatch,
    notification_from_body,
)

NOW = 1_767_843_000_000
BASE: dict[str, Any] = {"url": "https://hooks.example.com/td", "events": ["task.error"]}


def build(current: Notification | None = None, **body: Any) -> Notification:
    return notification_from_body("ops", {**BASE, **body}, now_ms=NOW, current=current)


def test_body_with_url_and_events_gets_the_defaults() -> None:
    """format json, no secret, every task, overdue after 300 s, grouped over 30 s."""
    assert build() == Notification(
        name="ops",
        url="https://hooks.example.com/td",
        events=("task.error",),
        created_ms=NOW,
        updated_ms=NOW,
    )


def test_events_are_kept_once_in_catalogue_order() -> None:
    """Repeats dropped; the order is NOTIFY_EVENTS's, whatever the body's."""
    events = build(events=["beat.up", "task.error", "beat.up", "test"]).events
    assert events == ("task.error", "beat.up", "test")
    assert all(e in NOTIFY_EVENTS for e in events)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"url": "ftp://example.com/x"}, "url", id="scheme"),
        pytest.param({"url": "file:///etc/passwd"}, "url", id="file"),
        pytest.param({"url": "https://"}, "url", id="no-host"),
        pytest.param({"url": "https://example.com:99999/"}, "url", id="port"),
        pytest.param({"url": "https://example.com/a b"}, "url", id="space"),
        pytest.param({"url": "https://example.com/" + "a" * 2048}, "url", id="long"),
        pytest.param({"url": None}, "url", id="missing"),
        pytest.param({"events": []}, "events", id="no-events"),
        pytest.param({"events": "task.error"}, "events", id="events-text"),
        pytest.param({"events": ["task.error", "task.exploded"]}, "events[1]", id="unknown-event"),
        pytest.param({"format": "teams"}, "format", id="format"),
        pytest.param({"secret": ""}, "secret", id="secret-empty"),
        pytest.param({"secret": "a" * 257}, "secret", id="secret-long"),
        pytest.param({"secret": "a\nb"}, "secret", id="secret-control"),
        pytest.param({"match": {"tag": "x"}}, "match", id="match-key"),
        pytest.param({"match": {"tags": "x"}}, "match.tags", id="match-tags-text"),
        pytest.param({"match": {"tags": ["a b"]}}, "match.tags", id="match-tag-space"),
        pytest.param({"match": {"queue": "x.pidbox"}}, "match.queue", id="match-queue"),
        pytest.param({"overdue_after_s": 0}, "overdue_after_s", id="overdue-0"),
        pytest.param({"overdue_after_s": 30 * 86_400 + 1}, "overdue_after_s", id="overdue-big"),
        pytest.param({"overdue_after_s": 1.5}, "overdue_after_s", id="overdue-float"),
        pytest.param({"group_window_s": -1}, "group_window_s", id="window-negative"),
        pytest.param({"group_window_s": 3601}, "group_window_s", id="window-big"),
        pytest.param({"group_window_s": True}, "group_window_s", id="window-bool"),
    ],
)
def test_invalid_body_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    """Each bad value is an InvalidTaskError naming its field, with a Chinese message."""
    with pytest.raises(InvalidTaskError) as info:
        build(**body)
    assert info.value.field == field
    assert any("\u4e00" <= ch <= "\u9fff" for ch in str(info.value))


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        ({"url": "http://10.0.0.5:8080/hook?x=1"}, "url", "http://10.0.0.5:8080/hook?x=1"),
        ({"overdue_after_s": 1}, "overdue_after_s", 1),
        ({"group_window_s": 0}, "group_window_s", 0),
        ({"group_window_s": 3600}, "group_window_s", 3600),
        ({"format": "feishu"}, "format", "feishu"),
        ({"match": {"tags": ["team:a", "team:a"]}}, "match", NotifyMatch(tags=("team:a",))),
        ({"match": {"queue": "dev-a"}}, "match", NotifyMatch(queue="dev-a")),
    ],
)
def test_valid_bounds_are_accepted(body: dict[str, Any], field: str, value: Any) -> None:
    """The ends of each range, http with a port and a query, tags once each."""
    assert getattr(build(**body), field) == value


@pytest.mark.parametrize("name", ["", "-ops", "a/b", "a|b", "x" * 65])
def test_bad_name_is_refused_as_a_notification_name(name: str) -> None:
    """A name is 1..64 of [A-Za-z0-9_.:@-], first a letter or digit (as limit names)."""
    with pytest.raises(InvalidTaskError) as info:
        notification_from_body(name, BASE, now_ms=NOW, current=None)
    assert info.value.field == "name" and "通知名称" in str(info.value)


def test_put_without_secret_keeps_the_current_one_and_null_removes_it() -> None:
    """Omitting `secret` keeps it (an edit need not repeat it); null removes it."""
    current = build(secret="s3cret")
    assert build(current).secret == "s3cret"
    assert build(current, secret=None).secret is None
    assert build(current, secret="new").secret == "new"


def test_replacing_keeps_created_and_moves_updated() -> None:
    """created_ms is the first PUT's; updated_ms the latest."""
    first = build()
    second = notification_from_body("ops", BASE, now_ms=NOW + 5, current=first)
    assert (second.created_ms, second.updated_ms) == (NOW, NOW + 5)


def test_record_round_trips_through_json() -> None:
    """to_json / from_json keep every field, secret and match included."""
    full = build(
        format="dingtalk",
        secret="s",
        match={"tags": ["a", "b"], "queue": "q"},
        overdue_after_s=60,
        group_window_s=5,
        events=["task.overdue", "task.caught_up"],
    )
    assert Notification.from_json("ops", full.to_json()) == full


@pytest.mark.parametrize(
    ("match", "tags", "queue", "covered"),
    [
        (NotifyMatch(), None, None, True),
        (NotifyMatch(tags=("a", "b")), ("b",), "q", True),
        (NotifyMatch(tags=("a",)), ("c",), "q", False),
        (NotifyMatch(tags=("a",)), None, "q", False),
        (NotifyMatch(queue="q"), (), "q", True),
        (NotifyMatch(queue="q"), (), "r", False),
        (NotifyMatch(tags=("a",), queue="q"), ("a",), "r", False),
    ],
)
def test_match_covers_any_tag_and_the_queue(
    match: NotifyMatch, tags: tuple[str, ...] | None, queue: str | None, covered: bool
) -> None:
    """Any of the tags, and the queue; a gone task (tags None) is covered only without tags."""
    assert match.covers(tags=tags, queue=queue) is covered
