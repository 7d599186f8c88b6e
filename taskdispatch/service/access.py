"""Who may do what through the API: named tokens with a role, and the anonymous default.

Tokens come from `TASKDISPATCH_API_TOKENS`, JSON or the path of a JSON file:

    {"ops-bot": {"sha256": "<hex sha256 of the token>", "role": "operator"},
     "alice":   {"token": "<the token itself, for development>", "role": "admin"}}

and `TASKDISPATCH_API_TOKEN`, kept as one admin token named "admin". The name of the token
a request carries is its actor in the audit trail. With no token at all every request is
the admin "anonymous", which the API accepts only on a loopback address unless
`TASKDISPATCH_ALLOW_ANONYMOUS=true` (`anonymous_refusal`).

Roles are ordered: a viewer reads; an operator also pauses, resumes, reorders and runs
tasks (one or in bulk); an admin may do everything (create, change, delete, import,
limits, the dispatcher switch).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from taskdispatch.settings import Settings
from taskdispatch.store.checks import PLACEHOLDER_MARK

log = logging.getLogger(__name__)

# Named tokens shorter than this are refused (a guessable token guards nothing).
_MIN_TOKEN_CHARS = 16

__all__ = [
    "ANONYMOUS",
    "AccessConfigError",
    "Principal",
    "Role",
    "TokenBook",
    "anonymous_allowed_from",
    "anonymous_refusal",
]


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Role:
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError(f"unknown role {value!r}; roles: viewer, operator, admin")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return self.role >= role


ANONYMOUS = Principal("anonymous", Role.ADMIN)


class AccessConfigError(ValueError):
    """The token settings cannot be used; the message names the setting and the fix."""


class TokenBook:
    """The configured tokens, by the SHA-256 of their value."""

    def __init__(self, by_digest: dict[str, Principal]) -> None:
        self._by_digest = by_digest

    @property
    def configured(self) -> bool:
        return bool(self._by_digest)

    def identify(self, token: str) -> Principal | None:
        # Looked up by its digest: timing reveals nothing about a token's characters.
        return self._by_digest.get(_sha256(token))

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBook:
        by_digest: dict[str, Principal] = {}
        if settings.api_token:
            # The single token predates the length rule: a short one keeps working, warned.
            _refuse_placeholder(settings.api_token, "TASKDISPATCH_API_TOKEN", strict=False)
            by_digest[_sha256(settings.api_token)] = Principal("admin", Role.ADMIN)
        if settings.api_tokens:
            for name, entry in _load(settings.api_tokens).items():
                digest = _entry_digest(name, entry)
                if digest in by_digest:
                    raise AccessConfigError(
                        f"TASKDISPATCH_API_TOKENS: token {name!r} has the same value as "
                        f"{by_digest[digest].name!r}; give each name its own token"
                    )
                try:
                    role = Role.parse(entry.get("role"))
                except ValueError as exc:
                    raise AccessConfigError(f"TASKDISPATCH_API_TOKENS: {name!r}: {exc}") from None
                by_digest[digest] = Principal(name, role)
        return cls(by_digest)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _refuse_placeholder(token: str, where: str, *, strict: bool = True) -> None:
    if PLACEHOLDER_MARK in token:
        raise AccessConfigError(
            f"{where} still holds the example value of .env.example ({PLACEHOLDER_MARK!r} in it); "
            "set a token of your own (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)"
        )
    if len(token) < _MIN_TOKEN_CHARS:
        if strict:
            raise AccessConfigError(
                f"{where}: a token must be at least {_MIN_TOKEN_CHARS} characters long"
            )
        log.warning(
            "%s is shorter than %d characters: easy to guess; set a longer one",
            where,
            _MIN_TOKEN_CHARS,
        )


def _load(value: str) -> dict[str, dict[str, Any]]:
    text = value.strip()
    source = "TASKDISPATCH_API_TOKENS"
    if not text.startswith(("{", "[")):
        path = Path(os.path.expanduser(text))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AccessConfigError(
                f"TASKDISPATCH_API_TOKENS is neither JSON nor a readable file ({path}): {exc}"
            ) from None
        source = f"TASKDISPATCH_API_TOKENS file {path}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AccessConfigError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise AccessConfigError(
            f'{source} must be an object {{"<name>": {{"sha256": "<hex>", "role": "viewer"}}}}'
        )
    return data


def _entry_digest(name: str, entry: dict[str, Any]) -> str:
    where = f"TASKDISPATCH_API_TOKENS: {name!r}"
    if not name or len(name) > 64 or any(ch.isspace() for ch in name):
        raise AccessConfigError(f"{where}: a name is 1..64 characters without whitespace")
    if ("sha256" in entry) == ("token" in entry):
        raise AccessConfigError(f"{where}: give exactly one of 'sha256' and 'token'")
    if "token" in entry:
        token = entry["token"]
        if not isinstance(token, str):
            raise AccessConfigError(f"{where}: 'token' must be a string")
        _refuse_placeholder(token, where)
        return _sha256(token)
    digest = entry["sha256"]
    if not isinstance(digest, str) or len(digest) != 64:
        raise AccessConfigError(f"{where}: 'sha256' must be 64 hex digits")
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise AccessConfigError(f"{where}: 'sha256' must be 64 hex digits") from None
    return digest.lower()


def anonymous_refusal(settings: Settings, book: TokenBook) -> str | None:
    """Why the API must not start: no token, on an address others can reach, and anonymous
    access not allowed explicitly. None when it may start."""
    if book.configured or settings.allow_anonymous or _loopback(settings.api_host):
        return None
    return (
        f"api: refusing to serve without a token on {settings.api_host} (reachable from other "
        "machines): anyone could create, change and delete tasks. Set TASKDISPATCH_API_TOKEN or "
        "TASKDISPATCH_API_TOKENS, bind API_HOST=127.0.0.1, or set "
        "TASKDISPATCH_ALLOW_ANONYMOUS=true to accept it."
    )


def anonymous_allowed_from(settings: Settings, client_host: str | None) -> bool:
    """Whether a request without any configured token may be served for this client: from
    the machine itself, or anywhere when `allow_anonymous` says so. Catches a server bound
    to a public address by a command line the settings do not see (`uvicorn --host
    0.0.0.0`); behind a reverse proxy on the same machine every client looks local, so set
    a token there."""
    return settings.allow_anonymous or (client_host is not None and _loopback(client_host))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
