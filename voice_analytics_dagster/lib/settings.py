"""The one place where environment variables become settings.

Every other module receives a :class:`Settings` (or calls :func:`get_settings`); nothing else
reads ``os.environ`` for configuration. Defaults serve the embedded demo. In production mode
(``VOICE_ANALYTICS_MODE=production``) the secrets have no defaults: the hash key and the BI
password must come from the environment, or start-up fails with a message naming the variable.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_DIR.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
# dbt's target folder (DbtProject's default target_path): the manifest, the partial-parse states,
# one folder per dagster-dbt invocation
DBT_TARGET_DIR = DBT_PROJECT_DIR / "target"

ENV_PREFIX = "VOICE_ANALYTICS_"


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def _env(environ: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = environ.get(ENV_PREFIX + name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{ENV_PREFIX}{name} must be an integer, got {raw!r}") from exc


def _env_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = _env(environ, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{ENV_PREFIX}{name} must be a number, got {raw!r}") from exc


def _env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _env(environ, name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{ENV_PREFIX}{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    email_from: str = "voice-analytics@localhost"
    email_to: tuple[str, ...] = ()
    # Warn-severity check failures alert too unless switched off.
    alert_on_warn: bool = True
    dagster_base_url: str = "http://127.0.0.1:3000"

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.email_to)


@dataclass(frozen=True)
class Settings:
    mode: str
    home: Path
    database_url: str | None
    database_name: str
    hash_key: str = field(repr=False)
    bi_role: str
    bi_password: str = field(repr=False)
    # Statistics offices commonly suppress cells under 10 (e.g. Eurostat, UK ONS guidance).
    min_cell_size: int = 10
    # Fraction of a file's rows that may be quarantined before the load check blocks
    # publication. 0 means any quarantined row blocks.
    quarantine_tolerance: float = 0.0
    # Turns below this ASR confidence count as "low confidence" in the industry KPIs.
    asr_low_confidence_threshold: float = 0.6
    landing_dir: Path | None = None
    schedule_cron: str = "0 2 * * *"
    schedule_timezone: str = "Africa/Kigali"
    lookback_days: int = 3
    # The first day of the session-day partitions (Dagster shows a status per day from here);
    # a session before it is built but belongs to no partition.
    first_session_day: str = "2024-01-01"
    # The abandonment model is trained again when the fact holds this many days of sessions past
    # the last training's last day, or its session count changed by more than this share;
    # between trainings a run scores the new and changed sessions with the last model.
    model_refit_days: int = 7
    model_refit_growth: float = 0.1
    # A training reads at most about this many sessions (a sample by a hash of session_id) and
    # the fitted model scores the rest in chunks: the model step's memory stays flat as the
    # history grows. A million sessions estimate a dozen coefficients far beyond what they need.
    model_max_training_sessions: int = 1_000_000
    report_dir: Path = Path(".")
    alerts: AlertSettings = AlertSettings()
    # How long a run waits for another run that holds the warehouse run lock (runlock.py) before
    # it is refused. An hour covers a daily run at 1.2 M sessions (a few minutes) many times over.
    run_lock_wait_seconds: float = 3600.0
    # A publication that would drop the fact's sessions by more than this share of the last one is
    # refused unless accepted (--accept-shrink). Daily deliveries only add sessions and a corrected
    # export removes a few; losing a fifth of them means a partial or wrong export.
    max_session_drop: float = 0.2
    # The embedded server also listens on 127.0.0.1:PORT for the BI role (warehouse_tcp.py); unset:
    # unix socket only. `voice-analytics superset up` turns it on by itself.
    embedded_tcp_port: int | None = None

    @property
    def is_embedded(self) -> bool:
        return self.database_url is None

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def demo_home(self) -> Path:
        """The demo's own home (embedded server, Dagster instance, secrets): synthetic data never
        enters the warehouse that holds real data."""
        return self.home / "demo"

    def with_database(self, url: str) -> Settings:
        return replace(self, database_url=url)


def _dev_secret(home: Path, name: str) -> str:
    """A random secret kept in the git-ignored home, stable across runs on this machine."""
    path = home / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value)
    tmp.chmod(0o600)
    os.replace(tmp, path)  # atomic: two processes racing keep one value
    return path.read_text().strip()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    mode = (_env(env, "MODE", "development") or "development").lower()
    if mode not in {"development", "production"}:
        raise SettingsError(f"{ENV_PREFIX}MODE must be development or production, got {mode!r}")
    home = Path(_env(env, "HOME", str(PROJECT_ROOT / ".voice_analytics"))).expanduser().resolve()

    hash_key = _env(env, "HASH_KEY")
    bi_password = _env(env, "BI_PASSWORD")
    if mode == "production":
        missing = [n for n, v in (("HASH_KEY", hash_key), ("BI_PASSWORD", bi_password)) if not v]
        if missing:
            raise SettingsError(
                "production mode needs secrets from the environment: "
                + ", ".join(ENV_PREFIX + m for m in missing)
            )
    if not hash_key:
        hash_key = _dev_secret(home, "hash_key")
    if not bi_password:
        bi_password = _dev_secret(home, "bi_password")
    if len(hash_key) < 16:
        raise SettingsError(f"{ENV_PREFIX}HASH_KEY must be at least 16 characters")

    landing = _env(env, "LANDING_DIR")
    report_dir = _env(env, "REPORT_DIR")
    email_to = tuple(a.strip() for a in (_env(env, "ALERT_EMAIL_TO", "") or "").split(",") if a.strip())
    alerts = AlertSettings(
        webhook_url=_env(env, "ALERT_WEBHOOK_URL"),
        smtp_host=_env(env, "SMTP_HOST"),
        smtp_port=_env_int(env, "SMTP_PORT", 25),
        smtp_user=_env(env, "SMTP_USER"),
        smtp_password=_env(env, "SMTP_PASSWORD"),
        smtp_starttls=_env_bool(env, "SMTP_STARTTLS", False),
        email_from=_env(env, "ALERT_EMAIL_FROM", "voice-analytics@localhost") or "",
        email_to=email_to,
        alert_on_warn=_env_bool(env, "ALERT_ON_WARN", True),
        dagster_base_url=(_env(env, "DAGSTER_URL", "http://127.0.0.1:3000") or "").rstrip("/"),
    )
    settings = Settings(
        mode=mode,
        home=home,
        database_url=_env(env, "DATABASE_URL"),
        database_name=_env(env, "DATABASE", "voice_analytics") or "voice_analytics",
        hash_key=hash_key,
        bi_role=_env(env, "BI_ROLE", "metabase") or "metabase",
        bi_password=bi_password,
        min_cell_size=_env_int(env, "MIN_CELL_SIZE", 10),
        quarantine_tolerance=_env_float(env, "QUARANTINE_TOLERANCE", 0.0),
        asr_low_confidence_threshold=_env_float(env, "ASR_LOW_CONFIDENCE", 0.6),
        landing_dir=Path(landing).expanduser().resolve() if landing else None,
        schedule_cron=_env(env, "SCHEDULE_CRON", "0 2 * * *") or "0 2 * * *",
        schedule_timezone=_env(env, "SCHEDULE_TIMEZONE", "Africa/Kigali") or "Africa/Kigali",
        lookback_days=_env_int(env, "LOOKBACK_DAYS", 3),
        first_session_day=_env(env, "FIRST_SESSION_DAY", "2024-01-01") or "2024-01-01",
        model_refit_days=_env_int(env, "MODEL_REFIT_DAYS", 7),
        model_refit_growth=_env_float(env, "MODEL_REFIT_GROWTH", 0.1),
        model_max_training_sessions=_env_int(env, "MODEL_MAX_TRAINING_SESSIONS", 1_000_000),
        report_dir=Path(report_dir).expanduser().resolve() if report_dir else home / "reports",
        alerts=alerts,
        run_lock_wait_seconds=_env_float(env, "RUN_LOCK_WAIT", 3600.0),
        max_session_drop=_env_float(env, "MAX_SESSION_DROP", 0.2),
        embedded_tcp_port=_env_int(env, "EMBEDDED_TCP_PORT", 0) or None,
    )
    try:
        dt.date.fromisoformat(settings.first_session_day)
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}FIRST_SESSION_DAY must be a date YYYY-MM-DD, "
                            f"got {settings.first_session_day!r}") from None
    if settings.min_cell_size < 1:
        raise SettingsError(f"{ENV_PREFIX}MIN_CELL_SIZE must be >= 1")
    if settings.model_refit_days < 0 or settings.model_refit_growth < 0:
        raise SettingsError(f"{ENV_PREFIX}MODEL_REFIT_DAYS and {ENV_PREFIX}MODEL_REFIT_GROWTH must be >= 0 "
                            "(0: train on every run)")
    if settings.model_max_training_sessions < 1000:
        raise SettingsError(f"{ENV_PREFIX}MODEL_MAX_TRAINING_SESSIONS must be >= 1000 (sessions a training reads)")
    if not 0.0 <= settings.quarantine_tolerance <= 1.0:
        raise SettingsError(f"{ENV_PREFIX}QUARANTINE_TOLERANCE must be between 0 and 1")
    if not 0.0 <= settings.max_session_drop <= 1.0:
        raise SettingsError(f"{ENV_PREFIX}MAX_SESSION_DROP must be between 0 and 1 (a share of the sessions)")
    if settings.run_lock_wait_seconds < 0:
        raise SettingsError(f"{ENV_PREFIX}RUN_LOCK_WAIT must be >= 0 (seconds; 0 refuses at once)")
    if settings.embedded_tcp_port is not None and not 1024 <= settings.embedded_tcp_port <= 65535:
        raise SettingsError(f"{ENV_PREFIX}EMBEDDED_TCP_PORT must be a port between 1024 and 65535")
    if not _is_identifier(settings.bi_role):
        raise SettingsError(f"{ENV_PREFIX}BI_ROLE must be a plain SQL identifier, got {settings.bi_role!r}")
    if not _is_identifier(settings.database_name):
        raise SettingsError(f"{ENV_PREFIX}DATABASE must be a plain SQL identifier")
    return settings


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and name.lower() == name and len(name) <= 63


_cached: Settings | None = None


def get_settings() -> Settings:
    """Settings of this process, read once (the environment does not change under us)."""
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached


def reset_settings_cache() -> None:
    global _cached
    _cached = None


@dataclass(frozen=True)
class SupersetSettings:
    """Where and how `voice-analytics superset` installs and serves Apache Superset
    (voice_analytics_dagster/tools/superset/). Read only by the superset commands: the pipeline
    never needs these, so production mode asks for their secrets only there."""

    venv: Path
    home: Path
    host: str
    port: int
    admin_user: str
    admin_password: str = field(repr=False)
    secret_key: str = field(repr=False)
    # the port the embedded warehouse opens on 127.0.0.1 for Superset when EMBEDDED_TCP_PORT is unset
    warehouse_tcp_port: int = 55432

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def load_superset_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> SupersetSettings:
    env = os.environ if environ is None else environ
    password = _env(env, "SUPERSET_ADMIN_PASSWORD")
    secret_key = _env(env, "SUPERSET_SECRET_KEY")
    if settings.mode == "production":
        missing = [n for n, v in (("SUPERSET_ADMIN_PASSWORD", password), ("SUPERSET_SECRET_KEY", secret_key)) if not v]
        if missing:
            raise SettingsError("production mode needs secrets from the environment: "
                                + ", ".join(ENV_PREFIX + m for m in missing))
    home = Path(_env(env, "SUPERSET_HOME", str(settings.home / "superset")) or "").expanduser().resolve()
    venv = Path(_env(env, "SUPERSET_VENV", str(home / "venv")) or "").expanduser().resolve()
    port = _env_int(env, "SUPERSET_PORT", 8088)
    if not 1 <= port <= 65535:
        raise SettingsError(f"{ENV_PREFIX}SUPERSET_PORT must be a port number, got {port}")
    return SupersetSettings(
        venv=venv,
        home=home,
        host=_env(env, "SUPERSET_HOST", "127.0.0.1") or "127.0.0.1",
        port=port,
        admin_user=_env(env, "SUPERSET_ADMIN_USER", "admin") or "admin",
        admin_password=password or _dev_secret(settings.home, "superset_admin_password"),
        secret_key=secret_key or _dev_secret(settings.home, "superset_secret_key"),
        warehouse_tcp_port=settings.embedded_tcp_port or 55432,
    )
