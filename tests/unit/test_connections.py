"""Specification of taskdispatch.store.connections: URL masking, Sentinel URLs and what the broker
and the store make of them."""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection
from pydantic import ValidationError

from taskdispatch.settings import SENTINEL_PORT, SentinelUrl, Settings, parse_sentinel_url
from taskdispatch.store.connections import broker_transport_options, broker_url, masked

SECRET = "pw-s3cret"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:secret@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("redis://user:secret@localhost:6379/0", "redis://user:***@localhost:6379/0"),
        ("rediss://user:s3cr@t@redis.example:6380/1", "rediss://user:***@redis.example:6380/1"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://user@localhost:6379/0", "redis://user@localhost:6379/0"),
        ("unix:///tmp/r.sock", "unix:///tmp/r.sock"),
    ],
    ids=["password", "user+password", "rediss", "no-password", "user-only", "unix-socket"],
)
def test_masked_table_hides_only_password(url: str, expected: str) -> None:
    """masked replaces the password with *** and leaves everything else as is."""
    assert masked(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "sentinel://:pw@h1:26379/0;sentinel://h2:26380;sentinel://h3",
            "sentinel://:***@h1:26379/0;sentinel://h2:26380;sentinel://h3",
        ),
        (
            "sentinel://u:pw@h1/2?ssl_cert_reqs=required;sentinel://u:pw@h2/2",
            "sentinel://u:***@h1/2?ssl_cert_reqs=required;sentinel://u:***@h2/2",
        ),
        ("sentinel://h1;sentinel://h2", "sentinel://h1;sentinel://h2"),
    ],
    ids=["password-on-first", "password-on-every-part", "no-password"],
)
def test_masked_sentinel_list_hides_the_password_of_every_part(url: str, expected: str) -> None:
    """Each URL of a ';'-separated list is masked on its own; nothing else changes."""
    assert masked(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@host:notaport/0",
        f"redis://:{SECRET}@host:99999/0",
        f"sentinel://:{SECRET[:3]}/{SECRET[3:]}@h1:26379",
        f"sentinel://:{SECRET[:3]}?{SECRET[3:]}@h1",
        f"sentinel://:{SECRET[:3]};{SECRET[3:]}@h1;sentinel://h2",
        f"{SECRET}@h1",
    ],
    ids=["bad-port", "port-out-of-range", "slash", "question-mark", "semicolon", "no-scheme"],
)
def test_masked_malformed_url_never_raises_nor_shows_the_password(url: str) -> None:
    """An invalid URL is masked without raising, every piece of its password hidden."""
    shown = masked(url)
    assert SECRET[:3] not in shown and SECRET[3:] not in shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "sentinel://h1:26380;sentinel://h2;sentinel://10.0.0.3:1",
            SentinelUrl(sentinels=(("h1", 26380), ("h2", SENTINEL_PORT), ("10.0.0.3", 1))),
        ),
        (
            "sentinel://:pw@h1;sentinel://h2",
            SentinelUrl(sentinels=(("h1", 26379), ("h2", 26379)), password="pw"),
        ),
        (
            "sentinel://:pw@h1;sentinel://:pw@h2",
            SentinelUrl(sentinels=(("h1", 26379), ("h2", 26379)), password="pw"),
        ),
        (
            "sentinel://h1;sentinel://app:pw@h2/3",
            SentinelUrl(
                sentinels=(("h1", 26379), ("h2", 26379)), username="app", password="pw", db=3
            ),
        ),
        (
            "sentinel://:p%40ss%3Bword@h1",
            SentinelUrl(sentinels=(("h1", 26379),), password="p@ss;word"),
        ),
        (
            "sentinel://[::1]:26379;sentinel://[fe80::1]",
            SentinelUrl(sentinels=(("::1", 26379), ("fe80::1", 26379))),
        ),
        (
            "SENTINEL://h1/0 ; sentinel://h2/0;",
            SentinelUrl(sentinels=(("h1", 26379), ("h2", 26379))),
        ),
        (
            "sentinel://h1?ssl_cert_reqs=REQUIRED&ssl_ca_certs=/etc/ca.pem"
            "&ssl_check_hostname=true;sentinel://h2",
            SentinelUrl(
                sentinels=(("h1", 26379), ("h2", 26379)),
                tls={
                    "ssl_cert_reqs": "required",
                    "ssl_ca_certs": "/etc/ca.pem",
                    "ssl_check_hostname": True,
                },
            ),
        ),
        (
            "sentinel://h1?ssl_certfile=c.pem&ssl_keyfile=k.pem&ssl_cert_reqs=none",
            SentinelUrl(
                sentinels=(("h1", 26379),),
                tls={"ssl_cert_reqs": "none", "ssl_certfile": "c.pem", "ssl_keyfile": "k.pem"},
            ),
        ),
    ],
    ids=[
        "hosts-and-default-port",
        "password-on-one-part",
        "password-repeated",
        "user-password-db-on-a-later-part",
        "percent-encoded-password",
        "ipv6",
        "case-blanks-trailing-semicolon",
        "tls-options",
        "client-certificate",
    ],
)
def test_parse_sentinel_url_table_reads_every_part(url: str, expected: SentinelUrl) -> None:
    """Hosts in order, 26379 by default, credentials, database and TLS from any part."""
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "at least one sentinel://host:port"),
        (" ; ", "at least one sentinel://host:port"),
        (f"redis://:{SECRET}@h1;sentinel://h2", "part 1 of the Sentinel URL: each"),
        (f"sentinel://:{SECRET}@h1;h2:26379", "part 2 of the Sentinel URL: each"),
        (f"sentinel://:{SECRET}@h1:abc", "part 1 of the Sentinel URL: the port must be"),
        (f"sentinel://:{SECRET}@h1:0", "the port must be a number 1..65535"),
        (f"sentinel://h1;sentinel://:{SECRET}@h2:65536", "part 2 of the Sentinel URL: the port"),
        (f"sentinel://:{SECRET}@:26379", "part 1 of the Sentinel URL: no host name"),
        (f"sentinel://:{SECRET}@h%20st", "no host name or IP address"),
        (f"sentinel://:{SECRET[:3]}/{SECRET[3:]}@h1", "an '@' after the host"),
        (f"sentinel://:{SECRET[:3]}?{SECRET[3:]}@h1", "an '@' after the host"),
        (f"sentinel://:{SECRET[:3]}#{SECRET[3:]}@h1", "an '@' after the host"),
        (f"sentinel://:{SECRET[:3]};{SECRET[3:]}@h1", "part 1 of the Sentinel URL: the port"),
        (f"sentinel://:{SECRET}@h1/x", "(h1:26379): the path must be a database number"),
        (f"sentinel://:{SECRET}@h1/-1", "the path must be a database number"),
        (f"sentinel://:{SECRET}@h1?timeout=3", "(h1:26379): unknown option 'timeout'"),
        (f"sentinel://:{SECRET}@h1?ssl_cert_reqs=sometimes", "ssl_cert_reqs must be one of"),
        (f"sentinel://:{SECRET}@h1?ssl_check_hostname=yes", "ssl_check_hostname must be true"),
        (
            f"sentinel://:{SECRET}@h1;sentinel://:other@h2",
            "give different values of the password",
        ),
        ("sentinel://a:pw@h1;sentinel://b:pw@h2", "give different values of the user name"),
        ("sentinel://h1/1;sentinel://h2/2", "give different values of the database"),
        (
            "sentinel://h1?ssl_cert_reqs=none;sentinel://h2?ssl_cert_reqs=required",
            "give different values of the ssl_cert_reqs",
        ),
    ],
    ids=[
        "empty",
        "only-separators",
        "redis-scheme",
        "part-without-scheme",
        "port-not-a-number",
        "port-zero",
        "port-too-big",
        "no-host",
        "host-with-blank",
        "unencoded-slash-in-password",
        "unencoded-question-mark-in-password",
        "unencoded-hash-in-password",
        "unencoded-semicolon-in-password",
        "database-not-a-number",
        "database-negative",
        "unknown-option",
        "bad-cert-reqs",
        "bad-check-hostname",
        "conflicting-passwords",
        "conflicting-users",
        "conflicting-databases",
        "conflicting-tls",
    ],
)
def test_parse_sentinel_url_bad_input_refused_naming_the_fault_never_the_password(
    url: str, message: str
) -> None:
    """Each fault is refused saying what and where, never showing a piece of the password."""
    with pytest.raises(ValueError) as caught:
        parse_sentinel_url(url)
    text = str(caught.value)
    assert message in text
    assert SECRET[:3] not in text and SECRET[3:] not in text


