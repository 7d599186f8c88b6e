"""GET /metrics: Prometheus text for the whole deployment (any API replica serves it).

Top level, where Prometheus looks by default. When the API has a token the route needs it
like every other; Prometheus sends it with `authorization: {type: Bearer, credentials: ...}`
(or `bearer_token` in older versions) in the scrape config.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from api.dependencies import DispatcherDep
from taskdispatch.metrics import render_metrics

__all__ = ["router"]

router = APIRouter(tags=["调度器管理"])


@router.get(
    "/metrics",
    summary="Prometheus 指标",
    description=(
        "任务数（按状态）、待派发积压、调度延迟、存活的 beat / worker、各结果的轮次计数与"
        "开始延迟直方图；数据来自 Redis，任一 API 副本返回的都是整个部署的数值。"
    ),
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "指标文本"}},
)
async def metrics(dispatcher: DispatcherDep) -> Response:
    # generate_latest writes the classic 0.0.4 text format, which every Prometheus parses;
    # prometheus_client's own server labels it the same way.
    return Response(await render_metrics(dispatcher), media_type=CONTENT_TYPE_PLAIN_0_0_4)
