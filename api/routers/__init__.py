"""One router per resource of the design document, each with its own prefix and tag."""

from api.routers import accounts, dispatcher, health, limits, tasks

__all__ = ["accounts", "dispatcher", "health", "limits", "tasks"]
