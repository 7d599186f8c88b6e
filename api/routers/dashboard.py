"""The operators' dashboard: `/` serves the page, `/static` its script and style sheet.

Public on purpose: the page holds no data. Its script asks for the API token when the API
answers 401 and sends it with every request it makes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "router", "static_files"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["控制台"])

# Same-origin only: no inline script or style, so an account name that slipped markup past
# the API could still not run code in the page that holds the token.
_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@router.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
    )


def static_files() -> StaticFiles:
    """The app mounts this at /static."""
    return StaticFiles(directory=STATIC_DIR)
