"""The exceptions taskdispatch raises; the API maps each to one HTTP status.

TaskDispatchError                  base of everything below
├── InvalidTaskError               bad input, names the field       (400 / 422)
│   └── UnknownTaskTypeError       task_type not registered         (400)
├── TaskNotFoundError              no task with that id             (404)
├── AccountTaskExistsError         one task per account             (400)
├── TaskConflictError              not allowed in the task's state  (409)
└── StoreUnavailableError          Redis cannot be reached          (503)
"""

from __future__ import annotations

__all__ = [
    "AccountTaskExistsError",
    "InvalidTaskError",
    "StoreUnavailableError",
    "TaskConflictError",
    "TaskDispatchError",
    "TaskNotFoundError",
    "UnknownTaskTypeError",
]


class TaskDispatchError(Exception):
    """Base class; `str(exc)` is a message fit to show to an API client."""


class InvalidTaskError(TaskDispatchError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownTaskTypeError(InvalidTaskError):
    def __init__(self, task_type: str, known: list[str]) -> None:
        super().__init__(
            f"task_type '{task_type}' is not registered; known task types: {', '.join(known)}",
            field="task_type",
        )
        self.known = known


class TaskNotFoundError(TaskDispatchError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"任务不存在: {task_id}")
        self.task_id = task_id


class AccountTaskExistsError(TaskDispatchError):
    def __init__(self, account_id: str, existing_task_id: str) -> None:
        super().__init__(
            f"账户ID '{account_id}' 已存在任务 '{existing_task_id}'，同一账户不能创建多个任务"
        )
        self.account_id = account_id
        self.existing_task_id = existing_task_id


class TaskConflictError(TaskDispatchError):
    """The operation is valid in general but not in the task's current state."""


class StoreUnavailableError(TaskDispatchError):
    def __init__(self, url: str) -> None:
        super().__init__(
            f"Redis at {url} cannot be reached; the task store is unavailable, retry shortly."
        )
        self.url = url
