"""System checks for the ``MOTORHEAD`` setting.

Ids are stable: ``motorhead_django.E001``… for errors that stop the project
from starting, ``motorhead_django.W001``… for setups that work but are unsafe.
Each function checks one concern. See docs/settings.md for every key.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from numbers import Real
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .conf import DEFAULTS, LLM_DEFAULTS, LLM_REQUIRED, STORAGES

_NAMESPACE = "motorhead_django"


def _id(code: str) -> str:
    return f"{_NAMESPACE}.{code}"


def _user_settings() -> dict[str, Any] | None:
    """The MOTORHEAD dict, or None when it is not a dict (E001 reports that)."""
    value = getattr(settings, "MOTORHEAD", {})
    return value if isinstance(value, dict) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


@register(Tags.compatibility)
def check_setting_is_dict(**kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, "MOTORHEAD", {})
    if isinstance(value, dict):
        return []
    return [
        Error(
            f"MOTORHEAD must be a dict, not {type(value).__name__}.",
            hint='For example MOTORHEAD = {"URL": "http://127.0.0.1:8080"}.',
            id=_id("E001"),
        )
    ]


@register(Tags.compatibility)
def check_unknown_keys(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    messages: list[CheckMessage] = []
    for key in sorted(set(user) - set(DEFAULTS), key=str):
        close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        hint = f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(DEFAULTS)}."
        messages.append(
            Warning(f"MOTORHEAD has an unknown key {key!r}.", hint=hint, id=_id("W001"))
        )
    return messages


@register(Tags.compatibility)
def check_url(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings()
    if user is None:
        return []
    url = user.get("URL")
    if url is None or url == "":
        if user.get("SYNC_ENABLED") is True:
            return [
                Error(
                    "MOTORHEAD['SYNC_ENABLED'] is True but no MOTORHEAD['URL'] is set.",
                    hint="Set the Motorhead server's base URL, or leave SYNC_ENABLED unset "
                    "to run in local-only mode.",
                    id=_id("E003"),
                )
            ]
        return []
    if not isinstance(url, str):
        return [Error("MOTORHEAD['URL'] must be a string.", id=_id("E002"))]
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        return [Error(f"MOTORHEAD['URL'] is not a valid URL: {exc}.", id=_id("E002"))]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [
            Error(
                "MOTORHEAD['URL'] must be an http:// or https:// URL with a host.",
                hint='For example "http://127.0.0.1:8080" or '
                '"https://api.getmetal.io/v1/motorhead".',
                id=_id("E002"),
            )
        ]
    if parts.query or parts.fragment:
        return [
            Error(
                "MOTORHEAD['URL'] must not have a query string or fragment.",
                hint="Give the base URL only; the client appends /sessions/... to it.",
                id=_id("E002"),
            )
        ]
    if parts.username or parts.password:
        return [
            Error(
                "MOTORHEAD['URL'] must not carry credentials.",
                hint="Put them in MOTORHEAD['API_KEY'] and MOTORHEAD['CLIENT_ID'] instead.",
                id=_id("E002"),
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_credentials_over_http(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    url = user.get("URL")
    if user.get("API_KEY") and isinstance(url, str) and url.startswith("http://"):
        return [
            Warning(
                "MOTORHEAD['API_KEY'] is sent over plain http://.",
                hint="Use an https:// URL so the key is not sent in clear text.",
                id=_id("W002"),
            )
        ]
    return []


@register(Tags.compatibility)
def check_credentials(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    messages: list[CheckMessage] = []
    for key in ("API_KEY", "CLIENT_ID"):
        if user.get(key) is not None and not isinstance(user[key], str):
            messages.append(Error(f"MOTORHEAD[{key!r}] must be a string.", id=_id("E004")))
    if messages:
        return messages
    if bool(user.get("API_KEY")) != bool(user.get("CLIENT_ID")):
        messages.append(
            Error(
                "MOTORHEAD['API_KEY'] and MOTORHEAD['CLIENT_ID'] go together.",
                hint="The hosted Motorhead needs both; a self-hosted server needs neither.",
                id=_id("E004"),
            )
        )
    return messages


@register(Tags.compatibility)
def check_timeouts(**kwargs: Any) -> list[CheckMessage]:
    return list(
        _positive_numbers(
            (
                "CONNECT_TIMEOUT",
                "READ_TIMEOUT",
                "RETRY_BACKOFF",
                "RETRY_BACKOFF_MAX",
                "COMPACTION_TIMEOUT",
                "SWEEP_INTERVAL",
                "ACTIVE_PERIOD",
            ),
            code="E005",
        )
    )


def _positive_numbers(keys: Iterable[str], code: str) -> Iterable[CheckMessage]:
    user = _user_settings() or {}
    for key in keys:
        if key in user and not (_is_number(user[key]) and user[key] > 0):
            yield Error(
                f"MOTORHEAD[{key!r}] must be a positive number of seconds, not {user[key]!r}.",
                id=_id(code),
            )


def _positive_int(user: dict[str, Any], key: str, minimum: int = 1) -> bool:
    value = user.get(key, DEFAULTS[key])
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@register(Tags.compatibility)
def check_window(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    if not _positive_int(user, "WINDOW_SIZE"):
        return [
            Error(
                f"MOTORHEAD['WINDOW_SIZE'] must be a whole number >= 1, "
                f"not {user['WINDOW_SIZE']!r}.",
                hint="Use the server's MOTORHEAD_MAX_WINDOW_SIZE (12 by default).",
                id=_id("E006"),
            )
        ]
    window = user.get("WINDOW_SIZE", DEFAULTS["WINDOW_SIZE"])
    batch = user.get("BATCH_SIZE")
    if batch is None:
        return []
    if not _positive_int(user, "BATCH_SIZE") or batch > window + 1:
        return [
            Error(
                f"MOTORHEAD['BATCH_SIZE'] must be a whole number from 1 to WINDOW_SIZE + 1 "
                f"({window + 1}), not {batch!r}.",
                hint="A larger batch loses messages on the server: it keeps only "
                "WINDOW_SIZE + 1 of them before it summarises.",
                id=_id("E007"),
            )
        ]
    return []


@register(Tags.compatibility)
def check_limits(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    messages: list[CheckMessage] = []
    for key in ("MAX_CONTENT_LENGTH", "MAX_MESSAGES_PER_REQUEST", "SWEEP_LIMIT"):
        if not _positive_int(user, key):
            messages.append(
                Error(f"MOTORHEAD[{key!r}] must be a whole number >= 1.", id=_id("E008"))
            )
    if not _positive_int(user, "MAX_RETRIES", minimum=0):
        messages.append(
            Error("MOTORHEAD['MAX_RETRIES'] must be a whole number >= 0.", id=_id("E008"))
        )
    return messages


@register(Tags.compatibility)
def check_text_options(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    messages: list[CheckMessage] = []
    namespace = user.get("NAMESPACE", "")
    if namespace is not None and not isinstance(namespace, str):
        messages.append(Error("MOTORHEAD['NAMESPACE'] must be a string.", id=_id("E009")))
    for key in ("TASK_QUEUE", "USER_AGENT", "SEARCH_CONFIG"):
        if user.get(key) is not None and not isinstance(user[key], str):
            messages.append(Error(f"MOTORHEAD[{key!r}] must be a string.", id=_id("E009")))
    roles = user.get("ALLOWED_ROLES")
    if roles is not None and (
        isinstance(roles, str)
        or not isinstance(roles, Iterable)
        or not roles
        or not all(isinstance(role, str) for role in roles)
    ):
        messages.append(
            Error(
                "MOTORHEAD['ALLOWED_ROLES'] must be None or a non-empty list of strings.",
                hint='For example ["Human", "AI", "System"].',
                id=_id("E009"),
            )
        )
    elif roles is not None or isinstance(namespace, str):
        messages += _unstorable_text(namespace, roles)
    return messages


def _unstorable_text(namespace: Any, roles: Any) -> list[CheckMessage]:
    # Values the memory core would refuse on every write (see docs/api.md, Validation).
    from .exceptions import MotorheadValidationError
    from .memory import text_problem, validate_role

    messages: list[CheckMessage] = []
    problem = text_problem(namespace, control=False) if isinstance(namespace, str) else None
    if problem is not None:
        messages.append(Error(f"MOTORHEAD['NAMESPACE']: {problem}", id=_id("E009")))
    for role in roles or ():
        try:
            validate_role(role)
        except MotorheadValidationError as exc:
            why = " ".join(exc.errors.values())
            messages.append(
                Error(f"MOTORHEAD['ALLOWED_ROLES'] holds {role!r}: {why}", id=_id("E009"))
            )
    return messages


@register(Tags.compatibility)
def check_flags(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    return [
        Error(f"MOTORHEAD[{key!r}] must be True or False.", id=_id("E010"))
        for key in (
            "SYNC_ENABLED",
            "LONG_TERM_MEMORY",
            "DELETE_REMOTE",
            "COMPAT_ALLOW_ANONYMOUS",
            "PULL_AFTER_PUSH",
            "METRICS",
        )
        if key in user
        and not isinstance(user[key], bool)
        and not (key == "SYNC_ENABLED" and user[key] is None)
    ]


@register(Tags.security, deploy=True)
def check_anonymous_compat(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    if user.get("COMPAT_ALLOW_ANONYMOUS") is True:
        return [
            Warning(
                "MOTORHEAD['COMPAT_ALLOW_ANONYMOUS'] is True: anyone who can reach the "
                "Motorhead-compatible routes can read and write the sessions that have no owner.",
                hint="Create API keys (manage.py motorhead_apikey) and leave it False.",
                id=_id("W003"),
            )
        ]
    return []


@register(Tags.compatibility)
def check_summarizer(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    path = user.get("SUMMARIZER")
    if path is None:
        return []
    if isinstance(path, dict):
        return _check_endpoint("SUMMARIZER", path, "E020")
    try:
        function = import_string(path) if isinstance(path, str) else None
    except ImportError as exc:
        return [
            Error(f"MOTORHEAD['SUMMARIZER'] cannot be imported: {exc}.", id=_id("E011")),
        ]
    if not callable(function):
        return [
            Error(
                "MOTORHEAD['SUMMARIZER'] must be the dotted path of a callable.",
                hint='For example "myapp.memory.summarize" taking (previous, messages).',
                id=_id("E011"),
            )
        ]
    return []


@register(Tags.compatibility)
def check_embeddings(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    value = user.get("EMBEDDINGS")
    if value is None:
        return []
    if not isinstance(value, dict):
        return [
            Error(
                "MOTORHEAD['EMBEDDINGS'] must be a dict or None.",
                hint='For example {"BASE_URL": "https://api.openai.com/v1", "API_KEY": "...", '
                '"MODEL": "text-embedding-3-small"}.',
                id=_id("E021"),
            )
        ]
    return _check_endpoint("EMBEDDINGS", value, "E021")


@register(Tags.compatibility)
def check_vector_storage(**kwargs: Any) -> list[CheckMessage]:
    """EMBEDDINGS["STORAGE"]: a known value; "pgvector" needs its package and PostgreSQL."""
    from . import vectors

    value = (_user_settings() or {}).get("EMBEDDINGS")
    storage = value.get("STORAGE", "auto") if isinstance(value, dict) else "auto"
    if storage not in STORAGES:
        return [
            Error(
                f"MOTORHEAD['EMBEDDINGS']['STORAGE'] must be one of {', '.join(STORAGES)}; "
                f"got {storage!r}.",
                id=_id("E050"),
            )
        ]
    if storage != "pgvector":
        return []
    errors: list[CheckMessage] = []
    if not vectors.package_available():
        errors.append(
            Error(
                "MOTORHEAD['EMBEDDINGS']['STORAGE'] is \"pgvector\" but the pgvector package "
                "is not installed.",
                hint='pip install "motorhead-django[pgvector]"',
                id=_id("E051"),
            )
        )
    from django.db import connections

    default = connections["default"]  # its vendor, without connecting
    engine = default.settings_dict.get("ENGINE", "")
    if default.vendor != "postgresql":
        errors.append(
            Error(
                "MOTORHEAD['EMBEDDINGS']['STORAGE'] is \"pgvector\" but the default database "
                f"is not PostgreSQL ({engine or 'none'}).",
                hint='Use "auto" (pgvector where it is available) or "portable".',
                id=_id("E051"),
            )
        )
    return errors


@register(Tags.database)
def check_pgvector_database(
    databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """With STORAGE "pgvector", the server has the extension (a check that reads the database)."""
    from django.db import connections

    from . import vectors

    value = (_user_settings() or {}).get("EMBEDDINGS")
    if not isinstance(value, dict) or value.get("STORAGE") != "pgvector":
        return []
    if "default" not in (databases or ()) or connections["default"].vendor != "postgresql":
        return []  # check_vector_storage said so
    connection = connections["default"]
    if not vectors.extension_available(connection):
        return [
            Error(
                "MOTORHEAD['EMBEDDINGS']['STORAGE'] is \"pgvector\" but this PostgreSQL server "
                "has no vector extension.",
                hint='Install pgvector on the server, or use "auto" or "portable".',
                id=_id("E052"),
            )
        ]
    if not vectors.has_column(connection):
        # Not an error: migrate, which runs this check first, is what adds the column.
        return [
            Warning(
                "pgvector is available but the embeddings table has no vector column yet.",
                hint="Run migrate; if motorhead_django's migrations ran before the extension "
                "was installed, run motorhead_django.vectors.install(connection) once.",
                id=_id("W050"),
            )
        ]
    return []


@register(Tags.compatibility)
def check_context_owner(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    owner = user.get("CONTEXT_OWNER", DEFAULTS["CONTEXT_OWNER"])
    if owner not in ("server", "local"):
        return [
            Error(
                f'MOTORHEAD[\'CONTEXT_OWNER\'] must be "server" or "local", not {owner!r}.',
                hint='"server": Motorhead\'s summary (the default); '
                '"local": the built-in summariser.',
                id=_id("E022"),
            )
        ]
    return []


def _check_endpoint(name: str, value: dict[str, Any], code: str) -> list[CheckMessage]:
    """A SUMMARIZER or EMBEDDINGS dict: known keys, the required ones, their types."""
    errors: list[CheckMessage] = []
    for key in value:
        if key not in LLM_DEFAULTS:
            close = difflib.get_close_matches(str(key), LLM_DEFAULTS, n=1)
            hint = (
                f"Did you mean {close[0]!r}?"
                if close
                else f"Known keys: {', '.join(LLM_DEFAULTS)}."
            )
            errors.append(
                Error(f"MOTORHEAD['{name}'] has an unknown key {key!r}.", hint=hint, id=_id(code))
            )
    for key in LLM_REQUIRED:
        if not isinstance(value.get(key), str) or not value.get(key):
            errors.append(
                Error(f"MOTORHEAD['{name}']['{key}'] must be a non-empty string.", id=_id(code))
            )
    url = value.get("BASE_URL")
    if isinstance(url, str) and url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(
                Error(
                    f"MOTORHEAD['{name}']['BASE_URL'] is not an http(s) URL: {url!r}.",
                    hint='For example "https://api.openai.com/v1" or "http://127.0.0.1:11434/v1".',
                    id=_id(code),
                )
            )
        elif (
            parts.scheme == "http"
            and value.get("API_KEY")
            and parts.hostname not in ("127.0.0.1", "localhost", "::1")
        ):
            errors.append(
                Warning(
                    f"MOTORHEAD['{name}'] sends its API_KEY over plain http to {parts.hostname}.",
                    hint="Use an https BASE_URL.",
                    id=_id("W020"),
                )
            )
    api_key = value.get("API_KEY")
    if api_key is not None and not isinstance(api_key, str):
        errors.append(
            Error(f"MOTORHEAD['{name}']['API_KEY'] must be a string or None.", id=_id(code))
        )
    for number, positive in (
        ("MAX_TOKENS", 1),
        ("BATCH_TOKENS", 1),
        ("BATCH_SIZE", 1),
        ("RETRIES", 0),
        ("EF_SEARCH", 1),
    ):
        item = value.get(number, LLM_DEFAULTS[number])
        if not isinstance(item, int) or isinstance(item, bool) or item < positive:
            errors.append(
                Error(
                    f"MOTORHEAD['{name}']['{number}'] must be an integer >= {positive}.",
                    id=_id(code),
                )
            )
    timeout = value.get("TIMEOUT", LLM_DEFAULTS["TIMEOUT"])
    if not isinstance(timeout, Real) or isinstance(timeout, bool) or timeout <= 0:
        errors.append(
            Error(f"MOTORHEAD['{name}']['TIMEOUT'] must be a positive number.", id=_id(code))
        )
    return errors


_RATE_PERIODS = frozenset(
    ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day")
    + ("seconds", "minutes", "hours", "days")
)


def _valid_rate(value: Any) -> bool:
    """DRF's ``"<count>/<period>"``: it reads the period's first letter only."""
    if value is None:
        return True
    if not isinstance(value, str) or value.count("/") != 1:
        return False
    count, period = value.split("/")
    return count.isascii() and count.isdigit() and int(count) >= 1 and period in _RATE_PERIODS


@register(Tags.compatibility)
def check_throttle_rates(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    if "THROTTLE_RATES" not in user:
        return []
    rates = user["THROTTLE_RATES"]
    if not isinstance(rates, dict):
        return [
            Error(
                f"MOTORHEAD['THROTTLE_RATES'] must be a dict, not {type(rates).__name__}.",
                hint='For example {"auth-address": "30/min"}.',
                id=_id("E012"),
            )
        ]
    known = DEFAULTS["THROTTLE_RATES"]
    messages: list[CheckMessage] = []
    for scope, value in rates.items():
        if scope not in known:
            messages.append(
                Error(
                    f"MOTORHEAD['THROTTLE_RATES'] has an unknown scope {scope!r}.",
                    hint=f"Known scopes: {', '.join(known)}.",
                    id=_id("E012"),
                )
            )
        elif not _valid_rate(value):
            messages.append(
                Error(
                    f"MOTORHEAD['THROTTLE_RATES'][{scope!r}] must be a rate such as "
                    f"'30/min' (a whole number >= 1, then s, min, hour or day) or None, "
                    f"not {value!r}.",
                    id=_id("E012"),
                )
            )
    return messages


@register(Tags.compatibility)
def check_request_limits(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    messages: list[CheckMessage] = []
    if not _positive_int(user, "MAX_PAGE_SIZE"):
        messages.append(
            Error("MOTORHEAD['MAX_PAGE_SIZE'] must be a whole number >= 1.", id=_id("E008"))
        )
    if user.get("MAX_REQUEST_BYTES") is not None and not _positive_int(user, "MAX_REQUEST_BYTES"):
        messages.append(
            Error(
                "MOTORHEAD['MAX_REQUEST_BYTES'] must be a whole number >= 1, or None "
                "(Django's DATA_UPLOAD_MAX_MEMORY_SIZE).",
                id=_id("E008"),
            )
        )
    redact = user.get("SECRETS", ())
    if not isinstance(redact, list | tuple) or not all(isinstance(s, str) for s in redact):
        messages.append(
            Error(
                "MOTORHEAD['SECRETS'] must be a list of strings (secrets to keep out of logs).",
                id=_id("E013"),
            )
        )
    return messages


@register(Tags.security, deploy=True)
def check_throttle_cache(**kwargs: Any) -> list[CheckMessage]:
    backend = str(getattr(settings, "CACHES", {}).get("default", {}).get("BACKEND", ""))
    if backend.endswith("DummyCache"):
        return [
            Warning(
                "The default cache is a DummyCache: the throttles (failed authentications, "
                "request rates) count nothing, so API keys can be guessed at full speed.",
                hint="Use a shared cache (Redis, Memcached, the database cache) in production.",
                id=_id("W004"),
            )
        ]
    return []


_CELERY_SETTINGS = (
    "CELERY_BROKER_URL",
    "BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "CELERY_ALWAYS_EAGER",
)


def _celery_configured() -> bool:
    """Whether pushes can run: a broker or eager mode, in settings or on the Celery app."""
    if any(getattr(settings, name, None) for name in _CELERY_SETTINGS):
        return True
    try:
        from celery import current_app
    except ImportError:  # pragma: no cover  (celery is a dependency)
        return False
    conf = current_app.conf
    return bool(conf.broker_url or conf.broker_write_url or conf.task_always_eager)


@register(Tags.compatibility)
def check_broker(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    url = user.get("URL")
    if not url or not isinstance(url, str) or user.get("SYNC_ENABLED") is False:
        return []
    if _celery_configured():
        return []
    return [
        Error(
            "MOTORHEAD['URL'] is set but Celery has neither a broker nor eager mode: the push "
            "tasks would go to Celery's default broker (amqp://guest@localhost//) and the "
            "messages would stay pending.",
            hint="Set CELERY_BROKER_URL and run `celery -A yourproject worker` and `beat` "
            "(see the README's Celery section), or set CELERY_TASK_ALWAYS_EAGER = True to push "
            "from the web process.",
            id=_id("E014"),
        )
    ]


@register()
def check_metrics(**kwargs: Any) -> list[CheckMessage]:
    user = _user_settings() or {}
    if not user.get("METRICS"):
        return []
    from . import metrics

    if metrics.available():
        return []
    return [
        Error(
            "MOTORHEAD['METRICS'] is on but prometheus_client is not installed.",
            hint="pip install 'motorhead-django[metrics]', or turn METRICS off.",
            id=_id("E023"),
        )
    ]


# The governance settings' checks (E015, E016) live beside their feature.
from . import governance_checks  # noqa: E402, F401
