"""The framework's floor for the API's reads: what FastAPI, uvicorn, redis-py and Pydantic
cost on their own, served like the API (`python -m uvicorn bench.floor:app`, same flags).

- `GET /floor/tasks/{id}`: one HGETALL, one Pydantic model of the hash, its JSON;
- `GET /floor/tasks/?ids=...`: 100 HGETALLs pipelined into a list of models.

`bench/api.py` measures it beside the real endpoints in the same run, so the report can say
how close to the floor each read is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from taskdispatch.settings import get_settings
from taskdispatch.store.connections import api_client
from taskdispatch.store.keys import Keys

__all__ = ["app"]


class FloorTask(BaseModel):
    """Every field of a stored task hash, as text: the least a typed answer can be."""

    fields: dict[str, str]


class FloorList(BaseModel):
    total: int
    tasks: list[FloorTask]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    app.state.redis = api_client(settings)
    app.state.keys = Keys(settings.key_prefix)
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=_lifespan)


@app.get("/floor/tasks/{task_id}")
async def one(task_id: str) -> FloorTask:
    raw: dict[str, Any] = await app.state.redis.hgetall(app.state.keys.task(task_id))
    return FloorTask(fields=raw)


@app.get("/floor/tasks/")
async def page(ids: str) -> FloorList:
    async with app.state.redis.pipeline(transaction=False) as pipe:
        for task_id in ids.split(","):
            pipe.hgetall(app.state.keys.task(task_id))
        raws: list[dict[str, Any]] = await pipe.execute()
    return FloorList(total=len(raws), tasks=[FloorTask(fields=raw) for raw in raws])
