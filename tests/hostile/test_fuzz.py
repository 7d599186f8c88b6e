"""Schema-driven fuzzing of every API operation with schemathesis, against a live server.

Each operation gets examples generated from the app's own OpenAPI schema (valid and
invalid ones); every response must be no 500, conform to the schema (status code,
content type, body) and, when it is an error, use the standard body
`{"success": false, "error": "..."}`. A stateful run then chains operations through the
links schemathesis infers (create -> read/patch/pause/... -> delete).

`make test` runs a bounded profile (a handful of examples per operation); a longer run:

    TASKDISPATCH_FUZZ_EXAMPLES=200 TASKDISPATCH_FUZZ_STEPS=50 \\
        .venv/bin/python -m pytest tests/hostile/test_fuzz.py -p no:cacheprovider
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import ApiProcess, error_body_ok
from tests.support.stack import e2e_env

EXAMPLES = int(os.environ.get("TASKDISPATCH_FUZZ_EXAMPLES", "8"))
STEPS = int(os.environ.get("TASKDISPATCH_FUZZ_STEPS", "8"))
# A never-ending Server-Sent Events stream: a fuzzer would wait on it forever.
EXCLUDED = {"GET /api/v1/events"}


@schemathesis.check
def standard_error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer is {"success": false, "error": "<text>"} (plus optional details)."""
    if response.status_code < 400:
        return None
    body = response.json()
    if not error_body_ok(body):
        raise AssertionError(f"non-standard error body: {response.text[:300]}")
    if "Traceback" in response.text:
        raise AssertionError("an error body carries a traceback")
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    standard_error_body,
]


@pytest.fixture(scope="module")
def live_api(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API in its own uvicorn process on the session Redis (keys under tdfuzz:)."""
    env = {**e2e_env(redis_server.url), "TASKDISPATCH_KEY_PREFIX": "tdfuzz:"}
    log = Path(tmp_path_factory.mktemp("fuzz")) / "api.log"
    with ApiProcess(env, log) as api:
        yield api.base_url
    assert "Traceback" not in log.read_text(errors="replace"), "the API logged a traceback"


@pytest.fixture(scope="module")
def schema(live_api: str) -> Any:
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json")


def _operations(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if op.label not in EXCLUDED]


def test_fuzz_every_operation_no_500_schema_conformant_standard_errors(
    schema: Any, live_api: str
) -> None:
    """Generated requests to every operation: no 500, conforming answers, standard errors."""
    operations = _operations(schema)
    assert len(operations) >= 15, [op.label for op in operations]
    failures: list[str] = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            case.call_and_validate(base_url=live_api, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collected so that one run reports every failing operation
            failures.append(f"{operation.label}: {exc}")
    assert failures == [], "\n\n".join(failures)


def test_fuzz_stateful_sequences_keep_the_api_sound(schema: Any, live_api: str) -> None:
    """Chains of linked calls (create, then act on the created task) never break a check."""
    # The task routes only: every other operation (limits, dispatcher, ...) is fuzzed above,
    # and in a derandomized run of a few steps they would crowd out the chains from a create.
    base = schema.include(path_regex=r"^/api/v1/tasks").as_state_machine()
    seen: list[tuple[str, int]] = []

    class Machine(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            # Creates are fuzzed above; here each one succeeds, so that the chains reach the
            # operations on the created task instead of stopping at a refused body.
            if case.operation.label == "POST /api/v1/tasks/":
                case.body = {
                    "sys_type": "mac_intel",
                    "xhs_account_id": f"fuzz-{uuid.uuid4().hex[:12]}",
                    "xhs_account_name": "fuzz",
                    "interval": 60,
                    "valid_time_range": [0, 24],
                }

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": live_api}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            kwargs.pop("additional_checks", None)
            seen.append((case.operation.label, response.status_code))
            case.validate_response(response, CHECKS, transport_kwargs=kwargs)

    Machine.run(
        settings=settings(
            max_examples=STEPS,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links were followed: some call on a created task's own path succeeded.
    linked = [label for label, status in seen if "{task_id}" in label and status == 200]
    assert linked, seen
