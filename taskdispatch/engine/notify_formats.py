"""What a message looks like in each format: URL, body and headers, as pure functions of the
delivery (`Message`), the notification's URL and secret, and the clock.

- `json`: taskdispatch's own body (`event`, `notification`, `delivery_id`, `occurred_at`,
  `count`, `tasks` or, for fleet events, `items`, a one-line `text` and a dashboard `url`).
- `wecom`: a WeCom group bot's markdown message (its key is in the URL; no signature).
- `dingtalk`: a DingTalk custom bot's markdown message; with a secret, the URL gets the
  bot's `timestamp` and `sign` (base64 HMAC-SHA256 of "<timestamp ms>\\n<secret>").
- `feishu`: a Feishu custom bot's text message; with a secret, the body gets `timestamp`
  (seconds) and `sign` (base64 HMAC-SHA256 keyed with "<timestamp>\\n<secret>", empty message).
- `slack`: an incoming webhook's `text` (mrkdwn).

Every format carries `X-Taskdispatch-Event`, `X-Taskdispatch-Delivery` (the same on every
retry of one delivery) and, when the notification has a secret, `X-Taskdispatch-Signature:
sha256=<hex HMAC-SHA256 of the raw body>`. `refusal` reads a receiver's answer: the chat
platforms answer 200 with an error code when they refuse a message (a wrong signature).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode
from zoneinfo import ZoneInfo

from taskdispatch.domain.messages import text
from taskdispatch.domain.schedule import to_local_iso
from taskdispatch.store.notifications import TASK_EVENTS

__all__ = [
    "EVENT_HEADER",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "Message",
    "Outgoing",
    "dingtalk_url",
    "feishu_sign",
    "link",
    "refusal",
    "render",
    "signature",
    "summary",
]

EVENT_HEADER = "X-Taskdispatch-Event"
ID_HEADER = "X-Taskdispatch-Delivery"
SIGNATURE_HEADER = "X-Taskdispatch-Signature"
# The fields of a task entry a message shows (the stored entry may carry more).
TASK_FIELDS = ("task_id", "account_id", "account_name", "status", "queue", "reason", "last_error")
# Fields an event adds to each listed task of the JSON body.
_EVENT_FIELDS: dict[str, tuple[str, ...]] = {"task.overdue": ("overdue_s",)}
# WeCom refuses markdown content over 4096 bytes; the others take far more, but a chat
# message listing 50 accounts with long errors is unreadable anyway.
_BUDGET_BYTES = {"wecom": 4000, "dingtalk": 12_000, "feishu": 12_000, "slack": 12_000}
# Longest error or reason shown per entry in a chat message (the JSON body has them whole).
_DETAIL_CHARS = 120

_TEXT_KEYS = {
    "task.error": "notify_task_error",
    "task.recovered": "notify_task_recovered",
    "round.failed": "notify_round_failed",
    "round.lost": "notify_round_lost",
    "round.cancelled": "notify_round_cancelled",
    "task.overdue": "notify_task_overdue",
    "task.caught_up": "notify_task_caught_up",
    "queue.unserved": "notify_queue_unserved",
    "queue.served": "notify_queue_served",
    "beat.down": "notify_beat_down",
    "beat.up": "notify_beat_up",
    "worker.down": "notify_worker_down",
    "worker.up": "notify_worker_up",
}


@dataclass(frozen=True)
class Message:
    """One delivery as the formats see it: `count` subjects, of which `entries` are listed
    (tasks for task events; queues, workers or the fleet for the others)."""

    event: str
    delivery_id: str
    notification: str
    occurred_at_ms: int
    count: int
    entries: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Outgoing:
    """The POST to make."""

    url: str
    body: bytes
    headers: dict[str, str]


def signature(secret: str, body: bytes) -> str:
    """The X-Taskdispatch-Signature of `body`: "sha256=" + hex HMAC-SHA256 with `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def dingtalk_url(url: str, *, secret: str, timestamp_ms: int) -> str:
    """A DingTalk signed bot's URL: `timestamp` and URL-encoded `sign` appended."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    sign = quote_plus(base64.b64encode(digest.digest()).decode())
    return f"{url}{'&' if '?' in url else '?'}timestamp={timestamp_ms}&sign={sign}"


def feishu_sign(secret: str, *, timestamp_s: int) -> str:
    """A Feishu signed bot's `sign`: the key is "<timestamp>\\n<secret>", the message empty."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def _names(message: Message) -> list[str]:
    if message.event in TASK_EVENTS:
        return [str(e.get("account_id") or e.get("task_id")) for e in message.entries]
    return [str(e.get("subject")) for e in message.entries]


def summary(message: Message) -> str:
    """The one-line text of the message, in the design document's language."""
    if message.event == "test":
        return text("notify_test", name=message.notification)
    key = _TEXT_KEYS[message.event]
    if message.event.startswith("beat."):
        return text(key)
    names = "、".join(_names(message))
    if message.count > len(message.entries):
        names = text("notify_more", names=names, count=message.count)
    return text(key, count=message.count, names=names)


def link(message: Message, public_url: str | None) -> str | None:
    """The dashboard, at the one task (searched by account) or filtered to what the message
    is about; None without a public URL."""
    if not public_url:
        return None
    base = public_url.rstrip("/") + "/"
    view: dict[str, str] = {}
    if message.event in TASK_EVENTS and len(message.entries) == 1 and message.count == 1:
        view["q"] = str(message.entries[0].get("account_id", ""))
    elif message.event == "task.error":
        view["status"] = "error"
    elif message.event == "queue.unserved" and message.count == 1 and message.entries:
        view["queue"] = str(message.entries[0].get("queue", ""))
    return base + (f"#{urlencode(view)}" if view else "")


def _detail(event: str, entry: Mapping[str, Any]) -> str:
    """One entry as a chat message lists it."""
    if event in TASK_EVENTS:
        who = str(entry.get("account_id") or entry.get("task_id"))
        if entry.get("account_name") and entry.get("account_name") != who:
            who += f"（{entry['account_name']}）"
        why = str(entry.get("last_error") or entry.get("reason") or "")
    else:
        who = str(entry.get("subject"))
        if entry.get("messages") is not None:
            why = text("notify_messages", count=entry["messages"])
        else:
            why = ",".join(str(q) for q in entry.get("queues") or ())
    if len(why) > _DETAIL_CHARS:
        why = why[: _DETAIL_CHARS - 1] + "…"
    return f"{who}：{why}" if why else who


def _chat_lines(message: Message, *, when: str, url: str | None, budget: int) -> list[str]:
    """Head, one line per listed entry while they fit in `budget` bytes, then the link."""
    head = [summary(message), f"{when} · {message.notification}"]
    tail = [f"{text('notify_link')}: {url}"] if url else []
    used = sum(len(line.encode()) + 1 for line in (*head, *tail))
    body: list[str] = []
    for entry in message.entries if message.event != "test" else ():
        line = "- " + _detail(message.event, entry)
        if used + len(line.encode()) + 1 > budget - 8:
            body.append("- …")
            break
        body.append(line)
        used += len(line.encode()) + 1
    return [*head, *body, *tail]


def _markdown(message: Message, *, when: str, url: str | None, budget: int) -> str:
    lines = _chat_lines(message, when=when, url=None, budget=budget - len(url or "") - 16)
    title, meta, *rest = lines
    out = [f"**{title}**", "", f"> {meta}", "", *rest]
    if url:
        out += ["", f"[{text('notify_link')}]({url})"]
    return "\n".join(out)


def _slack_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(
    message: Message,
    *,
    fmt: str,
    url: str,
    secret: str | None,
    public_url: str | None,
    tz: ZoneInfo,
    now_ms: int,
) -> Outgoing:
    """The POST delivering `message` in format `fmt` to `url` (signed with `secret`)."""
    when = str(to_local_iso(message.occurred_at_ms, tz))
    dashboard = link(message, public_url)
    target = url
    payload: dict[str, Any]
    if fmt == "json":
        listed = [dict(e) for e in message.entries]
        # The fields every entry has, and what its event adds (a task.overdue's overdue_s).
        tasks = [
            {k: e.get(k) for k in TASK_FIELDS}
            | {k: e[k] for k in _EVENT_FIELDS.get(message.event, ()) if k in e}
            for e in listed
        ]
        payload = {
            "event": message.event,
            "notification": message.notification,
            "delivery_id": message.delivery_id,
            "occurred_at": when,
            "count": message.count,
            "tasks": tasks if message.event in TASK_EVENTS else [],
            "items": [] if message.event in TASK_EVENTS else listed,
            "text": summary(message),
            "url": dashboard,
        }
    elif fmt in ("wecom", "dingtalk"):
        content = _markdown(message, when=when, url=dashboard, budget=_BUDGET_BYTES[fmt])
        if fmt == "wecom":
            payload = {"msgtype": "markdown", "markdown": {"content": content}}
        else:
            title = summary(message)[:64]
            payload = {"msgtype": "markdown", "markdown": {"title": title, "text": content}}
            if secret:
                target = dingtalk_url(url, secret=secret, timestamp_ms=now_ms)
    elif fmt == "feishu":
        lines = _chat_lines(message, when=when, url=dashboard, budget=_BUDGET_BYTES[fmt])
        payload = {"msg_type": "text", "content": {"text": "\n".join(lines)}}
        if secret:
            timestamp_s = now_ms // 1000
            payload = {
                "timestamp": str(timestamp_s),
                "sign": feishu_sign(secret, timestamp_s=timestamp_s),
                **payload,
            }
    elif fmt == "slack":
        lines = _chat_lines(message, when=when, url=None, budget=_BUDGET_BYTES[fmt])
        title, *rest = (_slack_escape(line) for line in lines)
        out = [f"*{title}*", *rest]
        if dashboard:
            out.append(f"<{dashboard}|{text('notify_link')}>")
        payload = {"text": "\n".join(out)}
    else:
        raise ValueError(f"unknown notification format {fmt!r}")
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "taskdispatch-notifier",
        EVENT_HEADER: message.event,
        ID_HEADER: message.delivery_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    return Outgoing(url=target, body=body, headers=headers)


def refusal(fmt: str, status: int, body: bytes) -> str | None:
    """Why the receiver did not take the message (None: it did). Any non-2xx status; for
    the chat platforms also a 2xx whose body carries a non-zero error code."""
    if not 200 <= status < 300:
        return f"HTTP {status}"
    if fmt not in ("wecom", "dingtalk", "feishu"):
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    if fmt == "feishu":
        code = answer.get("code", answer.get("StatusCode", 0))
        why = answer.get("msg", answer.get("StatusMessage", ""))
    else:
        code, why = answer.get("errcode", 0), answer.get("errmsg", "")
    return None if code in (0, None) else f"{fmt} error {code}: {why}"[:500]
