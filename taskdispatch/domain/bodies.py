"""The request bodies, defined once for the REST API and for the fleet operations that take
the same bodies from elsewhere (bulk actions, imported files), and for Python callers.

`TaskSpec` (a create) and `TaskChange` (a PATCH) are the one typed spec of a task body.
Built once at the edge, each checks its fields once: types and shape by pydantic (strict
integers, no unknown fields, text that can be stored), then what the values mean by
`validation`, in the model's after-validator. Its `InvalidTaskError` (the message table's
message, naming the field) is no ValueError, so pydantic lets it through as it is, and
every entry point refuses the same input with the same message. The spec then carries the
parsed values (windows in minutes, weekdays, dates, run parameters) to `lifecycle`, which
adds only what needs the clock or the stored task: the server's zone when none is given,
an end in the future, the first slot, a PATCH merged into the task.

The defaults of a create are the defaults of `TaskSpec`'s fields, and only there: the
OpenAPI schema shows them (the dashboard's form reads them from it), and `default_of`
reads them for the code (an export leaves them out).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    model_validator,
)
from pydantic_core import PydanticCustomError

from taskdispatch.domain import validation
from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.models import MisfirePolicy
from taskdispatch.domain.schedule import ALL_WEEKDAYS, DateRange, MinuteRange
from taskdispatch.domain.validation import RUN_PARAM_FIELDS, check_json

__all__ = [
    "NotificationMatch",
    "NotificationRequest",
    "RunParams",
    "StrictBody",
    "TaskCancelRequest",
    "TaskChange",
    "TaskPauseRequest",
    "TaskReorderRequest",
    "TaskSpec",
    "Text",
    "default_of",
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
    # Checked here, not in the after-validator: pydantic's error path names the field.
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


class TaskSpec(StrictBody):
    """A new task: the body of POST /api/v1/tasks/ (document section 4.1, plus the calendar,
    round-policy and routing fields), checked, with its values parsed."""

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
    task_type: Text = Field("xhs_type", description="A registered task type.")
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
    interval: StrictInt = Field(3600, description="Seconds between rounds.")
    valid_time_range: list[StrictInt] = Field(
        [8, 22],
        description="[start, end) local hours in which a round may start: the whole-hour "
        "shorthand of windows (give one of the two).",
    )
    timezone: Text | None = Field(None, description="IANA zone; default: the server setting.")
    start_at: Text | None = Field(None, description="ISO datetime of the first run.")
    kwargs: RunParams | None = Field(None, description="Extra run parameters for the handler.")
    windows: list[Text] | None = Field(
        None,
        description="Local 'HH:MM-HH:MM' ranges in which a round may start (may wrap "
        "midnight); valid_time_range is the whole-hour shorthand (give one of the two).",
    )
    weekdays: list[StrictInt] = Field(
        [1, 2, 3, 4, 5, 6, 7], description="ISO weekdays (1 = Monday) on which the windows apply."
    )
    blackout_dates: list[Text] | None = Field(
        None, description="Local dates 'YYYY-MM-DD' or ranges 'A..B' on which no round starts."
    )
    jitter_s: StrictInt = Field(
        0, description="Each round starts up to this many seconds after its slot (0..interval)."
    )
    max_runs: StrictInt | None = Field(
        None, description="The task completes after this many rounds ran; null: no limit."
    )
    misfire_policy: MisfirePolicy = Field(
        "run_once",
        description="A slot missed by more than misfire_grace_s: run once now, or skip it.",
    )
    tags: list[Text] | None = Field(
        None,
        description="Labels limits match, e.g. ['device:mac-01', 'team:a'] (at most 20).",
    )
    misfire_grace_s: StrictInt = Field(
        60, description="How late a slot may still run under misfire_policy 'skip'."
    )
    queue: Text | None = Field(
        None,
        description="The Celery queue of the task's rounds, e.g. a device's own 'mac-01'; "
        "null: the queue of its sys_type (when routing by it is on) or the default queue.",
    )

    _zone: ZoneInfo | None = PrivateAttr(None)
    _windows: tuple[MinuteRange, ...] = PrivateAttr(())
    _weekdays: frozenset[int] = PrivateAttr(ALL_WEEKDAYS)
    _blackout: tuple[DateRange, ...] = PrivateAttr(())
    _end: date | datetime | None = PrivateAttr(None)
    _start: datetime | None = PrivateAttr(None)
    _run_params: dict[str, Any] = PrivateAttr(default_factory=dict)
    _tags: tuple[str, ...] = PrivateAttr(())

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # Section 4.1's `interval: Optional[int] = 3600`: a null asks for the default.
        if not isinstance(data, dict):
            return data
        return {
            name: value
            for name, value in data.items()
            if value is not None or name not in _DEFAULTED
        }

    @model_validator(mode="after")
    def _checked(self) -> Self:
        for name in ("sys_type", "xhs_account_id", "xhs_account_name"):
            if not getattr(self, name):
                raise InvalidTaskError("required", field=name)
        if self.timezone:
            self._zone = validation.timezone(self.timezone)
        validation.check_interval(self.interval)
        if self.task_end_time is not None:
            self._end = validation.end_value(self.task_end_time)
        if self.start_at:
            self._start = validation.instant_value(self.start_at, field="start_at")
        validation.check_identifier(self.xhs_account_id, field="xhs_account_id")
        validation.check_text(self.xhs_account_name, field="xhs_account_name")
        validation.check_identifier(self.sys_type, field="sys_type")
        # The shorthand's default stands only when windows are not given.
        range_given = self.windows is None or "valid_time_range" in self.model_fields_set
        windows = validation.windows(
            windows=self.windows, hour_range=self.valid_time_range if range_given else None
        )
        assert windows is not None
        self._windows = windows
        user = _user_fields(self, RUN_PARAM_FIELDS)
        self._run_params = validation.run_params({}, extra=self.kwargs, user=user)
        self._tags = validation.tags(self.tags or [])
        validation.check_queue(self.queue)
        self._weekdays = validation.weekdays(self.weekdays)
        if self.blackout_dates is not None:
            self._blackout = validation.blackout(self.blackout_dates)
        validation.jitter(self.jitter_s, interval_s=self.interval)
        validation.max_runs(self.max_runs)
        validation.misfire_grace(self.misfire_grace_s)
        return self

    @property
    def zone(self) -> ZoneInfo | None:
        """The zone `timezone` names; None: the server's default zone."""
        return self._zone

    @property
    def windows_value(self) -> tuple[MinuteRange, ...]:
        """The windows (or the hour range, or its default) in local minutes of the day."""
        return self._windows

    @property
    def weekdays_value(self) -> frozenset[int]:
        return self._weekdays

    @property
    def blackout_value(self) -> tuple[DateRange, ...]:
        return self._blackout

    @property
    def end_value(self) -> date | datetime | None:
        """What `task_end_time` names, to be read in the task's zone (`validation.end_ms`)."""
        return self._end

    @property
    def start_value(self) -> datetime | None:
        """What `start_at` names, to be read in the task's zone."""
        return self._start

    @property
    def run_params(self) -> dict[str, Any]:
        """The handler's run parameters: kwargs, with the user_* fields over them."""
        return self._run_params

    @property
    def tags_value(self) -> tuple[str, ...]:
        """The tags, duplicates dropped."""
        return self._tags


