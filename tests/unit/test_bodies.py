"""Specification of taskdispatch.domain.bodies: the one typed spec of a task body.

`TaskSpec` (a create) and `TaskChange` (a PATCH) check every field when they are built:
the shape as a pydantic `ValidationError`, what the values mean as the `InvalidTaskError`
of `validation`, both naming the field; they carry the parsed values, and the create
defaults are their fields' defaults, and only there.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from taskdispatch.domain import validation
from taskdispatch.domain.bodies import TaskChange, TaskSpec, default_of
from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.schedule import ALL_WEEKDAYS, hour_window

REQUIRED = {"sys_type": "mac_intel", "xhs_account_id": "account_1", "xhs_account_name": "账号1"}


def spec(**fields: Any) -> TaskSpec:
    return TaskSpec.model_validate({**REQUIRED, **fields})


def refused_field(build: Any) -> str:
    """The field a refused body names, whichever kind of check refused it."""
    try:
        build()
    except InvalidTaskError as exc:
        assert exc.field is not None
        return exc.field
    except ValidationError as exc:
        return str(exc.errors()[0]["loc"][0])
    raise AssertionError("the body was accepted")


# --------------------------------------------------------------------------- defaults


def test_task_spec_fields_left_out_take_the_create_defaults() -> None:
    """xhs_type, every hour, 08:00-22:00 every day, no jitter, run_once with 60 s grace."""
    created = spec()
    assert (created.task_type, created.interval, created.jitter_s) == ("xhs_type", 3600, 0)
    assert (created.misfire_policy, created.misfire_grace_s) == ("run_once", 60)
    assert created.windows_value == hour_window((8, 22))
    assert created.weekdays_value == ALL_WEEKDAYS


@pytest.mark.parametrize(
    "name",
    ["task_type", "interval", "valid_time_range", "weekdays", "jitter_s", "misfire_policy"],
)
def test_task_spec_null_for_a_defaulted_field_means_its_default(name: str) -> None:
    """Section 4.1's `interval: Optional[int] = 3600`: an explicit null asks for the default."""
    assert getattr(spec(**{name: None}), name) == default_of(name)


def test_task_spec_schema_shows_every_create_default() -> None:
    """The OpenAPI schema carries the defaults, so that a client (the dashboard's form)
    reads them instead of keeping copies."""
    properties = TaskSpec.model_json_schema()["properties"]
    shown = {
        name: properties[name]["default"] for name in properties if "default" in properties[name]
    }
    assert {k: v for k, v in shown.items() if v is not None} == {
        "task_type": "xhs_type",
        "interval": 3600,
        "valid_time_range": [8, 22],
        "weekdays": [1, 2, 3, 4, 5, 6, 7],
        "jitter_s": 0,
        "misfire_policy": "run_once",
        "misfire_grace_s": 60,
    }


# --------------------------------------------------------------------------- parsed values


def test_task_spec_windows_alone_replace_the_default_range() -> None:
    """Windows given without valid_time_range: the range's default does not apply."""
    assert spec(windows=["09:00-11:30"]).windows_value == ((540, 690),)


def test_task_spec_windows_and_range_both_given_are_refused() -> None:
    """valid_time_range is the shorthand of windows: one of the two."""
    with pytest.raises(InvalidTaskError) as info:
        spec(windows=["09:00-11:30"], valid_time_range=[8, 22])
    assert (info.value.key, info.value.field) == ("windows_and_range", "windows")


def test_task_spec_run_params_put_the_user_fields_over_kwargs() -> None:
    """The handler's parameters: kwargs, then the user_* fields given (null: left out)."""
    created = spec(kwargs={"lang": "zh", "user_topic": "旧"}, user_topic="科技", user_query=None)
    assert created.run_params == {"lang": "zh", "user_topic": "科技"}


