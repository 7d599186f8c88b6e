"""The exceptions taskdispatch raises; the API maps each to one HTTP status.

TaskDispatchError                  base of everything below
├── InvalidTaskError               bad input, names the field       (400 / 422)
│   └── UnknownTaskTypeError       task_type not registered         (400)
├── TaskNotFoundError              no task with that id             (404)
├── LimitNotFoundError             no limit of that name            (404)
├── NotificationNotFoundError      no notification of that name     (404)
├── AccountTaskExistsError         one task per account             (400)
├── TaskConflictError              not allowed in the task's state  (409)
├── StoreUnavailableError          Redis cannot be reached          (503)
├── TransactionContendedError      a read-modify-write found its keys changed
│                                  at every attempt (transaction.MAX_ATTEMPTS) (503)
└── WriteNotReplicatedError        fewer replicas confirmed a write
                                   than TASKDISPATCH_REDIS_MIN_REPLICAS (503)

`str(exc)` is the client-facing message from `messages.py` (the design document's
language); `detail`, when set, is the English technical detail (value received, format).

RoundFailedError                   ends the Celery task of a round recorded `failed` or
                                   `lost` as FAILURE (worker only; never reaches a client)

Its message is for the worker log and Flower, in English, naming the task and account.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from taskdispatch.domain.messages import text

__all__ = [
    "AccountTaskExistsError",
    "InvalidTaskError",
    "LimitNotFoundError",
    "NotificationNotFoundError",
    "RoundFailedError",
    "StoreUnavailableError",
    "TaskConflictError",
    "TaskDispatchError",
    "TaskNotFoundError",
    "TransactionContendedError",
    "UnknownTaskTypeError",
    "WriteNotReplicatedError",
]


class TaskDispatchError(Exception):
    """Base class; `str(exc)` is a message fit to show to an API client."""

    def __init__(self, key: str, *, detail: str | None = None, **params: Any) -> None:
        super().__init__(text(key, **params))
        self.key = key
        self.detail = detail


class InvalidTaskError(TaskDispatchError):
    def __init__(
        self, key: str, *, field: str | None = None, detail: str | None = None, **params: Any
    ) -> None:
        super().__init__(key, detail=detail, field=field, **params)
        self.field = field


class UnknownTaskTypeError(InvalidTaskError):
    def __init__(self, task_type: str, known: list[str]) -> None:
        super().__init__(
            "unknown_task_type", field="task_type", task_type=task_type, known=", ".join(known)
        )
        self.known = known


class TaskNotFoundError(TaskDispatchError):
    def __init__(self, task_id: str) -> None:
        super().__init__("task_not_found", task_id=task_id)
        self.task_id = task_id


class LimitNotFoundError(TaskDispatchError):
    def __init__(self, name: str) -> None:
        super().__init__("limit_not_found", name=name)
        self.name = name


class NotificationNotFoundError(TaskDispatchError):
    def __init__(self, name: str) -> None:
        super().__init__("notification_not_found", name=name)
        self.name = name


class AccountTaskExistsError(TaskDispatchError):
    def __init__(self, account_id: str, existing_task_id: str) -> None:
        super().__init__("account_exists", account_id=account_id, task_id=existing_task_id)
        self.account_id = account_id
        self.existing_task_id = existing_task_id


class TaskConflictError(TaskDispatchError):
    """The operation is valid in general but not in the task's current state."""


class StoreUnavailableError(TaskDispatchError):
    def __init__(self, url: str) -> None:
        super().__init__("store_unavailable", url=url)
        self.url = url


class TransactionContendedError(TaskDispatchError):
    """Other writers changed the watched keys between the read and the write of every
    attempt of one optimistic transaction (`transaction.optimistic`): nothing was written."""

    def __init__(self, *, attempts: int) -> None:
        super().__init__("transaction_contended", attempts=attempts)
        self.attempts = attempts


class WriteNotReplicatedError(TaskDispatchError):
    """The master applied the write, but `WAIT` saw fewer replicas acknowledge it than
    required: a failover before they catch up may lose it (read it back before retrying)."""

    def __init__(self, *, confirmed: int, required: int, timeout_ms: int) -> None:
        super().__init__(
            "write_not_replicated", confirmed=confirmed, required=required, timeout_ms=timeout_ms
        )
        self.confirmed = confirmed
        self.required = required


class RoundFailedError(Exception):
    """Raised by the round task after the round was recorded `failed` or `lost`, so that
    Celery ends the task as FAILURE (Flower, `celery events`) with the handler's error.

    The round is already recorded when this is raised; it is the Celery task's state only.
    The worker declares it in `Task.throws`, so Celery logs one line without a traceback.
    """

    def __init__(
        self, *, task_id: str, account_id: str, round_num: int | None, outcome: str, error: str
    ) -> None:
        which = f"round {round_num}" if round_num is not None else "round"
        super().__init__(f"{which} of task {task_id} (account {account_id}) {outcome}: {error}")
        self.task_id = task_id
        self.account_id = account_id
        self.round_num = round_num
        self.outcome = outcome
        self.error = error

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        # Celery sends a pool process's exception to the worker's main process pickled; the
        # default reduction would call __init__ with the message as its only argument.
        rebuild = partial(
            type(self),
            task_id=self.task_id,
            account_id=self.account_id,
            round_num=self.round_num,
            outcome=self.outcome,
            error=self.error,
        )
        return rebuild, ()
