"""Settings from ``ENGAGE_*`` environment variables, checked all at once.

``load_settings`` reports every fault in one ``SettingsError`` (one line per
fault), so an operator fixes them in one go. It does no I/O; the JWT secret
file is read or created by ``resolve_jwt_secret``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import platformdirs
from attrs import frozen

from engage_adapters.bcrypt_hasher import MAX_ROUNDS, MIN_ROUNDS
from engage_adapters.jwt_tokens import ALGORITHMS, KEY_BYTES, MIN_SECRET_BYTES
from engage_adapters.mail.message import DEFAULT_SENDER, parse_sender
from engage_adapters.mail.smtp import SmtpServer
from engage_adapters.redis_store import CLUSTER_SCHEMES, parse_cluster_url

log = logging.getLogger("engage.settings")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PREFIX = "ENGAGE_"
SECRET_FILE = "jwt-secret"
ENCRYPTION_KEY_FILE = "encryption-key"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DURATION = re.compile(r"(\d+)\s*(s|m|h|d)?", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
T = TypeVar("T")


class SettingsError(Exception):
    """One or more settings are wrong; ``faults`` holds one line for each."""

    def __init__(self, faults: list[str]) -> None:
        self.faults = faults
        super().__init__("invalid settings:\n" + "\n".join(f"  {f}" for f in faults))


# granian's least HTTP/1 buffer (the most it reads of a request at once).
DEFAULT_HTTP_BUFFER_BYTES = 8192


@frozen(kw_only=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    # How long one Redis connect or command may take before it counts as a failure.
    redis_timeout: float = 0.25
    data_dir: Path = Path(platformdirs.user_data_dir("engage", appauthor=False))
    jwt_secret: str | None = None
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "engage-suite"
    jwt_audience: str = "engage-suite"
    bcrypt_rounds: int = 12
    access_ttl: timedelta = timedelta(seconds=900)
    refresh_ttl: timedelta = timedelta(days=14)
    cors_origins: tuple[str, ...] = ()
    cookie_secure: bool | None = None  # None: on, unless bound to a loopback address
    sentry_dsn: str | None = None
    log_level: str = "INFO"
    auth_rate_per_minute: int = 30
    login_failures_per_email: int = 5
    # Database connections one process keeps at most; None: DEFAULT_DB_POOL_SIZE,
    # or fewer per worker when `engage serve` would otherwise pass max_connections.
    db_pool_size: int | None = None
    # Proxies whose X-Forwarded-For names the client (for per-address limits).
    trusted_proxies: tuple[Network, ...] = ()
    # Whether `engage serve` serves the web app's pages at / (off: the JSON API only).
    web: bool = True
    # Requests one API key may make per minute, and the live streams one user may hold open.
    key_rate_per_minute: int = 600
    streams_per_user: int = 10
    # granian's HTTP/1 buffer per connection: the largest request head (a 431 past it)
    # and the most of a body read at once. Its least, 8 KiB, costs an open connection
    # about 10 KiB less than granian's default (bench/README.md, "stream.py").
    http_buffer_bytes: int = DEFAULT_HTTP_BUFFER_BYTES
    # The mail server (None: each message is written to DATA_DIR/outbox/ instead).
    smtp_url: str | None = None
    mail_from: str = DEFAULT_SENDER
    # The base of the links in mails (None: the served origin, http://127.0.0.1:8000).
    public_url: str | None = None
    require_verified_email: bool = False
    # The wait before a failed mail's first retry; doubled for each further one.
    mail_retry_delay: float = 30.0
    # Reset or verification mails one email or account may ask for an hour (twice as
    # many per client address).
    mail_rate_per_hour: int = 5
    # Keys that seal TOTP secrets (the first seals, all open); None: one kept in DATA_DIR.
    encryption_keys: tuple[str, ...] | None = None
    activity_days: int = 90
    # Mail a notice when a sign-in comes from a device the account has not used before.
    new_device_notice: bool = True

    def cookies_secure_for(self, host: str) -> bool:
        """Whether cookies get the Secure flag when serving on ``host``."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return not _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- parsers: each takes the raw text and returns a value or raises ValueError ---


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?\d{1,9}", text.strip()):
            raise ValueError(f"must be a whole number from {low} to {high}")
        number = int(text)
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number

    return parse


def _duration(low: timedelta, high: timedelta) -> Callable[[str], timedelta]:
    def parse(text: str) -> timedelta:
        match = _DURATION.fullmatch(text.strip().lower())
        if not match:
            raise ValueError("must be a duration such as 900, 900s, 15m, 12h or 14d")
        value = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
        if not low <= value <= high:
            raise ValueError(f"must be from {_human(low)} to {_human(high)}")
        return value

    return parse


