"""Specification of taskdispatch.engine.notify_formats: each format's URL, body and headers.

Pure functions of fixed inputs; every signature is computed again here, independently,
with hmac/hashlib/base64 as each platform documents it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from taskdispatch.engine.notify_formats import (
    Message,
    dingtalk_url,
    feishu_sign,
    link,
    refusal,
    render,
    summary,
)

TZ = ZoneInfo("Asia/Shanghai")
AT_MS = 1_767_843_002_000  # 2026-01-08T11:30:02+08:00
NOW_MS = 1_767_843_032_123
SECRET = "SEC0123456789abcdef"
URL = "https://hooks.example.com/td?key=k1"


def task(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "subject": f"task-{n}",
        "task_id": f"task-{n}",
        "account_id": f"acct-{n}",
        "account_name": f"账号{n}",
        "status": "error",
        "queue": "celery",
        "reason": None,
        "last_error": f"login expired {n}",
        "at_ms": AT_MS,
        **extra,
    }


def message(event: str = "task.error", n: int = 3, count: int | None = None) -> Message:
    return Message(
        event=event,
        delivery_id="d" * 32,
        notification="ops",
        occurred_at_ms=AT_MS,
        count=n if count is None else count,
        entries=tuple(task(i) for i in range(1, n + 1)),
    )


def out(msg: Message, fmt: str, secret: str | None = None, public_url: str | None = None) -> Any:
    return render(msg, fmt=fmt, url=URL, secret=secret, public_url=public_url, tz=TZ, now_ms=NOW_MS)


def test_json_body_has_event_time_count_tasks_text_and_link() -> None:
    """The json body: event, ISO time in the server zone, count, tasks, one line, a link."""
    sent = out(message(), "json", public_url="https://td.example.com")
    body = json.loads(sent.body)
    assert body["event"] == "task.error" and body["delivery_id"] == "d" * 32
    assert body["occurred_at"] == "2026-01-08T11:30:02+08:00"
    assert body["count"] == 3 and body["items"] == []
    assert body["tasks"][0] == {
        "task_id": "task-1",
        "account_id": "acct-1",
        "account_name": "账号1",
        "status": "error",
        "queue": "celery",
        "reason": None,
        "last_error": "login expired 1",
    }
    assert body["text"] == "3 个账户的任务进入错误状态：acct-1、acct-2、acct-3"
    assert body["url"] == "https://td.example.com/#status=error"
    assert sent.url == URL


def test_json_body_of_an_overdue_event_says_how_late_each_task_is() -> None:
    """A task.overdue body carries each task's overdue_s; other events do not add it."""
    overdue = Message(
        event="task.overdue",
        delivery_id="d" * 32,
        notification="ops",
        occurred_at_ms=AT_MS,
        count=1,
        entries=(task(1, overdue_s=312),),
    )
    assert json.loads(out(overdue, "json").body)["tasks"][0]["overdue_s"] == 312
    assert "overdue_s" not in json.loads(out(message(), "json").body)["tasks"][0]


def test_json_signature_is_hmac_sha256_of_the_raw_body() -> None:
    """X-Taskdispatch-Signature is sha256=<hex HMAC-SHA256(secret, body)>."""
    sent = out(message(), "json", secret=SECRET)
    expected = hmac.new(SECRET.encode(), sent.body, hashlib.sha256).hexdigest()
    assert sent.headers["X-Taskdispatch-Signature"] == f"sha256={expected}"


@pytest.mark.parametrize("fmt", ["json", "wecom", "dingtalk", "feishu", "slack"])
def test_every_format_carries_event_and_delivery_headers(fmt: str) -> None:
    """Event and delivery id go with every format; no signature header without a secret."""
    headers = out(message(), fmt).headers
    assert headers["X-Taskdispatch-Event"] == "task.error"
    assert headers["X-Taskdispatch-Delivery"] == "d" * 32
    assert "X-Taskdispatch-Signature" not in headers
    assert headers["Content-Type"] == "application/json; charset=utf-8"


def test_dingtalk_signed_url_carries_timestamp_and_sign() -> None:
    """DingTalk: sign = base64(HMAC-SHA256(key=secret, msg="<ms>\\n<secret>")), URL-encoded."""
    sent = out(message(), "dingtalk", secret=SECRET)
    query = parse_qs(urlsplit(sent.url).query)
    digest = hmac.new(SECRET.encode(), f"{NOW_MS}\n{SECRET}".encode(), hashlib.sha256).digest()
    assert query == {
        "key": ["k1"],
        "timestamp": [str(NOW_MS)],
        "sign": [base64.b64encode(digest).decode()],
    }
    assert sent.url.startswith(URL + "&timestamp=")
    body = json.loads(sent.body)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"].startswith("3 个账户的任务进入错误状态")
    assert "acct-2（账号2）：login expired 2" in body["markdown"]["text"]


def test_dingtalk_url_without_query_gets_one() -> None:
    """A URL without a query string gets `?timestamp=...&sign=...`."""
    signed = dingtalk_url("https://oapi.example.com/robot/send", secret="s", timestamp_ms=1)
    assert signed.startswith("https://oapi.example.com/robot/send?timestamp=1&sign=")


