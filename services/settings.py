"""The one settings module: every environment variable is read and validated here."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from services.errors import ConfigurationError
from services.market.signals.registry import KINDS, EvaluationParams

log = logging.getLogger(__name__)

APP_ENVS = ("development", "test", "production")
# HS256 signs with SHA-256: a shorter key is weaker than the hash (RFC 7518 §3.2).
MIN_JWT_SECRET_BYTES = 32
# Seconds before retry 1, 2, …; after the last one a delivery is FAILED.
DEFAULT_RETRY_SCHEDULE = (60, 300, 1800, 7200, 18000, 36000, 36000)
# Anonymous clients' share of GRAPHQL_COST_PER_MINUTE (200,000 → 50,000).
ANONYMOUS_COST_SHARE = 0.25
DEFAULT_EMAIL_FROM = "Material Changes <alerts@material-changes.local>"
# Who push services contact about our VAPID key in development (production names its own).
DEFAULT_VAPID_SUBJECT = "mailto:alerts@material-changes.local"
# The forms push services (and py-vapid, which signs) accept as a VAPID `sub` claim.
_VAPID_SUBJECT = re.compile(
    r"mailto:[^@\s]+@(localhost|[\w-]+(\.[\w-]+)+)|https://(localhost|[\w-]+\.[\w.-]+)"
)
# The order of the P-256 group: a VAPID private key is a scalar in [1, n - 1].
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _url(
    env: Mapping[str, str], name: str, default: str | None, schemes: tuple[str, ...]
) -> str | None:
    value = _optional(env, name) or default
    if value is None:
        return None
    scheme = urlparse(value).scheme
    if scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ConfigurationError(f"{name} must start with one of {allowed}; got scheme {scheme!r}")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


LOG_FORMATS = ("text", "json")


def _log_level(env: Mapping[str, str]) -> str:
    level = (env.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigurationError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}; got {level!r}")
    return level


def _log_format(env: Mapping[str, str]) -> str:
    raw = env.get("LOG_FORMAT", "").strip() or "text"
    if raw.lower() not in LOG_FORMATS:
        raise ConfigurationError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}; got {raw!r}")
    return raw.lower()


def _directory(env: Mapping[str, str], name: str) -> Path | None:
    raw = _optional(env, name)
    if raw is None:
        return None
    path = Path(raw).resolve()
    if path.exists() and not path.is_dir():
        raise ConfigurationError(f"{name} must name a directory, got a file: {raw}")
    return path


@dataclass(frozen=True)
class Settings:
    """Validated configuration; build with `Settings.from_env()`."""

    app_env: str = "development"
    database_url: str | None = None
    data_dir: Path = Path(".data")
    object_store_url: str = "file://.data/objects"
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    dolthub_api_url: str = "https://www.dolthub.com/api/v1alpha1"
    dolthub_token: str | None = field(default=None, repr=False)
    dolthub_stocks_db: str = "post-no-preference/stocks"
    dolthub_earnings_db: str = "post-no-preference/earnings"
    dolthub_branch: str = "master"
    dolthub_rps: float = 2.0
    dolthub_timeout_seconds: float = 60.0
    dolthub_max_retries: int = 5
    dolthub_max_response_mb: float = 32.0
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_jwks_url: str | None = None
    jwt_jwks_file: str | None = None
    jwt_audience: str | None = "authenticated"
    jwt_issuer: str | None = None
    jwt_jwks_cache_seconds: float = 600.0
    cors_allow_origins: tuple[str, ...] = ("*",)
    graphql_introspection: bool = True
    backfill_lease_seconds: int = 1800
    backfill_years: int = 10
    symbols_max_age_days: int = 7
    # Each signal kind's parameters, read by the names its module gives them.
    evaluation: EvaluationParams = field(default_factory=EvaluationParams)
    evaluation_batch_size: int = 50
    evaluation_lease_seconds: int = 600
    # Watchers per alert-writing transaction: bounds how long one burst holds the
    # commit-order lock that every other alert writer needs.
    evaluation_alert_chunk: int = 2_000
    evaluation_processes: int = 1
    derived_history: bool = True
    alert_subscriber_queue: int = 256
    shutdown_grace_seconds: int = 10
    websocket_compression: bool = False
    webhook_retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    webhook_allow_private: bool = True
    smtp_url: str | None = field(default=None, repr=False)
    email_from: str = DEFAULT_EMAIL_FROM
    public_base_url: str = "http://127.0.0.1:8000"
    email_link_secret: str | None = field(default=None, repr=False)
    unsubscribe_token_days: int = 365
    # Web Push (VAPID): base64url of the 32-byte P-256 private key, and the contact URI.
    vapid_private_key: str | None = field(default=None, repr=False)
    vapid_subject: str = DEFAULT_VAPID_SUBJECT
    delivery_lease_seconds: int = 60
    delivery_batch_size: int = 50
    delivery_retention_days: int = 30
    response_cache_mb: float = 64.0
    graphql_max_cost: int = 20_000
    # A user's cost budget per minute; anonymous clients (by IP) get ANONYMOUS_COST_SHARE of it.
    graphql_cost_per_minute: int = 200_000
    ws_max_connections_per_user: int = 10
    ws_max_subscriptions_per_user: int = 20
    apq_store_mb: float = 8.0
    database_statement_cache_size: int = 100
    log_level: str = "INFO"
    log_format: str = "text"
    # Where `--workers N` keeps the workers' metric files; None: a fresh temporary directory.
    prometheus_multiproc_dir: Path | None = None

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        app_env = env.get("APP_ENV", "development").strip() or "development"
        if app_env not in APP_ENVS:
            raise ConfigurationError(
                f"APP_ENV must be one of {', '.join(APP_ENVS)}; got {app_env!r}"
            )
        production = app_env == "production"
        data_dir = Path(env.get("DATA_DIR", "").strip() or ".data").resolve()
        default_store = f"file://{data_dir / 'objects'}"
        origins_raw = env.get("CORS_ALLOW_ORIGINS")
        if origins_raw is None:
            origins: tuple[str, ...] = () if production else ("*",)
        else:
            origins = tuple(o.strip() for o in origins_raw.split(",") if o.strip())
        settings = cls(
            app_env=app_env,
            database_url=_url(env, "DATABASE_URL", None, ("postgres", "postgresql")),
            data_dir=data_dir,
            object_store_url=_url(env, "OBJECT_STORE_URL", default_store, ("file", "s3")) or "",
            s3_endpoint_url=_url(env, "S3_ENDPOINT_URL", None, ("http", "https")),
            aws_region=_optional(env, "AWS_REGION"),
            dolthub_api_url=(
                _url(env, "DOLTHUB_API_URL", cls.dolthub_api_url, ("http", "https")) or ""
            ).rstrip("/"),
            dolthub_token=_optional(env, "DOLTHUB_TOKEN"),
            dolthub_stocks_db=_optional(env, "DOLTHUB_STOCKS_DB") or cls.dolthub_stocks_db,
            dolthub_earnings_db=_optional(env, "DOLTHUB_EARNINGS_DB") or cls.dolthub_earnings_db,
            dolthub_branch=_optional(env, "DOLTHUB_BRANCH") or cls.dolthub_branch,
            dolthub_rps=_float(env, "DOLTHUB_RPS", 2.0, minimum=0.01),
            dolthub_timeout_seconds=_float(env, "DOLTHUB_TIMEOUT_SECONDS", 60.0, minimum=1.0),
            dolthub_max_retries=_int(env, "DOLTHUB_MAX_RETRIES", 5),
            dolthub_max_response_mb=_float(env, "DOLTHUB_MAX_RESPONSE_MB", 32.0, minimum=0.001),
            jwt_secret=_optional(env, "JWT_SECRET"),
            jwt_jwks_url=_url(env, "JWT_JWKS_URL", None, ("http", "https")),
            jwt_jwks_file=_optional(env, "JWT_JWKS_FILE"),
            jwt_audience=_optional(env, "JWT_AUDIENCE") or "authenticated",
            jwt_issuer=_optional(env, "JWT_ISSUER"),
            jwt_jwks_cache_seconds=_float(env, "JWT_JWKS_CACHE_SECONDS", 600.0, minimum=1.0),
            cors_allow_origins=origins,
            graphql_introspection=_flag(env, "GRAPHQL_INTROSPECTION", not production),
            backfill_lease_seconds=_int(env, "BACKFILL_LEASE_SECONDS", 1800, minimum=1),
            backfill_years=_int(env, "BACKFILL_YEARS", 10, minimum=1),
            symbols_max_age_days=_int(env, "SYMBOLS_MAX_AGE_DAYS", 7),
            evaluation=_evaluation_params(env),
            evaluation_batch_size=_int(env, "EVALUATION_BATCH_SIZE", 50, minimum=1),
            evaluation_lease_seconds=_int(env, "EVALUATION_LEASE_SECONDS", 600, minimum=1),
            evaluation_alert_chunk=_int(env, "EVALUATION_ALERT_CHUNK", 2_000, minimum=1),
            evaluation_processes=_int(env, "EVALUATION_PROCESSES", 1, minimum=1),
            derived_history=_flag(env, "DERIVED_HISTORY", True),
            alert_subscriber_queue=_int(env, "ALERT_SUBSCRIBER_QUEUE", 256, minimum=1),
            shutdown_grace_seconds=_int(env, "SHUTDOWN_GRACE_SECONDS", 10, minimum=1),
            websocket_compression=_flag(env, "WEBSOCKET_COMPRESSION", False),
            webhook_retry_schedule=_retry_schedule(env),
            webhook_allow_private=_flag(env, "WEBHOOK_ALLOW_PRIVATE", not production),
            smtp_url=_url(env, "SMTP_URL", None, ("smtp", "smtps")),
            email_from=_optional(env, "EMAIL_FROM") or DEFAULT_EMAIL_FROM,
            public_base_url=(
                _url(env, "PUBLIC_BASE_URL", cls.public_base_url, ("http", "https")) or ""
            ).rstrip("/"),
            email_link_secret=_optional(env, "EMAIL_LINK_SECRET"),
            unsubscribe_token_days=_int(env, "UNSUBSCRIBE_TOKEN_DAYS", 365, minimum=1),
            vapid_private_key=_vapid_private_key(env),
            vapid_subject=_vapid_subject(env, production),
            delivery_lease_seconds=_int(env, "DELIVERY_LEASE_SECONDS", 60, minimum=5),
            delivery_batch_size=_int(env, "DELIVERY_BATCH_SIZE", 50, minimum=1),
            delivery_retention_days=_int(env, "DELIVERY_RETENTION_DAYS", 30, minimum=1),
            response_cache_mb=_float(env, "RESPONSE_CACHE_MB", 64.0),
            graphql_max_cost=_int(env, "GRAPHQL_MAX_COST", 20_000, minimum=1),
            graphql_cost_per_minute=_int(env, "GRAPHQL_COST_PER_MINUTE", 200_000),
            ws_max_connections_per_user=_int(env, "WS_MAX_CONNECTIONS_PER_USER", 10, minimum=1),
            ws_max_subscriptions_per_user=_int(env, "WS_MAX_SUBSCRIPTIONS_PER_USER", 20, minimum=1),
            apq_store_mb=_float(env, "APQ_STORE_MB", 8.0),
            database_statement_cache_size=_int(env, "DATABASE_STATEMENT_CACHE_SIZE", 100),
            log_level=_log_level(env),
            log_format=_log_format(env),
            prometheus_multiproc_dir=_directory(env, "PROMETHEUS_MULTIPROC_DIR"),
        )
        if settings.jwt_jwks_file and not Path(settings.jwt_jwks_file).is_file():
            raise ConfigurationError(
                f"JWT_JWKS_FILE does not name a readable file: {settings.jwt_jwks_file}"
            )
        if production and not (
            settings.jwt_secret or settings.jwt_jwks_url or settings.jwt_jwks_file
        ):
            raise ConfigurationError(
                "APP_ENV=production requires JWT_SECRET, JWT_JWKS_URL or JWT_JWKS_FILE"
            )
        _check_jwt_secret_length(settings)
        _check_email(settings, env)
        if production and not settings.database_url:
            # The embedded server keeps its data on this machine's disk: a redeploy loses it.
            raise ConfigurationError(
                "APP_ENV=production requires DATABASE_URL (the embedded PostgreSQL is for "
                "development only)"
            )
        return settings


def _retry_schedule(env: Mapping[str, str]) -> tuple[int, ...]:
    raw = env.get("WEBHOOK_RETRY_SCHEDULE", "").strip()
    if not raw:
        return DEFAULT_RETRY_SCHEDULE
    try:
        delays = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigurationError(
            f"WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, got {raw!r}"
        ) from None
    if not 1 <= len(delays) <= 20 or min(delays) < 1:
        raise ConfigurationError(
            f"WEBHOOK_RETRY_SCHEDULE must list 1-20 delays of at least 1 second, got {raw!r}"
        )
    return delays


def _vapid_private_key(env: Mapping[str, str]) -> str | None:
    raw = _optional(env, "VAPID_PRIVATE_KEY")
    if raw is None:
        return None
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32 or not 0 < int.from_bytes(key, "big") < P256_ORDER:
        raise ConfigurationError(
            "VAPID_PRIVATE_KEY must be the base64url encoding of a 32-byte P-256 private key "
            "(docs/operations.md says how to generate one)"
        )
    return raw


def _vapid_subject(env: Mapping[str, str], production: bool) -> str:
    """A mailto: or https: URI; production sends push only with its own (and its key)."""
    subject = _optional(env, "VAPID_SUBJECT")
    key = _optional(env, "VAPID_PRIVATE_KEY")
    if production and bool(subject) != bool(key):
        raise ConfigurationError(
            "APP_ENV=production needs VAPID_PRIVATE_KEY and VAPID_SUBJECT together "
            "(both to send Web Push, neither to turn it off)"
        )
    if subject is None:
        return DEFAULT_VAPID_SUBJECT
    if not _VAPID_SUBJECT.fullmatch(subject):
        raise ConfigurationError(
            "VAPID_SUBJECT must be mailto:address@domain or https://host (no path), "
            f"got {subject!r}"
        )
    return subject


def _check_email(s: Settings, env: Mapping[str, str]) -> None:
    """Production email needs a sender address and a real secret for unsubscribe links."""
    if not (s.is_production and s.smtp_url):
        return
    if not _optional(env, "EMAIL_FROM"):
        raise ConfigurationError("SMTP_URL in production requires EMAIL_FROM")
    secret = s.email_link_secret or ""
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigurationError(
            f"SMTP_URL in production requires EMAIL_LINK_SECRET of at least "
            f"{MIN_JWT_SECRET_BYTES} bytes (it signs unsubscribe links)"
        )


def _check_jwt_secret_length(s: Settings) -> None:
    """An HS256 key shorter than the hash (RFC 7518 §3.2) makes every token forgeable offline.

    Refused in production; in development only logged, so a local experiment still runs.
    """
    if s.jwt_secret is None:
        return
    size = len(s.jwt_secret.encode())
    if size >= MIN_JWT_SECRET_BYTES:
        return
    message = (
        f"JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes for HS256, got {size} "
        "(e.g. `openssl rand -base64 48`)"
    )
    if s.is_production:
        raise ConfigurationError(message)
    log.warning("%s; accepted because APP_ENV is not production", message)


def _parameters(env: Mapping[str, str], params_type: type) -> dict[str, Any]:
    """The fields of a parameters dataclass that name an environment variable, as set."""
    values: dict[str, Any] = {}
    for item in fields(params_type):
        if "env" not in item.metadata:
            continue
        name, minimum = item.metadata["env"], item.metadata["minimum"]
        default: Any = item.default
        if isinstance(default, int):
            values[item.name] = _int(env, name, default, minimum=int(minimum))
        else:
            values[item.name] = _float(env, name, default, minimum=minimum)
    return values


def _evaluation_params(env: Mapping[str, str]) -> EvaluationParams:
    """Every kind's parameters from the environment; a kind's own check names the variables."""
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        params = kind.params_type(**_parameters(env, kind.params_type))
        check = getattr(params, "problem", None)
        problem = check() if check is not None else None
        if problem:
            raise ConfigurationError(problem)
        kinds[kind.name] = params
    return EvaluationParams(kinds=kinds, **_parameters(env, EvaluationParams))
