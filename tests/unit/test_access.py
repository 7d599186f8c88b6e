"""Who may do what: named tokens with roles, the placeholder refusal and anonymous access."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from taskdispatch.service.access import (
    ANONYMOUS,
    AccessConfigError,
    Principal,
    Role,
    TokenBook,
    anonymous_allowed_from,
    anonymous_refusal,
)
from taskdispatch.settings import Settings

ADMIN_TOKEN = "an-admin-token-of-the-tests"
VIEWER_TOKEN = "a-viewer-token-of-the-tests"


def _settings(**values: object) -> Settings:
    return Settings(redis_url="redis://127.0.0.1:1/0", **values)  # type: ignore[arg-type]


def _book(tokens: object, **values: object) -> TokenBook:
    return TokenBook.from_settings(_settings(api_tokens=json.dumps(tokens), **values))


def test_role_order_viewer_below_operator_below_admin() -> None:
    """An admin may do what an operator may, who may do what a viewer may; not the reverse."""
    assert Principal("a", Role.ADMIN).may(Role.OPERATOR)
    assert Principal("o", Role.OPERATOR).may(Role.VIEWER)
    assert not Principal("v", Role.VIEWER).may(Role.OPERATOR)
    assert not Principal("o", Role.OPERATOR).may(Role.ADMIN)


def test_token_book_plain_token_identifies_its_name_and_role() -> None:
    """A development entry with the token itself identifies that token."""
    book = _book({"alice": {"token": VIEWER_TOKEN, "role": "viewer"}})
    assert book.identify(VIEWER_TOKEN) == Principal("alice", Role.VIEWER)
    assert book.identify("another-token-entirely") is None


def test_token_book_sha256_entry_identifies_the_token_hashing_to_it() -> None:
    """A production entry holds only the token's SHA-256; the token itself identifies."""
    digest = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest().upper()
    book = _book({"ops-bot": {"sha256": digest, "role": "operator"}})
    assert book.identify(ADMIN_TOKEN) == Principal("ops-bot", Role.OPERATOR)


def test_token_book_reads_a_json_file_named_by_the_setting(tmp_path: Path) -> None:
    """The setting may be the path of a JSON file instead of JSON."""
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"bob": {"token": ADMIN_TOKEN, "role": "admin"}}))
    book = TokenBook.from_settings(_settings(api_tokens=str(path)))
    assert book.identify(ADMIN_TOKEN) == Principal("bob", Role.ADMIN)


def test_token_book_single_api_token_is_an_admin_named_admin() -> None:
    """TASKDISPATCH_API_TOKEN keeps working as one admin token."""
    book = TokenBook.from_settings(_settings(api_token=ADMIN_TOKEN))
    assert book.identify(ADMIN_TOKEN) == Principal("admin", Role.ADMIN)


def test_token_book_short_single_api_token_still_works() -> None:
    """The single token predates the length rule: a short one is accepted (and warned of)."""
    book = TokenBook.from_settings(_settings(api_token="short-token"))
    assert book.identify("short-token") == Principal("admin", Role.ADMIN)


def test_token_book_without_any_token_is_not_configured() -> None:
    """No token at all: the API serves the anonymous admin (where it may)."""
    assert not TokenBook.from_settings(_settings()).configured


