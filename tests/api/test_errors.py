"""Specification of failures: one body shape, fitting statuses, and no request yields a 500."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from api.main import create_app
from taskdispatch.dev.embedded_redis import free_port
from taskdispatch.service.dispatcher import TaskDispatcher
from taskdispatch.settings import Settings
from tests.support.api import create_body, serve

MIB = 1024 * 1024


def json_request(raw: bytes) -> dict[str, Any]:
    return {"content": raw, "headers": {"Content-Type": "application/json"}}


async def test_unknown_route_is_404_with_standard_body(client: httpx.AsyncClient) -> None:
    """Starlette's own 404 uses the standard error body."""
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "接口不存在: /api/v1/nothing-here"}


async def test_wrong_method_is_405_with_allow_header(client: httpx.AsyncClient) -> None:
    """A wrong method answers 405 in the standard body and keeps the Allow header."""
    response = await client.put("/api/v1/dispatcher/start")
    assert response.status_code == 405
    assert response.json() == {
        "success": False,
        "error": "接口 /api/v1/dispatcher/start 不支持该请求方法",
    }
    assert response.headers["Allow"] == "POST"


async def test_body_declared_over_1_mib_is_413(client: httpx.AsyncClient) -> None:
    """A Content-Length over 1 MiB is refused before the body is read."""
    response = await client.post("/api/v1/tasks/", **json_request(b" " * (MIB + 1)))
    assert response.status_code == 413
    assert response.json()["success"] is False
    assert "1048576 字节" in response.json()["error"]


async def test_body_streamed_over_1_mib_is_413(client: httpx.AsyncClient) -> None:
    """A chunked body without Content-Length is cut off once it passes 1 MiB."""

    async def chunks() -> Any:
        for _ in range(3):
            yield b" " * (MIB // 2)

    response = await client.post(
        "/api/v1/tasks/", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "1048576 字节" in response.json()["error"]


async def test_body_of_exactly_1_mib_is_read(client: httpx.AsyncClient) -> None:
    """The limit is inclusive: a 1 MiB body reaches validation."""
    raw = b"{}" + b" " * (MIB - 2)
    response = await client.post("/api/v1/tasks/", **json_request(raw))
    assert response.status_code == 422


def body_with_raw_field(field: str, raw_value: bytes) -> bytes:
    """A valid create body with `field` set to raw JSON text that json.dumps would not write."""
    body = create_body()
    body.pop(field, None)
    return json.dumps(body).encode()[:-1] + f', "{field}": '.encode() + raw_value + b"}"


@pytest.mark.parametrize(
    ("field", "raw_value"),
    [
        pytest.param("xhs_account_name", b'"\\ud800"', id="lone-surrogate"),
        pytest.param("kwargs", b'{"x": NaN}', id="kwargs-nan"),
        pytest.param("kwargs", b'{"x": 1e999}', id="kwargs-infinity"),
        pytest.param("kwargs", b'{"x": ' + b"[" * 200 + b"]" * 200 + b"}", id="kwargs-deep"),
    ],
)
async def test_unstorable_json_is_422_naming_field(
    client: httpx.AsyncClient, field: str, raw_value: bytes
) -> None:
    """JSON that Redis or the response encoder could not handle is refused up front."""
    response = await client.post(
        "/api/v1/tasks/", **json_request(body_with_raw_field(field, raw_value))
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(field)


async def test_validation_error_names_nested_field_and_lists_details(
    client: httpx.AsyncClient,
) -> None:
    """`error` names the first failing field; `details` lists every failure, each with the
    English technical detail."""
    body = create_body(interval="abc", valid_time_range=[8, "x"])
    response = await client.post("/api/v1/tasks/", json=body)
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "error": "interval 的值无效（原因见 details）",
        "details": [
            {
                "field": "interval",
                "message": "interval 的值无效（原因见 details）",
                "detail": "Input should be a valid integer",
            },
            {
                "field": "valid_time_range[1]",
                "message": "valid_time_range[1] 的值无效（原因见 details）",
                "detail": "Input should be a valid integer",
            },
        ],
    }


async def test_unknown_body_field_is_422_saying_the_field_is_unknown(
    client: httpx.AsyncClient,
) -> None:
    """A misspelt field ("intervall") is named as unknown, not as a field of bad value."""
    response = await client.post("/api/v1/tasks/", json=create_body(intervall=7200))
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "error": "intervall 是未知字段，请求体不接受（请检查拼写；可用字段见 /docs）",
        "details": [
            {
                "field": "intervall",
                "message": "intervall 是未知字段，请求体不接受（请检查拼写；可用字段见 /docs）",
                "detail": "Extra inputs are not permitted",
            }
        ],
    }


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        pytest.param("GET", "/api/v1/tasks/", None, id="list"),
        pytest.param("POST", "/api/v1/tasks/", create_body(), id="create"),
        pytest.param("GET", "/api/v1/tasks/some-id", None, id="detail"),
        pytest.param("GET", "/api/v1/dispatcher/status", None, id="status"),
        pytest.param("POST", "/api/v1/dispatcher/start", None, id="start"),
    ],
)
async def test_redis_down_is_503_without_password(
    method: str, url: str, body: dict[str, Any] | None
) -> None:
    """Unreachable Redis answers 503 naming Redis, with the URL's password masked."""
    settings = Settings(redis_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    async with serve(create_app(settings)) as client:
        response = await client.request(method, url, json=body)
    assert response.status_code == 503
    assert set(response.json()) == {"success", "error"}
    assert "Redis" in response.json()["error"]
    assert "hunter2" not in response.text
    assert ":***@" in response.json()["error"]


async def test_unexpected_exception_is_500_without_internals(
    client: httpx.AsyncClient,
    dispatcher: TaskDispatcher,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug answers 500 "内部服务器错误"; the traceback is logged, never sent."""

    async def broken() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(dispatcher, "status", broken)
    with caplog.at_level(logging.ERROR, logger="api.exceptions"):
        response = await client.get("/api/v1/dispatcher/status")
    assert response.status_code == 500
    assert response.json() == {"success": False, "error": "内部服务器错误"}
    assert "secret internals" not in response.text
    logged = [r for r in caplog.records if r.name == "api.exceptions"]
    assert logged and logged[0].exc_info is not None
