"""ENGAGE_* settings: defaults, every fault reported at once, the generated JWT secret."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from engage_adapters.bootstrap import build_services, derive_key
from engage_adapters.settings import SettingsError, load_settings, resolve_jwt_secret
from engage_core.testing import FakePasswordHasher

SECRET = "s" * 32


def test_defaults_follow_the_contract() -> None:
    settings = load_settings({})
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.bcrypt_rounds == 12
    assert settings.access_ttl == timedelta(seconds=900)
    assert settings.refresh_ttl == timedelta(days=14)
    assert settings.auth_rate_per_minute == 30
    assert settings.login_failures_per_email == 5
    assert settings.cors_origins == ()
    assert settings.jwt_algorithm == "HS256"
    assert settings.db_pool_size is None  # sized by `engage serve` for its workers


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "ENGAGE_DATABASE_URL": "postgresql://u:p@db/engage",
            "ENGAGE_BCRYPT_ROUNDS": "10",
            "ENGAGE_ACCESS_TTL": "5m",
            "ENGAGE_REFRESH_TTL": "7d",
            "ENGAGE_CORS_ORIGINS": "https://a.example, http://localhost:5173/",
            "ENGAGE_COOKIE_SECURE": "off",
            "ENGAGE_LOG_LEVEL": "debug",
            "ENGAGE_JWT_SECRET": SECRET,
            "ENGAGE_DB_POOL_SIZE": "4",
        }
    )
    assert settings.db_pool_size == 4
    assert settings.bcrypt_rounds == 10
    assert settings.access_ttl == timedelta(minutes=5)
    assert settings.refresh_ttl == timedelta(days=7)
    assert settings.cors_origins == ("https://a.example", "http://localhost:5173")
    assert settings.cookie_secure is False
    assert settings.log_level == "DEBUG"


def test_every_fault_is_reported_at_once_one_line_each() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "ENGAGE_JWT_SECRET": "too-short",
                "ENGAGE_BCRYPT_ROUNDS": "3",
                "ENGAGE_ACCESS_TTL": "soon",
                "ENGAGE_DATABASE_URL": "mysql://x",
                "ENGAGE_CORS_ORIGINS": "*",
                "ENGAGE_COOKIE_SECURE": "maybe",
                "ENGAGE_DB_POOL_SIZE": "0",
            }
        )
    faults = caught.value.faults
    assert len(faults) == 7
    names = ("JWT_SECRET", "BCRYPT_ROUNDS", "ACCESS_TTL", "DATABASE_URL", "CORS_ORIGINS")
    for name in (*names, "DB_POOL_SIZE"):
        assert any(f.startswith(f"ENGAGE_{name} ") for f in faults), name
    assert all("\n" not in f for f in faults)


@pytest.mark.parametrize("secret", ["", "x" * 31, "é" * 15])
def test_a_jwt_secret_under_32_bytes_is_refused(secret: str) -> None:
    with pytest.raises(SettingsError, match="ENGAGE_JWT_SECRET must be at least 32 bytes"):
        load_settings({"ENGAGE_JWT_SECRET": secret})


def test_a_refresh_ttl_shorter_than_the_access_ttl_is_refused() -> None:
    with pytest.raises(SettingsError, match="REFRESH_TTL"):
        load_settings({"ENGAGE_ACCESS_TTL": "1h", "ENGAGE_REFRESH_TTL": "10m"})


@pytest.mark.parametrize(
    ("host", "secure"),
    [
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
        ("0.0.0.0", True),  # noqa: S104
        ("10.0.0.5", True),
    ],
)
def test_cookies_are_secure_unless_bound_to_loopback(host: str, secure: bool) -> None:
    assert load_settings({}).cookies_secure_for(host) is secure
    assert load_settings({"ENGAGE_COOKIE_SECURE": "true"}).cookies_secure_for(host) is True


def test_without_a_secret_one_is_generated_once_with_mode_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings({"ENGAGE_DATA_DIR": str(tmp_path / "data")})
    first = resolve_jwt_secret(settings)
    assert len(first) >= 32
    assert "jwt_secret_generated" in caplog.text
    path = tmp_path / "data" / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    caplog.clear()
    assert resolve_jwt_secret(settings) == first
    assert "jwt_secret_generated" not in caplog.text


def test_a_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    settings = load_settings({"ENGAGE_DATA_DIR": str(tmp_path)})
    resolve_jwt_secret(settings)
    os.chmod(tmp_path / "jwt-secret", 0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        resolve_jwt_secret(settings)


def test_the_configured_secret_wins_over_the_file(tmp_path: Path) -> None:
    settings = load_settings({"ENGAGE_DATA_DIR": str(tmp_path), "ENGAGE_JWT_SECRET": SECRET})
    assert resolve_jwt_secret(settings) == SECRET.encode()
    assert not (tmp_path / "jwt-secret").exists()


def test_derived_keys_differ_by_purpose() -> None:
    assert derive_key(b"k" * 32, "cursor") != derive_key(b"k" * 32, "other")


async def test_the_composition_root_builds_working_services(tmp_path: Path) -> None:
    settings = load_settings({"ENGAGE_DATA_DIR": str(tmp_path), "ENGAGE_JWT_SECRET": SECRET})
    async with build_services(settings, storage="memory", hasher=FakePasswordHasher()) as services:
        await services.auth.sign_up(email="a@example.com", password="password-1")
        login = await services.auth.log_in(email="A@EXAMPLE.com", password="password-1")
        principal = await services.auth.authenticate(login.access_token)
        await services.metrics.record(principal.user_id, metric_type="clicks", metric_value=2)
        page = await services.metrics.list(principal.user_id)
    assert [m.metric_value.value for m in page.items] == [2]


def test_trusted_proxies_are_addresses_or_networks() -> None:
    settings = load_settings({"ENGAGE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1 ,fd00::/8,"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32", "fd00::/8"]
    assert load_settings({}).trusted_proxies == ()


@pytest.mark.parametrize("value", ["*", "10.0.0.300", "proxy.internal", "10.0.0.0/33"])
def test_a_bad_trusted_proxy_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"ENGAGE_TRUSTED_PROXIES": value})
    assert caught.value.faults[0].startswith("ENGAGE_TRUSTED_PROXIES ")


@pytest.mark.parametrize(
    ("value", "seconds"), [("0.25", 0.25), ("1", 1.0), ("1.5s", 1.5), ("250ms", 0.25)]
)
def test_the_redis_timeout_takes_seconds_or_milliseconds(value: str, seconds: float) -> None:
    assert load_settings({"ENGAGE_REDIS_TIMEOUT": value}).redis_timeout == seconds
    assert load_settings({}).redis_timeout == 0.25


@pytest.mark.parametrize("value", ["0", "5ms", "11", "soon", "-1"])
def test_a_redis_timeout_out_of_range_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"ENGAGE_REDIS_TIMEOUT": value})
    assert caught.value.faults[0].startswith("ENGAGE_REDIS_TIMEOUT ")


def test_the_http_buffer_is_granians_least_unless_raised() -> None:
    assert load_settings({}).http_buffer_bytes == 8192
    assert load_settings({"ENGAGE_HTTP_BUFFER_BYTES": "65536"}).http_buffer_bytes == 65536


@pytest.mark.parametrize("value", ["8191", "0", "big", str(2**24 + 1)])
def test_an_http_buffer_granian_cannot_take_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"ENGAGE_HTTP_BUFFER_BYTES": value})
    assert caught.value.faults[0].startswith("ENGAGE_HTTP_BUFFER_BYTES ")