def test_feishu_signed_body_carries_timestamp_and_sign() -> None:
    """Feishu: sign = base64(HMAC-SHA256(key="<s>\\n<secret>", msg=b"")), timestamp in s."""
    body = json.loads(out(message(), "feishu", secret=SECRET).body)
    timestamp = str(NOW_MS // 1000)
    key = f"{timestamp}\n{SECRET}".encode()
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert (body["timestamp"], body["sign"]) == (timestamp, expected)
    assert body["msg_type"] == "text"
    assert body["content"]["text"].splitlines()[0] == (
        "3 个账户的任务进入错误状态：acct-1、acct-2、acct-3"
    )
    assert feishu_sign(SECRET, timestamp_s=NOW_MS // 1000) == expected


def test_wecom_is_markdown_within_its_4096_byte_limit() -> None:
    """50 tasks with long errors still fit WeCom's limit; the overflow is marked."""
    long = Message(
        event="task.error",
        delivery_id="d" * 32,
        notification="ops",
        occurred_at_ms=AT_MS,
        count=500,
        entries=tuple(task(i, last_error="x" * 500) for i in range(50)),
    )
    body = json.loads(out(long, "wecom", public_url="https://td.example.com").body)
    content = body["markdown"]["content"]
    assert body["msgtype"] == "markdown"
    assert len(content.encode()) <= 4096
    assert "- …" in content and content.endswith("[查看](https://td.example.com/#status=error)")


def test_slack_text_escapes_its_control_characters() -> None:
    """Slack mrkdwn: <, > and & in account names are escaped; the link is <url|查看>."""
    entry = task(1, account_name="<b>&co")
    msg = Message("task.error", "d" * 32, "ops", AT_MS, 1, (entry,))
    text = json.loads(out(msg, "slack", public_url="https://td.example.com").body)["text"]
    assert "acct-1（&lt;b&gt;&amp;co）" in text
    assert text.endswith("<https://td.example.com/#q=acct-1|查看>")


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        pytest.param(
            message(n=2, count=60),
            "60 个账户的任务进入错误状态：acct-1、acct-2 等 60 个",
            id="more",
        ),
        pytest.param(
            message("beat.down", n=0),
            "调度器已开启，但没有存活的 beat：新的轮次不会派发",
            id="beat",
        ),
        pytest.param(message("test", n=0), "这是 taskdispatch 发给通知 ops 的测试消息", id="test"),
        pytest.param(
            Message(
                "queue.unserved",
                "d",
                "ops",
                AT_MS,
                1,
                ({"subject": "dev-a", "queue": "dev-a", "messages": 4},),
            ),
            "1 个队列有待执行的轮次，但没有存活的 worker 消费：dev-a",
            id="queue",
        ),
    ],
)
def test_summary_is_one_line_naming_the_subjects(msg: Message, expected: str) -> None:
    """The one-line text names what is listed and says how many in all."""
    assert summary(msg) == expected


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        pytest.param(message(n=1), "https://td.example.com/#q=acct-1", id="one-task"),
        pytest.param(message("task.recovered"), "https://td.example.com/", id="several"),
        pytest.param(
            Message(
                "queue.unserved", "d", "ops", AT_MS, 1, ({"subject": "dev-a", "queue": "dev-a"},)
            ),
            "https://td.example.com/#queue=dev-a",
            id="queue",
        ),
    ],
)
def test_link_points_at_the_dashboard_view_of_the_message(msg: Message, expected: str) -> None:
    """One task: searched by account; errors: the error filter; one queue: its filter."""
    assert link(msg, "https://td.example.com/") == expected
    assert link(msg, None) is None


@pytest.mark.parametrize(
    ("fmt", "status", "answer", "expected"),
    [
        ("json", 200, b"", None),
        ("json", 204, b"", None),
        ("json", 503, b"", "HTTP 503"),
        ("slack", 200, b"ok", None),
        ("wecom", 200, b'{"errcode":0,"errmsg":"ok"}', None),
        (
            "wecom",
            200,
            b'{"errcode":93000,"errmsg":"invalid webhook url"}',
            "wecom error 93000: invalid webhook url",
        ),
        (
            "dingtalk",
            200,
            b'{"errcode":310000,"errmsg":"sign not match"}',
            "dingtalk error 310000: sign not match",
        ),
        ("feishu", 200, b'{"code":0,"msg":"success"}', None),
        (
            "feishu",
            200,
            b'{"code":19021,"msg":"sign match fail"}',
            "feishu error 19021: sign match fail",
        ),
        ("feishu", 200, b"not json", None),
    ],
)
def test_refusal_reads_status_and_chat_error_codes(
    fmt: str, status: int, answer: bytes, expected: str | None
) -> None:
    """Non-2xx fails; a chat platform's 200 with a non-zero error code fails too."""
    assert refusal(fmt, status, answer) == expected


def test_chat_lines_of_fleet_events_say_what_waits_and_where() -> None:
    """A queue lists its waiting messages; a worker the queues it consumed."""
    queue = Message("queue.unserved", "d", "ops", AT_MS, 1, ({"subject": "dev-a", "messages": 4},))
    worker = Message(
        "worker.down", "d", "ops", AT_MS, 1, ({"subject": "w1@h", "queues": ["celery", "q2"]},)
    )
    assert "- dev-a：4 条消息等待执行" in json.loads(out(queue, "feishu").body)["content"]["text"]
    assert "- w1@h：celery,q2" in json.loads(out(worker, "slack").body)["text"]
