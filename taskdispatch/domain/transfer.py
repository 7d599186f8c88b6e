"""Task definitions in and out: one create body per row, as JSON Lines or CSV.

A row is the create body (`bodies.TaskSpec`) plus the pause state, so that an
export imported into an empty store recreates the same tasks, paused ones paused:

- JSON Lines (`application/x-ndjson`): one JSON object per line, fields left out when they
  hold their default;
- CSV (`text/csv`): a header of field names (`COLUMNS`, any subset, any order), one row per
  task; text fields as they are, every other field as JSON (`3600`, `[8, 22]`, `{"k": 1}`,
  `true`); an empty cell leaves the field out.

Rows are numbered by the line they start on, from 1 (a CSV header is line 1).
`parse_rows` never raises for a bad row: it yields the row's error instead, so that an
import creates every valid row and reports each invalid one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from taskdispatch.domain.bodies import TaskChange, TaskSpec, Text, default_of
from taskdispatch.domain.exceptions import InvalidTaskError
from taskdispatch.domain.messages import text
from taskdispatch.domain.models import Task, TaskStatus, outside_view
from taskdispatch.domain.schedule import ALL_WEEKDAYS
from taskdispatch.domain.validation import RUN_PARAM_FIELDS

__all__ = [
    "COLUMNS",
    "FORMATS",
    "Format",
    "ImportRow",
    "ParsedRow",
    "csv_header",
    "csv_line",
    "export_row",
    "jsonl_line",
    "parse_rows",
]

Format = Literal["jsonl", "csv"]
# The media type of each format (the import's Content-Type, the export's answer).
FORMATS: dict[Format, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


class ImportRow(TaskSpec):
    """A create body, and whether the task is paused (until when, why)."""

    paused: bool | None = None
    paused_until: Text | None = None
    pause_note: Text | None = None

    def as_change(self) -> TaskChange:
        """The PATCH this row makes to its account's existing task: every field it gives
        but the task's identity, how its first run was chosen and the pause state."""
        fields = self.model_dump(include=self.model_fields_set - _NOT_A_CHANGE)
        if "xhs_account_name" in fields:
            fields["account_name"] = fields.pop("xhs_account_name")
        return TaskChange.model_validate(fields)


# Row fields that a PATCH of an existing account's task cannot take: its identity (an
# account keeps its task, sys_type and task_type), how the first run was chosen, and the
# pause state (applied as a pause, not a change).
_NOT_A_CHANGE = frozenset(
    {"sys_type", "task_type", "xhs_account_id", "start_at", "paused", "paused_until", "pause_note"}
)


# Every field a row may give, in the order exports write them (start_at is create-only: an
# export carries the next run's state, not how the first one was chosen).
COLUMNS: tuple[str, ...] = tuple(name for name in ImportRow.model_fields if name != "start_at")


def _is_text(schema: dict[str, Any]) -> bool:
    """Whether a field (by its JSON schema) holds text only: its CSV cells are taken as they
    are; every other field's cells are JSON."""
    variants = [v for v in schema.get("anyOf", [schema]) if v.get("type") != "null"]
    return all(v.get("type") == "string" for v in variants)


_TEXT_COLUMNS = frozenset(
    name for name, schema in ImportRow.model_json_schema()["properties"].items() if _is_text(schema)
)


def export_row(task: Task) -> dict[str, Any]:
    """The row that recreates `task`: its create body (defaults left out) and pause state,
    each value as `outside_view` renders it."""
    view = outside_view(task)
    params = dict(task.kwargs)
    row: dict[str, Any] = {
        "sys_type": view["sys_type"],
        "task_type": view["task_type"],
        "xhs_account_id": view["account_id"],
        "xhs_account_name": view["account_name"],
    }
    for name in RUN_PARAM_FIELDS:
        if isinstance(params.get(name), str):
            row[name] = params.pop(name)
    if view["task_end_time"] is not None:
        row["task_end_time"] = view["task_end_time"]
    row["interval"] = view["interval"]
    if view["valid_time_range"] is not None:
        row["valid_time_range"] = view["valid_time_range"]
    else:
        row["windows"] = view["windows"]
    row["timezone"] = view["timezone"]
    if params:
        row["kwargs"] = params
    if task.weekdays != ALL_WEEKDAYS:
        row["weekdays"] = view["weekdays"]
    if task.blackout:
        row["blackout_dates"] = view["blackout_dates"]
    # Only what differs from a create's defaults, in the order the rows have always had.
    for name in ("jitter_s", "max_runs", "misfire_policy", "tags", "misfire_grace_s", "queue"):
        if view[name] not in (default_of(name), [], None):
            row[name] = view[name]
    if task.status == TaskStatus.PAUSED:
        row["paused"] = True
        for name in ("paused_until", "pause_note"):
            if view[name] is not None:
                row[name] = view[name]
    return {name: row[name] for name in COLUMNS if name in row}


def jsonl_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def csv_header() -> str:
    """The CSV header line: every column of `COLUMNS`."""
    return _csv_line(COLUMNS)


def csv_line(row: dict[str, Any]) -> str:
    """The CSV line of one row, in the header's columns."""
    return _csv_line([_cell(name, row.get(name)) for name in COLUMNS])


def _csv_line(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in _TEXT_COLUMNS:
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ParsedRow:
    """Row `line` of an import: the validated body, or why it was refused."""

    line: int
    row: ImportRow | None = None
    error: str | None = None


def parse_rows(data: str, fmt: Format) -> Iterator[ParsedRow]:
    """Each row of an import file, checked as a create body is (what needs the clock or
    the store, such as an end in the past or an account's existing task, on create).

    Raises InvalidTaskError only for a CSV header that names an unknown column, since every
    row would then fail the same way.
    """
    if fmt == "jsonl":
        yield from _jsonl_rows(data)
    else:
        yield from _csv_rows(data)


def _jsonl_rows(data: str) -> Iterator[ParsedRow]:
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield ParsedRow(number, error=text("import_not_json", reason=exc.msg))
            continue
        if not isinstance(value, dict):
            yield ParsedRow(number, error=text("import_not_object"))
            continue
        yield _validated(number, value)


def _csv_rows(data: str) -> Iterator[ParsedRow]:
    reader = csv.reader(io.StringIO(data, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    unknown = [name for name in header if name not in ImportRow.model_fields]
    if unknown:
        raise InvalidTaskError("import_unknown_columns", field="body", columns=", ".join(unknown))
    ended = reader.line_num
    for cells in reader:
        number, ended = ended + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            yield ParsedRow(
                number, error=text("import_cell_count", given=len(cells), expected=len(header))
            )
            continue
        body: dict[str, Any] = {}
        problem = None
        for name, cell in zip(header, cells, strict=True):
            if cell == "":
                continue
            if name in _TEXT_COLUMNS:
                body[name] = cell
                continue
            try:
                body[name] = json.loads(cell)
            except json.JSONDecodeError:
                problem = text("import_cell_json", field=name, value=cell[:50])
                break
        if problem is not None:
            yield ParsedRow(number, error=problem)
        else:
            yield _validated(number, body)


def _validated(number: int, body: dict[str, Any]) -> ParsedRow:
    try:
        return ParsedRow(number, row=ImportRow.model_validate(body))
    except InvalidTaskError as exc:
        return ParsedRow(number, error=str(exc))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            return ParsedRow(number, error=text("unknown_field", field=where))
        return ParsedRow(number, error=text("import_field", field=where, reason=first["msg"]))
