"""The Celery app: `celery -A celery_app worker|beat|flower|inspect ...`."""

from beat_schedule import beat_schedule, beat_scheduler
from taskdispatch.engine.worker import create_celery_app
from taskdispatch.settings import get_settings

app = create_celery_app()
app.conf.beat_scheduler = beat_scheduler
app.conf.beat_schedule = beat_schedule(get_settings())

__all__ = ["app"]
