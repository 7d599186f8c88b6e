"""taskdispatch: a Redis-backed, Celery-based scheduler for recurring per-account jobs."""

from taskdispatch.bodies import TaskChange, TaskSpec
from taskdispatch.exceptions import (
    AccountTaskExistsError,
    InvalidTaskError,
    LimitNotFoundError,
    StoreUnavailableError,
    TaskConflictError,
    TaskDispatchError,
    TaskNotFoundError,
    UnknownTaskTypeError,
)
from taskdispatch.handlers import RunContext
from taskdispatch.lease import LeaseLost, RoundCancelled
from taskdispatch.limits import Limit, Match
from taskdispatch.models import Task, TaskStatus
from taskdispatch.service import DispatcherStatus, TaskDispatcher
from taskdispatch.settings import Settings, get_settings

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