# The create fields with a default other than null (a null in a body asks for it).
_DEFAULTED = frozenset(
    name
    for name, field in TaskSpec.model_fields.items()
    if not field.is_required() and field.default is not None
)


def default_of(name: str) -> Any:
    """The default of a create field (the one definition: `TaskSpec`'s field)."""
    return TaskSpec.model_fields[name].default


class TaskChange(StrictBody):
    """A change of a task: the body of PATCH /api/v1/tasks/{task_id}; only the fields sent
    are changed, checked, with their values parsed."""

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
    misfire_policy: MisfirePolicy | None = None
    misfire_grace_s: StrictInt | None = None
    tags: list[Text] | None = Field(None, description="Replaces the tags; null or [] removes them.")
    queue: Text | None = Field(
        None,
        description="Moves the task's rounds to this Celery queue from its next one; null: "
        "back to the sys_type rule or the default queue.",
    )

    _zone: ZoneInfo | None = PrivateAttr(None)
    _windows: tuple[MinuteRange, ...] | None = PrivateAttr(None)
    _weekdays: frozenset[int] | None = PrivateAttr(None)
    _blackout: tuple[DateRange, ...] = PrivateAttr(())
    _end: date | datetime | None = PrivateAttr(None)
    _tags: tuple[str, ...] = PrivateAttr(())

    @model_validator(mode="after")
    def _checked(self) -> Self:
        sent = self.model_fields_set
        for name in ("timezone", "account_name", "interval", "valid_time_range", "windows"):
            if name in sent and getattr(self, name) in (None, ""):
                raise InvalidTaskError("not_empty", field=name)
        if self.timezone is not None:
            self._zone = validation.timezone(self.timezone)
        if self.interval is not None:
            validation.check_interval(self.interval)
        if self.task_end_time is not None:
            self._end = validation.end_value(self.task_end_time)
        if self.account_name is not None:
            validation.check_text(self.account_name, field="account_name")
        self._windows = validation.windows(windows=self.windows, hour_range=self.valid_time_range)
        _user_fields(self, sent & set(RUN_PARAM_FIELDS))
        if "tags" in sent:
            self._tags = validation.tags(self.tags or [])
        if "weekdays" in sent:
            self._weekdays = validation.weekdays(self.weekdays)
        if "blackout_dates" in sent:
            self._blackout = validation.blackout(self.blackout_dates or [])
        # jitter_s is checked against the interval the task will have: `lifecycle.updated`.
        if "max_runs" in sent:
            validation.max_runs(self.max_runs)
        if "misfire_policy" in sent:
            validation.misfire_policy(self.misfire_policy)
        if "misfire_grace_s" in sent:
            validation.misfire_grace(self.misfire_grace_s)
        if "queue" in sent:
            validation.check_queue(self.queue)
        return self

    def sent(self, name: str) -> bool:
        """Whether the body names field `name` (null included: it clears or is refused)."""
        return name in self.model_fields_set

    @property
    def zone(self) -> ZoneInfo | None:
        """The zone a new `timezone` names; None: the task keeps its zone."""
        return self._zone

    @property
    def windows_value(self) -> tuple[MinuteRange, ...] | None:
        """New windows (or hour range) in local minutes of the day; None: kept."""
        return self._windows

    @property
    def weekdays_value(self) -> frozenset[int] | None:
        """New weekdays; None: kept."""
        return self._weekdays

    @property
    def blackout_value(self) -> tuple[DateRange, ...]:
        """The new blackout dates, when `blackout_dates` is sent."""
        return self._blackout

    @property
    def end_value(self) -> date | datetime | None:
        """What a new `task_end_time` names, to be read in the task's zone; None: no end."""
        return self._end

    @property
    def run_param_changes(self) -> dict[str, str | None]:
        """The user_* fields sent: a value replaces the parameter, None removes it."""
        return {name: getattr(self, name) for name in RUN_PARAM_FIELDS if self.sent(name)}

    @property
    def tags_value(self) -> tuple[str, ...]:
        """The new tags, duplicates dropped, when `tags` is sent."""
        return self._tags


def _user_fields(body: BaseModel, names: Collection[str]) -> dict[str, str | None]:
    """The user_* fields `names` of `body`, each checked as free text."""
    user: dict[str, str | None] = {}
    for name in RUN_PARAM_FIELDS:
        if name in names:
            value = getattr(body, name)
            user[name] = None if value is None else validation.check_text(value, field=name)
    return user


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
