"""Settings for the test suite.

The database comes from DATABASE_URL (SQLite in memory by default); .ci/run
runs the suite once on SQLite and once on PostgreSQL.
"""

import os

import dj_database_url

SECRET_KEY = "motorhead-django-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc assets, served locally
    "motorhead_django",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(os.environ.get("DATABASE_URL", "sqlite://:memory:")),
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The live_server fixture serves static files from here.
STATIC_URL = "static/"

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

# Local-only by default; tests that talk to a server point MOTORHEAD at one.
MOTORHEAD: dict = {}

CELERY_TASK_ALWAYS_EAGER = True
# Never Celery's default amqp://localhost (a real RabbitMQ listens there): the worker
# tests bring their own broker.
CELERY_BROKER_URL = "memory://"
