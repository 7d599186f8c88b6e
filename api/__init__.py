"""The FastAPI layer of taskdispatch: `uvicorn api.main:app` or `python -m api.main`."""

__all__: list[str] = []
