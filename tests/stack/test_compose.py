"""The production layout: docker-compose.yml, Dockerfile and .env.example agree with the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from taskdispatch.settings import Settings
from taskdispatch.store.checks import PLACEHOLDER_MARK, placeholder_secrets

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("api", "worker", "beat", "flower")
# Read by docker-compose.yml only, not by Settings.
COMPOSE_ONLY = {"FLOWER_BASIC_AUTH"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"TASKDISPATCH_{field.upper()}"


def _example_names() -> list[str]:
    pattern = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.MULTILINE)
    return pattern.findall((ROOT / ".env.example").read_text())


def _compose_command() -> list[str] | None:
    """A working compose client: `docker compose` (v2) or `docker-compose` (1.29), else None."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        probe = subprocess.run([*command, "version"], capture_output=True, timeout=60, check=False)
        if probe.returncode == 0:
            return command
    return None


def test_compose_services_are_the_whole_stack(compose: dict[str, Any]) -> None:
    """redis, api, worker, beat and flower, the app ones built from the one Dockerfile."""
    assert set(compose["services"]) == {"redis", *APP_SERVICES}
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["build"] == "."
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_redis_persists_and_never_evicts(compose: dict[str, Any]) -> None:
    """Redis runs with appendonly yes and noeviction on a named volume."""
    redis = compose["services"]["redis"]
    command = " ".join(str(part) for part in redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data"
    assert volume in compose["volumes"]


def test_compose_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    """Each service declares a healthcheck test."""
    for name, service in compose["services"].items():
        assert service.get("healthcheck", {}).get("test"), name


def test_compose_worker_and_beat_can_run_several(compose: dict[str, Any]) -> None:
    """Workers scale (no fixed name or host port, unique node names); beat runs two replicas."""
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "worker@%h" in worker["command"]
    assert compose["services"]["beat"]["deploy"]["replicas"] == 2


def test_compose_flower_requires_basic_auth(compose: dict[str, Any]) -> None:
    """Flower gets FLOWER_BASIC_AUTH and nothing anywhere opens its API without auth."""
    assert "FLOWER_BASIC_AUTH" in compose["services"]["flower"]["environment"]
    assert "FLOWER_UNAUTHENTICATED_API" not in (ROOT / "docker-compose.yml").read_text()
    for name, service in compose["services"].items():
        assert "FLOWER_UNAUTHENTICATED_API" not in (service.get("environment") or {}), name


def test_compose_passes_every_setting_to_the_app(compose: dict[str, Any]) -> None:
    """Every Settings field reaches the app containers (API_HOST/API_PORT are fixed there)."""
    fixed_in_compose = {"api_host", "api_port"}
    expected = {_env_name(f) for f in Settings.model_fields if f not in fixed_in_compose}
    for name in APP_SERVICES:
        assert expected <= set(compose["services"][name]["environment"]), name


def test_env_example_documents_exactly_the_settings() -> None:
    """.env.example names every Settings field once, and nothing that is not one."""
    names = _example_names()
    assert len(names) == len(set(names)), "a setting appears twice in .env.example"
    documented = set(names) - COMPOSE_ONLY
    expected = {_env_name(field) for field in Settings.model_fields}
    assert documented == expected, (
        f"missing: {sorted(expected - documented)}, unknown: {sorted(documented - expected)}"
    )
    assert set(names) >= COMPOSE_ONLY


def test_dockerfile_is_slim_and_not_root() -> None:
    """python:3.11-slim, the runtime lock installed, a non-root USER."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install -r requirements/runtime.lock" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def test_compose_config_is_accepted_by_the_compose_client(tmp_path: Path) -> None:
    """`compose config -q` accepts the file, and refuses it without FLOWER_BASIC_AUTH or
    without TASKDISPATCH_API_TOKEN."""
    command = _compose_command()
    if command is None:
        pytest.skip("no working `docker compose` or `docker-compose` on PATH")
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    base = [*command, "--env-file", str(empty_env), "-f", str(ROOT / "docker-compose.yml")]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FLOWER_BASIC_AUTH", "TASKDISPATCH_API_TOKEN")
    }
    secrets = {"FLOWER_BASIC_AUTH": "admin:test", "TASKDISPATCH_API_TOKEN": "a-token-of-the-test"}

    def config(**given: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, "config", "-q"],
            env={**env, **given},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ok = config(**secrets)
    assert ok.returncode == 0, ok.stderr
    for missing in secrets:
        refused = config(**{k: v for k, v in secrets.items() if k != missing})
        assert refused.returncode != 0
        assert missing in refused.stderr


def test_compose_config_after_copying_the_env_example_is_accepted(tmp_path: Path) -> None:
    """`cp .env.example .env && compose config -q` passes on a fresh clone."""
    command = _compose_command()
    if command is None:
        pytest.skip("no working `docker compose` or `docker-compose` on PATH")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKDISPATCH_", "FLOWER_"))}
    result = subprocess.run(
        [*command, "config", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_flower_refuses_the_example_login_before_it_starts(compose: dict[str, Any]) -> None:
    """Flower's command runs the secret check first, so the example login never serves."""
    command = " ".join(compose["services"]["flower"]["command"])
    check, _, start = command.partition("&&")
    assert "taskdispatch check" in check and "--secret FLOWER_BASIC_AUTH" in check
    assert "celery -A celery_app flower" in start


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        pytest.param("admin:change-me", True, id="the-example"),
        pytest.param("", True, id="empty"),
        pytest.param("ops:Xq9-long-and-random", False, id="a-real-one"),
    ],
)
def test_checks_secret_refuses_the_example_value(value: str, refused: bool) -> None:
    """`taskdispatch check --secret NAME` fails for an unset or example secret."""
    problems = placeholder_secrets(["FLOWER_BASIC_AUTH"], {"FLOWER_BASIC_AUTH": value})
    assert bool(problems) is refused
    if refused:
        assert "FLOWER_BASIC_AUTH" in problems[0]


def test_env_example_login_is_the_placeholder_the_check_refuses() -> None:
    """The example FLOWER_BASIC_AUTH carries the mark the secret check refuses."""
    line = next(
        x for x in (ROOT / ".env.example").read_text().splitlines() if x.startswith("FLOWER_")
    )
    assert PLACEHOLDER_MARK in line.partition("=")[2]
