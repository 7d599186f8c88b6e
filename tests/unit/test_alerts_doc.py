"""The signature checks docs/alerts.md gives receivers accept what the notifier signs, and
nothing else: the Python snippet run as written, the Node.js one under `node` when present."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from taskdispatch.engine.notify_formats import Message, render

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "alerts.md").read_text()
SECRET = "a-long-random-string"
Verify = Callable[[str, bytes, str | None], bool]


def _block(language: str, marker: str) -> str:
    """The doc's fenced code block in `language` holding `marker`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)
    [found] = [block for block in blocks if marker in block]
    return found


def _signed() -> tuple[bytes, str]:
    """A json message as the notifier sends it: its raw body and signature header."""
    message = Message(
        event="task.error",
        delivery_id="3f9c0d7e5b2a4c18a6e1f0b9d8c7a654",
        notification="ops",
        occurred_at_ms=1_772_415_667_000,
        count=1,
        entries=({"task_id": "t1", "account_id": "acct-1", "account_name": "门店一号"},),
    )
    outgoing = render(
        message,
        fmt="json",
        url="http://127.0.0.1/hook",
        secret=SECRET,
        public_url=None,
        tz=ZoneInfo("Asia/Shanghai"),
        now_ms=1_772_415_700_000,
    )
    return outgoing.body, outgoing.headers["X-Taskdispatch-Signature"]


def _python_verified() -> Verify:
    scope: dict[str, object] = {}
    exec(_block("python", "def verified"), scope)  # the snippet as the doc prints it
    verified = scope["verified"]
    assert callable(verified)
    return verified  # type: ignore[return-value]


def _node_verified(body: bytes, header: str, secret: str = SECRET) -> bool:
    snippet = _block("js", "function verified")
    function = re.search(r"function verified\(.*?\n}\n", snippet, flags=re.DOTALL)
    assert function is not None
    script = (
        'const crypto = require("node:crypto");\n'
        + function.group(0)
        + "const [secret, body, header] = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));"
        + "process.stdout.write(String(verified(secret, Buffer.from(body, 'base64'), header)));"
    )
    given = json.dumps([secret, base64.b64encode(body).decode(), header])
    done = subprocess.run(
        ["node", "-e", script], input=given, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout == "true"


def test_alerts_doc_python_check_accepts_the_notifiers_signature_only() -> None:
    """The Python snippet verifies a signed body, and refuses a changed body, another
    secret, a missing or non-ASCII header."""
    verified = _python_verified()
    body, header = _signed()
    assert verified(SECRET, body, header)
    assert not verified(SECRET, body.replace(b"acct-1", b"acct-2"), header)
    assert not verified("another-secret", body, header)
    assert not verified(SECRET, body, None)
    assert not verified(SECRET, body, "sha256=é")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_alerts_doc_node_check_accepts_the_notifiers_signature_only() -> None:
    """The Node.js snippet's `verified` agrees: the signed body passes, a changed one not."""
    body, header = _signed()
    assert _node_verified(body, header)
    assert not _node_verified(body.replace(b"acct-1", b"acct-2"), header)
    assert not _node_verified(body, header, secret="another-secret")
    assert not _node_verified(body, "sha256=short")
