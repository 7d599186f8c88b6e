"""taskdispatch: a Redis-backed, Celery-based scheduler for recurring per-account jobs."""

from taskdispatch.domain.bodies import TaskChange, TaskSpec
from taskdispatch.domain.exceptions import (
    AccountTaskExistsError,
    InvalidTaskError,
    LimitNotFoundError,
    StoreUnavailableError,
    TaskConflictError,
    TaskDispatchError,
    TaskNotFoundError,
    UnknownTaskTypeError,
)
from taskdispatch.domain.models import Task, TaskStatus
from taskdispatch.engine.handlers import RunContext
from taskdispatch.engine.lease import LeaseLost, RoundCancelled
from taskdispatch.service.dispatcher import DispatcherStatus, TaskDispatcher
from taskdispatch.settings import Settings, get_settings
from taskdispatch.store.limits import Limit, Match

__version__ = "1.0.0"

__all__ = [
    "AccountTaskExistsError",
    "DispatcherStatus",
    "InvalidTaskError",
    "LeaseLost",
    "Limit",
    "LimitNotFoundError",
    "Match",
    "RoundCancelled",
    "RunContext",
    "Settings",
    "StoreUnavailableError",
    "Task",
    "TaskChange",
    "TaskConflictError",
    "TaskDispatchError",
    "TaskDispatcher",
    "TaskNotFoundError",
    "TaskSpec",
    "TaskStatus",
    "UnknownTaskTypeError",
    "get_settings",
]