def test_kombu_url_repeats_every_option_on_every_part() -> None:
    """Every part carries every option: kombu reads them from the part it fails over to."""
    parsed = parse_sentinel_url(
        "sentinel://app:p%40ss@h1:26380/2?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem;"
        "sentinel://h2;sentinel://[::1]:26381"
    )
    url = parsed.kombu_url()
    assert url.count(";") == 2
    parts = Connection(url).alt
    assert len(parts) == 3
    seen = []
    for part in parts:
        kombu = Connection(part)
        assert (kombu.userid, kombu.password, kombu.virtual_host) == ("app", "p@ss", "2")
        assert kombu.ssl["ssl_ca_certs"] == "/ca.pem"
        assert kombu.ssl["ssl_cert_reqs"].name == "CERT_REQUIRED"
        seen.append((kombu.hostname, kombu.port))
    assert seen == [("h1", 26380), ("h2", 26379), ("::1", 26381)]
    assert parse_sentinel_url(url) == parsed


def test_kombu_url_without_options_is_plain_hosts_and_database() -> None:
    """No credentials, no TLS: each part is just the Sentinel and the database."""
    url = parse_sentinel_url("sentinel://h1;sentinel://h2:1").kombu_url()
    assert url == "sentinel://h1:26379/0;sentinel://h2:1/0"


