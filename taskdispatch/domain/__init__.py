"""The domain rules: tasks, their schedule and every state transition, as pure functions.

Nothing here talks to Redis, Celery or the network; every other layer builds on these rules.
"""
