"""The service facade: `TaskDispatcher`, the Python API the REST API calls, and who may call it."""

from taskdispatch.service.dispatcher import DispatcherStatus, TaskDispatcher

__all__ = ["DispatcherStatus", "TaskDispatcher"]