def test_master_options_carry_credentials_database_and_tls() -> None:
    """The master's connections get the URL's credentials, database and TLS options."""
    parsed = parse_sentinel_url("sentinel://u:pw@h1/4?ssl_cert_reqs=optional")
    assert parsed.master_options() == {
        "username": "u",
        "password": "pw",
        "db": 4,
        "ssl": True,
        "ssl_cert_reqs": "optional",
    }
    assert parse_sentinel_url("sentinel://h1").master_options() == {
        "username": None,
        "password": None,
        "db": 0,
    }


def test_broker_settings_sentinel_url_gives_kombu_url_and_transport_options() -> None:
    """A Sentinel broker gets kombu's URL form and the Sentinels' options; others as is."""
    settings = Settings(
        redis_url="sentinel://:pw@h1;sentinel://h2",
        redis_sentinel_master="queues",
        redis_sentinel_password="sentinel-pw",
    )
    assert broker_url(settings) == "sentinel://:pw@h1:26379/0;sentinel://:pw@h2:26379/0"
    options: dict[str, Any] = broker_transport_options(settings)
    assert options["master_name"] == "queues"
    assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert "ssl" not in options["sentinel_kwargs"]
    # One attempt per Sentinel: a dead one must not hold up the lookup (redis-py: 10).
    assert options["sentinel_kwargs"]["retry"].get_retries() == 0

    plain = Settings(redis_url="redis://h:6379/0", broker_url="redis://b:6379/1")
    assert broker_url(plain) == "redis://b:6379/1"
    assert broker_transport_options(plain) == {}


def test_broker_settings_separate_sentinel_broker_uses_its_own_url() -> None:
    """The broker may be a Sentinel set while the store is a plain Redis, and vice versa."""
    settings = Settings(
        redis_url="redis://h:6379/0", broker_url="sentinel://s1/1?ssl_cert_reqs=none"
    )
    assert broker_url(settings) == "sentinel://s1:26379/1?ssl_cert_reqs=none"
    options = broker_transport_options(settings)
    assert options["sentinel_kwargs"]["ssl"] is True
    assert options["sentinel_kwargs"]["ssl_cert_reqs"] == "none"


@pytest.mark.parametrize("name", ["redis_url", "broker_url"])
def test_settings_bad_sentinel_url_refused_naming_the_setting_not_the_password(name: str) -> None:
    """A malformed Sentinel URL fails at load, naming the setting and fault, not the password."""
    with pytest.raises(ValidationError) as caught:
        Settings(**{name: f"sentinel://:{SECRET}@h1:port"})
    text = str(caught.value)
    assert f"TASKDISPATCH_{name.upper()}" in text
    assert "the port must be a number 1..65535" in text
    assert SECRET not in text


def test_settings_urls_parsed_into_typed_values_read_by_every_client() -> None:
    """redis_sentinel and broker_sentinel hold the parsed URLs (None for one server), the
    same object however often they are read."""
    settings = Settings(redis_url="sentinel://h1;sentinel://h2:1/3", broker_url="redis://b/0")
    assert settings.redis_sentinel == parse_sentinel_url("sentinel://h1;sentinel://h2:1/3")
    assert settings.redis_sentinel is settings.redis_sentinel
    assert settings.broker_sentinel is None
    assert Settings(redis_url="redis://h/0").redis_sentinel is None
