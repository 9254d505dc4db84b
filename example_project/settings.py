"""Settings for the example project, read from the environment.

Defaults are safe for a first run on a laptop: SQLite, Celery tasks run
eagerly in the web process, and local-only memory unless MOTORHEAD_URL is set
(`python3.11 dev.py example` starts the package's Motorhead-compatible test
server and sets it). See README.md for every variable.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from motorhead_django.schedule import beat_schedule

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY (or DEBUG=true for local development).")
    SECRET_KEY = "example-project-insecure-development-key"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc assets, served locally
    "motorhead_django",
    "example_project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=60,
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One pusher per session across worker processes needs PostgreSQL's advisory
# locks (docs/sync.md): on SQLite the worker runs a single process.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    CELERY_WORKER_CONCURRENCY = 1

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Celery: a real broker when CELERY_BROKER_URL is set, else tasks run eagerly.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_TASK_ALWAYS_EAGER = "CELERY_BROKER_URL" not in os.environ
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Beat's periodic sweep, pull and drift verify (celery -A example_project beat).
_sweep_interval = float(os.environ.get("MOTORHEAD_SWEEP_INTERVAL", "60"))
CELERY_BEAT_SCHEDULE = beat_schedule(
    sweep=_sweep_interval,
    pull=float(os.environ.get("MOTORHEAD_PULL_INTERVAL", "300")),
    verify=float(os.environ.get("MOTORHEAD_VERIFY_INTERVAL", "3600")),
)
CELERY_BEAT_SCHEDULE_FILENAME = os.environ.get(
    "CELERY_BEAT_SCHEDULE_FILENAME", str(BASE_DIR / "celerybeat-schedule")
)

# OpenAPI schema of the REST and Motorhead-compatible routes (drf-spectacular).
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "motorhead-django",
    "VERSION": "0.1.0",
    "PREPROCESSING_HOOKS": ["motorhead_django.api.schema.exclude_keyed_routes"],
    # The documentation pages' assets come from drf-spectacular-sidecar: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
}

MOTORHEAD = {
    "URL": os.environ.get("MOTORHEAD_URL") or None,
    "API_KEY": os.environ.get("MOTORHEAD_API_KEY") or None,
    "CLIENT_ID": os.environ.get("MOTORHEAD_CLIENT_ID") or None,
    "WINDOW_SIZE": int(os.environ.get("MOTORHEAD_WINDOW_SIZE", "12")),
    "SWEEP_INTERVAL": _sweep_interval,
    # /metrics (docs/operations.md); prometheus_client comes with the dev extras.
    "METRICS": True,
}
# The built-in summariser and embeddings, over any OpenAI-compatible API (docs/memory.md);
# `dev.py example` points them at its test server's /v1 routes; they then own the context.
if os.environ.get("MOTORHEAD_LLM_URL"):
    _llm = {"BASE_URL": os.environ["MOTORHEAD_LLM_URL"], "API_KEY": None}
    MOTORHEAD["SUMMARIZER"] = {**_llm, "MODEL": "gpt-4o-mini"}
    MOTORHEAD["EMBEDDINGS"] = {**_llm, "MODEL": "text-embedding-3-small"}
    MOTORHEAD["CONTEXT_OWNER"] = "local"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "motorhead_django": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    },
}
