"""The design document's own examples, run as written: sections 8.1, 10.2 and 14.1."""

from __future__ import annotations

import httpx

# Section 14.1, step 2, verbatim.
CURL_CREATE_BODY = {
    "sys_type": "mac_intel",
    "xhs_account_id": "account_1",
    "xhs_account_name": "账号1",
    "user_query": "开始运营",
    "interval": 3600,
    "valid_time_range": [8, 22],
}


async def test_section_10_2_task_lifecycle(client: httpx.AsyncClient) -> None:
    """Create, get, pause, resume and delete each answer 200 (section 10.2)."""
    create_response = await client.post(
        "/api/v1/tasks/",
        json={
            "sys_type": "mac_intel",
            "xhs_account_id": "test_account",
            "xhs_account_name": "测试",
        },
    )
    assert create_response.status_code == 200
    assert create_response.json()["success"] is True
    task_id = create_response.json()["task_id"]

    get_response = await client.get(f"/api/v1/tasks/{task_id}")
    assert get_response.status_code == 200

    pause_response = await client.post(f"/api/v1/tasks/{task_id}/pause")
    assert pause_response.status_code == 200

    resume_response = await client.post(f"/api/v1/tasks/{task_id}/resume")
    assert resume_response.status_code == 200

    delete_response = await client.delete(f"/api/v1/tasks/{task_id}")
    assert delete_response.status_code == 200


async def test_section_14_1_curl_walkthrough(client: httpx.AsyncClient) -> None:
    """The six curl steps of section 14.1 succeed in order with the document's shapes."""
    health = await client.get("/api/v1/health")
    assert health.json()["status"] == "healthy"

    created = await client.post(
        "/api/v1/tasks/", json=CURL_CREATE_BODY, headers={"Content-Type": "application/json"}
    )
    assert created.json()["success"] is True
    task_id = created.json()["task_id"]
    assert created.json()["task_info"]["valid_time_range"] == [8, 22]

    listed = await client.get("/api/v1/tasks/")
    assert [t["task_id"] for t in listed.json()["tasks"]] == [task_id]

    paused = await client.post(f"/api/v1/tasks/{task_id}/pause")
    assert paused.json()["status"] == "paused"

    resumed = await client.post(f"/api/v1/tasks/{task_id}/resume")
    assert resumed.json()["status"] == "pending"

    started = await client.post("/api/v1/dispatcher/start")
    assert started.json() == {"success": True, "message": "调度器已启动"}


async def test_section_8_1_documentation_pages_respond(client: httpx.AsyncClient) -> None:
    """Swagger UI, ReDoc and the OpenAPI JSON are served."""
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path


async def test_section_7_1_openapi_info_and_tags(client: httpx.AsyncClient) -> None:
    """Title, description and version as in section 7.1; the four tags of the document,
    and those of what this server adds (limits, bulk operations, audit, the caller's role,
    alerts)."""
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"] == {
        "title": "任务调度器 API",
        "description": "任务调度器 Web API 接口",
        "version": "1.0.0",
    }
    tags = {tag for path in schema["paths"].values() for op in path.values() for tag in op["tags"]}
    assert tags == {
        "健康检查",
        "调度器管理",
        "任务管理",
        "账户管理",
        "限流规则",
        "批量操作",
        "审计",
        "认证",
        "告警通知",
    }


async def test_section_8_2_every_operation_has_summary_and_description(
    client: httpx.AsyncClient,
) -> None:
    """Every documented operation carries a summary and a description."""
    schema = (await client.get("/openapi.json")).json()
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert len(operations) >= 13
    assert all(op.get("summary") and op.get("description") for op in operations)


async def test_section_8_2_error_responses_document_the_error_body(
    client: httpx.AsyncClient,
) -> None:
    """Create documents its 400 and 422 answers with the standard error body."""
    schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"]["/api/v1/tasks/"]["post"]["responses"]
    for status in ("400", "422"):
        ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse")
