"""docs/api.md describes every operation the OpenAPI schema serves, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \|", re.MULTILINE)


def test_api_doc_lists_exactly_the_operations_of_the_schema(app: FastAPI) -> None:
    """Every (method, path) of /openapi.json has a row in docs/api.md, and every row one."""
    documented = set(_ROW.findall((ROOT / "docs" / "api.md").read_text()))
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert documented == served
