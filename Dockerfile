# One image for api, worker, beat and flower; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The locked runtime set first: code changes then reuse the cached dependency layer. No test,
# lint or benchmark tool is in the image (.dockerignore leaves tests/ and the other locks out).
COPY requirements/runtime.lock requirements/
RUN pip install -r requirements/runtime.lock

COPY . .
# The package itself (the `taskdispatch` command the healthchecks call); its dependencies
# are the ones just installed.
RUN pip install --no-deps .

# Nothing here needs root; a handler bug then cannot touch the image (and Celery stops warning).
RUN useradd --create-home --uid 10001 --user-group taskdispatch
USER taskdispatch

EXPOSE 8000 5555
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "5"]