_SHORT_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s)?", re.ASCII)


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        match = _SHORT_DURATION.fullmatch(text.strip().lower())
        if not match:
            raise ValueError("must be a duration such as 0.25, 0.25s or 250ms")
        value = float(match[1]) / (1000 if match[2] == "ms" else 1)
        if not low <= value <= high:
            raise ValueError(f"must be from {low:g} s to {high:g} s")
        return value

    return parse


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        text = text.strip()
        parts = urlsplit(text)
        if parts.scheme not in schemes:
            raise ValueError(
                f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        return text

    return parse


def _redis_url(text: str) -> str:
    """One server's URL, or a Redis Cluster's (``redis+cluster://host:port,host:port``)."""
    text = _url("redis", "rediss", "unix", *CLUSTER_SCHEMES)(text)
    parse_cluster_url(text)  # a malformed cluster URL says what is wrong with it
    return text


def _smtp_url(text: str) -> str:
    SmtpServer.parse(text)  # says what is wrong with it
    return text.strip()


def _public_url(text: str) -> str:
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be the site's address, such as https://engage.example.com")
    if parts.query or parts.fragment:
        raise ValueError("must have no query or fragment")
    return url


def _origins(text: str) -> tuple[str, ...]:
    origins = []
    for raw in text.split(","):
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        if origin == "*":
            raise ValueError("may not be '*': cookies are sent with credentials")
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise ValueError(f"{raw.strip()!r} is not an origin such as https://app.example.com")
        origins.append(origin)
    return tuple(origins)


def _networks(text: str) -> tuple[Network, ...]:
    networks = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            raise ValueError("may not be '*': any client could then choose its own address")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{item!r} is not an IP address or network such as 10.0.0.0/8"
            ) from None
    return tuple(networks)


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level


def _algorithm(text: str) -> str:
    if text.strip() not in ALGORITHMS:
        raise ValueError(f"must be one of {', '.join(ALGORITHMS)}")
    return text.strip()


def _secret(text: str) -> str:
    if len(text.encode("utf-8")) < MIN_SECRET_BYTES:
        raise ValueError(
            f"must be at least {MIN_SECRET_BYTES} bytes; generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return text


def _secrets(text: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in text.split(",") if key.strip())
    if not keys:
        raise ValueError("must hold at least one key (several: comma-separated, newest first)")
    for key in keys:
        _secret(key)
    return keys


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _path(text: str) -> Path:
    return Path(_text(text)).expanduser()


_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "DATABASE_URL": ("database_url", _url("postgresql", "postgres")),
    "REDIS_URL": ("redis_url", _redis_url),
    "REDIS_TIMEOUT": ("redis_timeout", _seconds(0.01, 10.0)),
    "DATA_DIR": ("data_dir", _path),
    "JWT_SECRET": ("jwt_secret", _secret),
    "JWT_ALGORITHM": ("jwt_algorithm", _algorithm),
    "JWT_ISSUER": ("jwt_issuer", _text),
    "JWT_AUDIENCE": ("jwt_audience", _text),
    "BCRYPT_ROUNDS": ("bcrypt_rounds", _integer(MIN_ROUNDS, MAX_ROUNDS)),
    "ACCESS_TTL": ("access_ttl", _duration(timedelta(seconds=30), timedelta(days=1))),
    "REFRESH_TTL": ("refresh_ttl", _duration(timedelta(minutes=5), timedelta(days=365))),
    "CORS_ORIGINS": ("cors_origins", _origins),
    "COOKIE_SECURE": ("cookie_secure", _boolean),
    "SENTRY_DSN": ("sentry_dsn", _url("http", "https")),
    "LOG_LEVEL": ("log_level", _log_level),
    "AUTH_RATE_PER_MINUTE": ("auth_rate_per_minute", _integer(1, 1_000_000)),
    "LOGIN_FAILURES_PER_EMAIL": ("login_failures_per_email", _integer(1, 1_000)),
    "DB_POOL_SIZE": ("db_pool_size", _integer(1, 1_000)),
    "TRUSTED_PROXIES": ("trusted_proxies", _networks),
    "WEB": ("web", _boolean),
    "KEY_RATE_PER_MINUTE": ("key_rate_per_minute", _integer(1, 1_000_000)),
    "STREAMS_PER_USER": ("streams_per_user", _integer(1, 10_000)),
    "HTTP_BUFFER_BYTES": ("http_buffer_bytes", _integer(DEFAULT_HTTP_BUFFER_BYTES, 2**24)),
    "SMTP_URL": ("smtp_url", _smtp_url),
    "MAIL_FROM": ("mail_from", parse_sender),
    "PUBLIC_URL": ("public_url", _public_url),
    "REQUIRE_VERIFIED_EMAIL": ("require_verified_email", _boolean),
    "MAIL_RETRY_DELAY": ("mail_retry_delay", _seconds(0.01, 3600.0)),
    "MAIL_RATE_PER_HOUR": ("mail_rate_per_hour", _integer(1, 1_000_000)),
    "ENCRYPTION_KEY": ("encryption_keys", _secrets),
    "ACTIVITY_DAYS": ("activity_days", _integer(1, 3650)),
    "NEW_DEVICE_NOTICE": ("new_device_notice", _boolean),
}
KNOWN_VARIABLES = tuple(PREFIX + name for name in _FIELDS)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``ENGAGE_*`` variables; ``SettingsError`` lists every fault."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    faults: list[str] = []
    for name, (attribute, parse) in _FIELDS.items():
        raw = env.get(PREFIX + name)
        if raw is None or (raw.strip() == "" and name != "JWT_SECRET"):
            continue
        if name != "DATA_DIR" and not _is_unicode(raw):
            # Bytes that were not UTF-8 (held as lone surrogates) fail deep in a driver.
            faults.append(f"{PREFIX}{name} is not valid UTF-8")
            continue
        try:
            values[attribute] = parse(raw)
        except ValueError as exc:
            faults.append(f"{PREFIX}{name} {exc}")
    secret, algorithm = values.get("jwt_secret"), values.get("jwt_algorithm", "HS256")
    if secret and len(secret.encode("utf-8")) < KEY_BYTES[algorithm]:
        faults.append(
            f"{PREFIX}JWT_SECRET must be at least {KEY_BYTES[algorithm]} bytes for {algorithm}"
        )
    access, refresh = values.get("access_ttl"), values.get("refresh_ttl")
    if access and refresh and refresh < access:
        faults.append(f"{PREFIX}REFRESH_TTL must not be shorter than {PREFIX}ACCESS_TTL")
    if "smtp_url" in values and not env.get(PREFIX + "MAIL_FROM", "").strip():
        # A real mail server refuses mail from the placeholder sender.
        faults.append(f"{PREFIX}MAIL_FROM must be set when {PREFIX}SMTP_URL is")
    if faults:
        raise SettingsError(faults)
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in KNOWN_VARIABLES)
    for name in unknown:
        log.warning(
            "settings.unknown_variable %s (ignored; known: %s)", name, ", ".join(KNOWN_VARIABLES)
        )
    return Settings(**values)


