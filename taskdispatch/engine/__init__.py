"""The engine that runs rounds: the Celery beat scheduler, the worker's round, the account
lease, recovery, the watchdog and the alerts' notifier."""