def test_task_spec_end_and_start_are_parsed_for_the_zone_to_read() -> None:
    """task_end_time and start_at are parsed once; lifecycle reads them in the task's zone."""
    created = spec(task_end_time="2026-02-08", start_at="2026-01-09T09:15:00")
    assert str(created.end_value) == "2026-02-08"
    assert created.start_value is not None and created.start_value.hour == 9


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"sys_type": ""}, "sys_type", id="required-empty"),
        pytest.param({"interval": 0}, "interval", id="interval-zero"),
        pytest.param({"interval": "60"}, "interval", id="interval-text"),
        pytest.param({"valid_time_range": [8, 8]}, "valid_time_range", id="window-empty"),
        pytest.param({"timezone": "Mars/Olympus"}, "timezone", id="timezone-unknown"),
        pytest.param({"task_end_time": "next week"}, "task_end_time", id="end-unparsable"),
        pytest.param({"start_at": "tomorrow"}, "start_at", id="start-unparsable"),
        pytest.param({"jitter_s": 7200}, "jitter_s", id="jitter-over-interval"),
        pytest.param({"queue": "w1@host.dq2"}, "queue", id="queue-reserved"),
        pytest.param({"user_query": "a\ud800b"}, "user_query", id="lone-surrogate"),
        pytest.param({"user_topic": "a\x1bb"}, "user_topic", id="control-char"),
        pytest.param({"kwargs": {"x": "\udfff"}}, "kwargs", id="surrogate-in-kwargs"),
        pytest.param({"kwargs": {"x": float("nan")}}, "kwargs", id="nan-in-kwargs"),
        pytest.param({"kwargs": [1, 2]}, "kwargs", id="kwargs-not-an-object"),
        pytest.param({"intervall": 60}, "intervall", id="unknown-field"),
    ],
)
def test_task_spec_bad_field_is_refused_naming_it(fields: dict[str, Any], field: str) -> None:
    """Each bad create field is refused when the spec is built, naming the field."""
    assert refused_field(lambda: spec(**fields)) == field


def test_task_spec_deeply_nested_kwargs_are_refused_naming_kwargs() -> None:
    """kwargs nested deeper than the limit are refused before any encoding recursion."""
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(validation.LIMITS["kwargs_depth"] + 2):
        node["x"] = {}
        node = node["x"]
    assert refused_field(lambda: spec(kwargs=deep)) == "kwargs"


def test_task_spec_unknown_field_is_an_extra_forbidden_error() -> None:
    """A misspelt field is reported as a field the body may not carry."""
    with pytest.raises(ValidationError) as info:
        spec(intervall=60)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("field", ["timezone", "account_name", "interval", "valid_time_range"])
@pytest.mark.parametrize("value", [None, ""], ids=["null", "empty"])
def test_task_change_null_for_a_field_every_task_has_is_refused(field: str, value: Any) -> None:
    """A PATCH cannot blank out a field every task must have."""
    assert refused_field(lambda: TaskChange.model_validate({field: value})) == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"weekdays": None}, "weekdays", id="weekdays-null"),
        pytest.param({"misfire_policy": None}, "misfire_policy", id="policy-null"),
        pytest.param({"max_runs": 0}, "max_runs", id="max-runs-zero"),
        pytest.param({"tags": ["a b"]}, "tags", id="tag-with-space"),
        pytest.param({"windows": ["9-11"]}, "windows", id="windows-format"),
    ],
)
def test_task_change_bad_field_is_refused_naming_it(changes: dict[str, Any], field: str) -> None:
    """Each bad PATCH field is refused when the change is built, naming the field."""
    assert refused_field(lambda: TaskChange.model_validate(changes)) == field


def test_task_change_keeps_what_was_sent_apart_from_what_was_not() -> None:
    """Only the fields sent change: a null sent clears, a field not sent is kept."""
    change = TaskChange.model_validate({"task_end_time": None, "user_query": None})
    assert (change.sent("task_end_time"), change.sent("interval")) == (True, False)
    assert change.run_param_changes == {"user_query": None}
    assert (change.windows_value, change.weekdays_value) == (None, None)
