"""The HTTP policy is decided from settings by the composition root, once per worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from engage_adapters.bootstrap import derive_key, http_policy
from engage_adapters.settings import load_settings

SECRET = "s" * 32


@pytest.mark.parametrize(
    ("bind_host", "variables", "secure"),
    [
        ("127.0.0.1", {}, False),  # loopback: plain http is how it is reached
        ("::1", {}, False),
        ("0.0.0.0", {}, True),  # noqa: S104 - every interface: behind TLS
        ("0.0.0.0", {"ENGAGE_COOKIE_SECURE": "false"}, False),  # noqa: S104
        ("127.0.0.1", {"ENGAGE_COOKIE_SECURE": "true"}, True),
    ],
)
def test_cookies_are_secure_unless_served_on_loopback_or_told_otherwise(
    tmp_path: Path, bind_host: str, variables: dict[str, str], secure: bool
) -> None:
    settings = load_settings(
        {"ENGAGE_DATA_DIR": str(tmp_path), "ENGAGE_JWT_SECRET": SECRET, **variables}
    )
    assert http_policy(settings, bind_host=bind_host).cookie_secure is secure


def test_the_policy_carries_the_settings_and_a_csrf_key_of_its_own(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "ENGAGE_DATA_DIR": str(tmp_path),
            "ENGAGE_JWT_SECRET": SECRET,
            "ENGAGE_CORS_ORIGINS": "https://app.example.com",
            "ENGAGE_AUTH_RATE_PER_MINUTE": "7",
            "ENGAGE_TRUSTED_PROXIES": "10.0.0.0/8",
            "ENGAGE_WEB": "false",
        }
    )
    policy = http_policy(settings, bind_host="127.0.0.1")
    assert policy.cors_origins == ("https://app.example.com",)
    assert policy.auth_rate_per_minute == 7
    assert policy.trusted_proxies == settings.trusted_proxies != ()
    assert policy.web is False
    assert policy.csrf_secret == derive_key(SECRET.encode(), "csrf").hex()
    assert policy.csrf_secret != SECRET
