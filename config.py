"""Settings read from the environment: one class per kind of deployment."""
from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"
DEFAULT_SECRET_KEY = "dev-secret-key-change-me"


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def database_url(value: str) -> str:
    """Hosting platforms hand out ``postgres://`` URLs; SQLAlchemy talks to PostgreSQL through psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix):]
    return value


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in {"1", "true", "yes", "on", "oui"}


class Config:
    ENV_NAME = "development"
    SECRET_KEY = env_str("SECRET_KEY", DEFAULT_SECRET_KEY)
    SQLALCHEMY_DATABASE_URI = database_url(env_str("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'lapins.sqlite3'}"))
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"sqla+sqlite:///{INSTANCE_DIR / 'celery-broker.sqlite3'}")
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
    CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
    # Agents on shared office PCs: a session ends after a working half-day without activity.
    PERMANENT_SESSION_LIFETIME = env_int("SESSION_LIFETIME_MINUTES", 240) * 60
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_DURATION = 0
    WTF_CSRF_TIME_LIMIT = None  # the CSRF token lives as long as the session
    VENDOR_DIR = Path(env_str("VENDOR_DIR", str(BASE_DIR / "node_modules")))
    PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:5000")
    LOG_LEVEL = env_str("LOG_LEVEL", "INFO")


class DevelopmentConfig(Config):
    pass


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret-key"
    SQLALCHEMY_DATABASE_URI = database_url(env_str("TEST_DATABASE_URL", "sqlite://"))
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)


CONFIGS = {"development": DevelopmentConfig, "testing": TestingConfig, "production": ProductionConfig}


def get_config(name: str | None = None) -> type[Config]:
    name = name or os.environ.get("LAPINS_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"LAPINS_ENV inconnu : {name!r} (attendu : {', '.join(CONFIGS)})") from None
