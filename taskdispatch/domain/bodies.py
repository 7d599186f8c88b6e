"""The request bodies that change tasks, defined once for the REST API and for the fleet
operations that take the same bodies from elsewhere (bulk actions, imported files).

They check types and shape only (strict integers, no unknown fields, text that can be
stored); what the values mean is validated by `lifecycle` and `validation`, so every entry
point rejects the same input with the same messages.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt
from pydantic_core import PydanticCustomError

from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.validation import DEFAULTS, check_json

__all__ = [
    "NotificationMatch",
    "NotificationRequest",
    "RunParams",
    "StrictBody",
    "TaskCancelRequest",
    "TaskCreateRequest",
    "TaskPauseRequest",
    "TaskReorderRequest",
    "TaskUpdateRequest",
    "Text",
]


def _storable_text(value: str) -> str:
    # JSON can carry lone surrogates ("\ud800"); Redis and the JSON encoder cannot store them.
    try:
        value.encode()
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "unicode_text", "must be valid Unicode text (no lone surrogates)"
        ) from None
    return value


def _storable_json(value: dict[str, Any]) -> dict[str, Any]:
    # The dispatcher checks again; checking here names the field in pydantic's error path.
    try:
        check_json(value, field="kwargs")
    except InvalidTaskError as exc:
        raise PydanticCustomError("json_value", str(exc)) from None
    return value


Text = Annotated[str, AfterValidator(_storable_text)]
RunParams = Annotated[dict[str, Any], AfterValidator(_storable_json)]


class StrictBody(BaseModel):
    # An unknown field is almost always a typo ("intervall"); ignoring it would hide it.
    model_config = ConfigDict(extra="forbid")


class TaskCreateRequest(StrictBody):
    """Body of POST /api/v1/tasks/ (document section 4.1, plus timezone, start_at, kwargs)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sys_type": "mac_intel",
                    "task_type": "xhs_type",
                    "xhs_account_id": "account_1",
                    "xhs_account_name": "账号1",
                    "user_query": "开始运营",
                    "user_topic": "科技",
                    "user_style": "专业",
                    "user_target_audience": "技术爱好者",
                    "task_end_time": "2030-12-31",
                    "interval": 3600,
                    "valid_time_range": [8, 22],
                }
            ]
        }
    )

    sys_type: Text = Field(description="Machine type the round runs on, e.g. mac_intel.")
    task_type: Text = Field(DEFAULTS["task_type"], description="A registered task type.")
    xhs_account_id: Text = Field(description="Account id; one task per account.")
    xhs_account_name: Text = Field(description="Account display name.")
    user_query: Text | None = None
    user_topic: Text | None = None
    user_style: Text | None = None
    user_target_audience: Text | None = None
    task_end_time: Text | None = Field(
        None,
        description="ISO date (through the end of that day) or datetime; null = no end.",
    )
    interval: StrictInt | None = Field(DEFAULTS["interval"], description="Seconds between rounds.")
    # No default here: a body giving `windows` alone must not also carry the shorthand
    # (both are a 422); `lifecycle.created` applies DEFAULTS' range when neither is given.
    valid_time_range: list[StrictInt] | None = Field(
        None,
        description="[start, end) local hours in which a round may start; default [8, 22] "
        "when windows is not given either.",
        examples=[DEFAULTS["valid_time_range"]],
    )
    timezone: Text | None = Field(None, description="IANA zone; default: the server setting.")
    start_at: Text | None = Field(None, description="ISO datetime of the first run.")
    kwargs: RunParams | None = Field(None, description="Extra run parameters for the handler.")
    windows: list[Text] | None = Field(
        None,
        description="Local 'HH:MM-HH:MM' ranges in which a round may start (may wrap "
        "midnight); valid_time_range is the whole-hour shorthand (give one of the two).",
    )
    weekdays: list[StrictInt] | None = Field(
        None, description="ISO weekdays (1 = Monday) on which the windows apply; default all."
    )
    blackout_dates: list[Text] | None = Field(
        None, description="Local dates 'YYYY-MM-DD' or ranges 'A..B' on which no round starts."
    )
    jitter_s: StrictInt | None = Field(
        None, description="Each round starts up to this many seconds after its slot (0..interval)."
    )
    max_runs: StrictInt | None = Field(
        None, description="The task completes after this many rounds ran; null: no limit."
    )
    misfire_policy: Literal["run_once", "skip"] | None = Field(
        None, description="A slot missed by more than misfire_grace_s: run once now, or skip it."
    )
    tags: list[Text] | None = Field(
        None,
        description="Labels limits match, e.g. ['device:mac-01', 'team:a'] (at most 20).",
    )
    misfire_grace_s: StrictInt | None = Field(
        None, description="How late a slot may still run under misfire_policy 'skip' (default 60)."
    )
    queue: Text | None = Field(
        None,
        description="The Celery queue of the task's rounds, e.g. a device's own 'mac-01'; "
        "null: the queue of its sys_type (when routing by it is on) or the default queue.",
    )


