"""The shipped Prometheus rules and Grafana dashboard (deploy/) name only metrics that
GET /metrics exports: the exported names come from the API's own collector, run against
the test Redis, so the check cannot drift from the code."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.routers.metrics import render_metrics
from taskdispatch.service.dispatcher import TaskDispatcher

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "taskdispatch.json"

# What a PromQL expression holds besides metric names, removed before names are read:
# quoted strings, label matchers, range and subquery brackets, label lists of aggregations
# and vector matching, and Grafana's variables ($__rate_interval, ${datasource}).
_NOT_NAMES = [
    re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'),
    re.compile(r"\{[^}]*\}"),
    re.compile(r"\[[^\]]*\]"),
    re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"),
    re.compile(r"\$\{?\w+\}?"),
]
# A number or duration (0.99, 1e3, 15m) is one token, so its letters are not read as names.
_TOKEN = re.compile(r"(?P<number>\d[\w.]*)|(?P<name>[A-Za-z_:][\w:]*)(?P<call>\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions and keywords left out)."""
    for pattern in _NOT_NAMES:
        expr = pattern.sub(" ", expr)
    return {
        m["name"]
        for m in _TOKEN.finditer(expr)
        if m["name"] and not m["call"] and m["name"] not in _KEYWORDS
    }


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def rule_exprs() -> list[str]:
    return [rule["expr"] for rule in rules()]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


async def exported(dispatcher: TaskDispatcher) -> set[str]:
    """Every sample name /metrics can show, by family type, whether it has samples now."""
    text = (await render_metrics(dispatcher)).decode()
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in _SAMPLE_SUFFIXES[family.type]
    }


def test_metric_names_reads_names_not_functions_labels_or_durations() -> None:
    """The extractor keeps metric names only, so the checks below see what Prometheus reads."""
    expr = (
        'histogram_quantile(0.99, max by (le) (rate(a_bucket{status="b c"}[5m])))'
        " > 1e3 and on() max(d offset 15m) - sum without (instance) (e[$__rate_interval])"
    )
    assert metric_names(expr) == {"a_bucket", "d", "e"}


@pytest.mark.parametrize("exprs", [rule_exprs, dashboard_exprs], ids=["rules", "dashboard"])
async def test_deploy_monitoring_names_only_exported_metrics(
    dispatcher: TaskDispatcher, exprs: Callable[[], list[str]]
) -> None:
    """Every metric a rule or a panel reads is one that /metrics exports."""
    named = set().union(*(metric_names(expr) for expr in exprs()))
    assert named
    assert sorted(named - await exported(dispatcher)) == []


def test_deploy_alert_rules_have_for_severity_and_english_annotations() -> None:
    """Each rule waits (`for`), says how bad it is, and explains itself."""
    for rule in rules():
        assert rule["alert"].startswith("Taskdispatch"), rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        for text in (annotations["summary"], annotations["description"]):
            assert text.isascii(), rule["alert"]  # English, as every operator reads it


def test_deploy_alert_rules_cover_the_issue_conditions() -> None:
    """Beat down, an unserved queue, the due backlog, tasks entering error and the lag p99."""
    names = {rule["alert"]: metric_names(rule["expr"]) for rule in rules()}
    assert names["TaskdispatchBeatDown"] >= {"taskdispatch_beats_alive"}
    assert names["TaskdispatchQueueUnserved"] == {"taskdispatch_queue_unconsumed_messages"}
    assert names["TaskdispatchDueBacklogHigh"] == {"taskdispatch_due_backlog"}
    assert names["TaskdispatchTasksEnteringError"] == {"taskdispatch_tasks"}
    assert names["TaskdispatchStartLagP99High"] == {"taskdispatch_round_start_lag_seconds_bucket"}