@pytest.mark.parametrize(
    ("tokens", "fragment"),
    [
        pytest.param({"a": {"role": "viewer"}}, "exactly one of", id="neither-sha-nor-token"),
        pytest.param(
            {"a": {"token": ADMIN_TOKEN, "sha256": "0" * 64, "role": "viewer"}},
            "exactly one of",
            id="both",
        ),
        pytest.param({"a": {"sha256": "xyz", "role": "viewer"}}, "64 hex digits", id="short-sha"),
        pytest.param({"a": {"sha256": "g" * 64, "role": "viewer"}}, "64 hex digits", id="not-hex"),
        pytest.param({"a": {"token": ADMIN_TOKEN, "role": "root"}}, "unknown role", id="role"),
        pytest.param({"a": {"token": "short", "role": "admin"}}, "at least 16", id="short-token"),
        pytest.param(
            {"a": {"token": "change-me-please-now", "role": "admin"}}, "example value", id="example"
        ),
        pytest.param(
            {
                "a": {"token": ADMIN_TOKEN, "role": "admin"},
                "b": {"token": ADMIN_TOKEN, "role": "viewer"},
            },
            "same value",
            id="shared-value",
        ),
        pytest.param({"a b": {"token": ADMIN_TOKEN, "role": "admin"}}, "a name is", id="name"),
        pytest.param(["not", "an", "object"], "must be an object", id="not-object"),
    ],
)
def test_token_book_bad_entries_are_refused_naming_the_setting(
    tokens: object, fragment: str
) -> None:
    """Every unusable token entry stops the API with a message naming the setting and fix."""
    with pytest.raises(AccessConfigError, match="TASKDISPATCH_API_TOKENS") as info:
        _book(tokens)
    assert fragment in str(info.value)


def test_token_book_unreadable_file_is_refused(tmp_path: Path) -> None:
    """A path that does not exist is neither JSON nor a file: refused with the path."""
    with pytest.raises(AccessConfigError, match="neither JSON nor a readable file"):
        TokenBook.from_settings(_settings(api_tokens=str(tmp_path / "missing.json")))


def test_token_book_example_api_token_is_refused() -> None:
    """The .env.example value of TASKDISPATCH_API_TOKEN never serves."""
    with pytest.raises(AccessConfigError, match="TASKDISPATCH_API_TOKEN still holds"):
        TokenBook.from_settings(_settings(api_token="change-me"))


def test_env_example_api_token_is_the_placeholder_the_api_refuses() -> None:
    """The example file's token is exactly a value the API refuses at startup."""
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text().splitlines()
    value = next(x for x in example if x.startswith("TASKDISPATCH_API_TOKEN=")).partition("=")[2]
    with pytest.raises(AccessConfigError):
        TokenBook.from_settings(_settings(api_token=value))


@pytest.mark.parametrize(
    ("host", "allow", "refused"),
    [
        pytest.param("127.0.0.1", False, False, id="loopback"),
        pytest.param("localhost", False, False, id="localhost"),
        pytest.param("::1", False, False, id="ipv6-loopback"),
        pytest.param("0.0.0.0", False, True, id="all-interfaces"),
        pytest.param("10.0.0.5", False, True, id="private-address"),
        pytest.param("0.0.0.0", True, False, id="allowed-explicitly"),
    ],
)
def test_anonymous_refusal_only_on_reachable_addresses_without_consent(
    host: str, allow: bool, refused: bool
) -> None:
    """No token on an address other machines reach is refused unless allowed explicitly."""
    settings = _settings(api_host=host, allow_anonymous=allow)
    reason = anonymous_refusal(settings, TokenBook.from_settings(settings))
    assert (reason is not None) is refused
    if refused:
        assert reason is not None and "TASKDISPATCH_ALLOW_ANONYMOUS=true" in reason


def test_anonymous_refusal_never_with_a_token() -> None:
    """With a token the address does not matter: every request must carry it."""
    settings = _settings(api_host="0.0.0.0", api_token=ADMIN_TOKEN)
    assert anonymous_refusal(settings, TokenBook.from_settings(settings)) is None


@pytest.mark.parametrize(
    ("client", "allow", "allowed"),
    [
        pytest.param("127.0.0.1", False, True, id="local-client"),
        pytest.param("203.0.113.9", False, False, id="remote-client"),
        pytest.param(None, False, False, id="unknown-client"),
        pytest.param("203.0.113.9", True, True, id="remote-allowed-explicitly"),
    ],
)
def test_anonymous_allowed_from_loopback_clients_unless_allowed_everywhere(
    client: str | None, allow: bool, allowed: bool
) -> None:
    """Without tokens, only requests from the machine itself are served by default."""
    assert anonymous_allowed_from(_settings(allow_anonymous=allow), client) is allowed


def test_anonymous_principal_is_an_admin() -> None:
    """Where anonymous access is allowed, it may do everything (as before roles existed)."""
    assert ANONYMOUS.may(Role.ADMIN)