class TaskUpdateRequest(StrictBody):
    """Body of PATCH /api/v1/tasks/{task_id}; only the fields sent are changed."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"interval": 7200, "valid_time_range": [9, 21]}]}
    )

    interval: StrictInt | None = None
    valid_time_range: list[StrictInt] | None = None
    task_end_time: Text | None = Field(None, description="null removes the end.")
    timezone: Text | None = None
    account_name: Text | None = None
    user_query: Text | None = Field(None, description="null removes the parameter.")
    user_topic: Text | None = None
    user_style: Text | None = None
    user_target_audience: Text | None = None
    kwargs: RunParams | None = Field(None, description="Merged into the run parameters.")
    windows: list[Text] | None = None
    weekdays: list[StrictInt] | None = None
    blackout_dates: list[Text] | None = Field(None, description="null or [] removes them.")
    jitter_s: StrictInt | None = None
    max_runs: StrictInt | None = Field(None, description="null removes the limit.")
    misfire_policy: Literal["run_once", "skip"] | None = None
    misfire_grace_s: StrictInt | None = None
    tags: list[Text] | None = Field(None, description="Replaces the tags; null or [] removes them.")
    queue: Text | None = Field(
        None,
        description="Moves the task's rounds to this Celery queue from its next one; null: "
        "back to the sys_type rule or the default queue.",
    )


class TaskReorderRequest(StrictBody):
    """Body of POST /api/v1/tasks/{task_id}/reorder."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"priority_offset": -1800}]})

    priority_offset: StrictInt = Field(
        description="Seconds: negative runs earlier (not before now), positive later."
    )


class TaskPauseRequest(StrictBody):
    """Optional body of POST /api/v1/tasks/{task_id}/pause; no body pauses until resumed."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"until": "2026-01-08T18:00:00", "note": "账号申诉中"}]}
    )

    until: Text | None = Field(
        None,
        description="ISO datetime (naive = the task's zone) at which the task resumes by itself.",
    )
    note: Text | None = Field(None, description="Why it is paused, shown to operators.")


class TaskCancelRequest(StrictBody):
    """Optional body of POST /api/v1/tasks/{task_id}/cancel; no body means `then: next`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"then": "pause", "note": "账号卡在验证码页面"}]}
    )

    then: Literal["next", "pause"] = Field(
        "next",
        description="After the round stops: 'next' keeps the schedule, 'pause' pauses the task.",
    )
    note: Text | None = Field(None, description="Why the round is stopped, kept in its record.")


class NotificationMatch(StrictBody):
    """Which tasks' events a notification takes (both given: both must hold)."""

    tags: list[Text] | None = Field(None, description="Tasks carrying any of these tags.")
    queue: Text | None = Field(None, description="Tasks whose rounds go to this Celery queue.")


class NotificationRequest(StrictBody):
    """Body of PUT /api/v1/notifications/{name}: where alerts go, for which events, how."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...",
                    "events": ["task.error", "task.recovered", "beat.down", "beat.up"],
                    "format": "wecom",
                    "match": {"tags": ["team:a"]},
                    "group_window_s": 30,
                },
                {
                    "url": "https://alerts.example.com/taskdispatch",
                    "events": ["task.error", "task.overdue", "queue.unserved"],
                    "secret": "a-long-random-secret",
                    "overdue_after_s": 600,
                },
            ]
        }
    )

    url: Text = Field(description="The receiver: an http:// or https:// URL (no redirect).")
    events: list[Text] = Field(description="The events to send (see docs/api.md).")
    format: Text = Field("json", description="json | wecom | dingtalk | feishu | slack.")
    secret: Text | None = Field(
        None,
        description="Signs each message (X-Taskdispatch-Signature; DingTalk's and Feishu's own "
        "signature). Never shown. Omitted: the current secret is kept; null removes it.",
    )
    match: NotificationMatch | None = Field(
        None, description="Only events of these tasks; null: every task."
    )
    overdue_after_s: StrictInt = Field(
        300, description="task.overdue once a pending task is this many seconds past due."
    )
    group_window_s: StrictInt = Field(
        30, description="Events of one kind within this many seconds go out as one message."
    )