def resolve_jwt_secret(settings: Settings) -> bytes:
    """The configured secret, or the one kept in the data directory (created once,
    mode 0600, with a warning)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.encode("utf-8")
    path = settings.data_dir / SECRET_FILE
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            _create_secret_file(path)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SettingsError(
                [f"{path} must not be readable by others (mode {mode:o}); run chmod 600"]
            )
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError([f"cannot use the JWT secret file {path}: {exc.strerror}"]) from None
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise SettingsError(
            [
                f"{path} holds a secret under {MIN_SECRET_BYTES} bytes; "
                "delete it or set ENGAGE_JWT_SECRET"
            ]
        )
    return secret.encode("utf-8")


def resolve_encryption_keys(settings: Settings) -> list[bytes]:
    """The keys that seal secrets at rest (the first seals, every one opens): the
    configured ones, or one kept in the data directory (created once, mode 0600,
    with a warning), as for the JWT secret."""
    if settings.encryption_keys is not None:
        return [key.encode("utf-8") for key in settings.encryption_keys]
    path = settings.data_dir / ENCRYPTION_KEY_FILE
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            _create_secret_file(path, variable="ENCRYPTION_KEY")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SettingsError(
                [f"{path} must not be readable by others (mode {mode:o}); run chmod 600"]
            )
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(
            [f"cannot use the encryption key file {path}: {exc.strerror}"]
        ) from None
    if len(key.encode("utf-8")) < MIN_SECRET_BYTES:
        raise SettingsError(
            [f"{path} holds a key under {MIN_SECRET_BYTES} bytes; set ENGAGE_ENCRYPTION_KEY"]
        )
    return [key.encode("utf-8")]


def _create_secret_file(path: Path, *, variable: str = "JWT_SECRET") -> None:
    """Write a new random secret, atomically: a concurrent process sees all of it or none."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # fails if another process won the race: we use theirs
    except FileExistsError:
        return
    finally:
        temporary.unlink(missing_ok=True)
    log.warning(
        "settings.%s_generated: no ENGAGE_%s, so a random one was written "
        "to %s; every process of this deployment must share it",
        variable.lower(),
        variable,
        path,
    )
