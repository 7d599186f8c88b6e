"""What the figures were measured on: cores, CPU model, Python, Redis and package versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any

import psutil
import redis

__all__ = ["PACKAGES", "describe"]

PACKAGES = (
    "celery",
    "kombu",
    "redis",
    "fastapi",
    "uvicorn",
    "pydantic",
    "httpx",
    "celery-redbeat",
    "matplotlib",
    "pyinstrument",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str | None:
    path = shutil.which("wrk")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return (
        (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else path
    )


def describe(redis_url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    try:
        server = client.info("server")
        allocator = client.info("memory").get("mem_allocator")
    finally:
        client.close()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_server": server.get("redis_version"),
        "redis_malloc": allocator,
        "packages": {name: _version(name) for name in PACKAGES},
        "wrk": _wrk_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
