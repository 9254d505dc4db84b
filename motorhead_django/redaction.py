"""One place that removes secrets from text before it is stored, shown or logged.

The secrets are the upstream Motorhead credentials (``MOTORHEAD['API_KEY']`` and
``CLIENT_ID``), the built-in summariser's and the embeddings' ``API_KEY``, the
LLM keys a Motorhead server is given in its environment (``OPENAI_API_KEY``,
``AZURE_API_KEY``), any string in ``MOTORHEAD['SECRETS']``,
the API key of the request being served, and anything shaped like one of our
keys (``mhd_<prefix>_<secret>``: the prefix stays, it names the key). Each is
removed in every form a server could echo it back in: raw, JSON-escaped,
percent-encoded (``quote`` and ``quote_plus``, either case of hex), HTML-escaped
and base64 (standard and URL-safe, at any alignment inside a longer base64 text,
so ``base64("id:key")`` of a Basic header is covered too).

:func:`redact` does the text; :func:`error_text` is what every ``last_error`` is
made of; :class:`RedactingFilter` is installed on Django's request loggers and
ours by the app's ``ready()``.
"""

from __future__ import annotations

import base64
import contextvars
import copy
import functools
import html
import json
import logging
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from .conf import motorhead_settings

REDACTED = "[redacted]"
#: Most characters of an error kept in ``last_error`` (and in logs of sync failures).
ERROR_TEXT_LENGTH = 1000
#: Most characters of an upstream error body kept on an exception (``MotorheadAPIError.body``).
ERROR_BODY_LENGTH = 2000
# Shorter strings are not redacted: "[redacted]" for every "a" would hide the text itself.
_MIN_SECRET = 6
_LLM_KEY_VARIABLES = ("OPENAI_API_KEY", "AZURE_API_KEY")
# Loggers that see request paths or upstream errors.
LOGGERS = (
    "django.request",
    "django.server",
    "django.db.backends",  # SQL with its parameters, when DEBUG logs queries (a token lookup)
    "motorhead_django",
    "motorhead_django.client",
    "motorhead_django.sync",
    "motorhead_django.pull",
    "motorhead_django.rehydrate",
    "motorhead_django.memory",
    "motorhead_django.tasks",
    "motorhead_django.langgraph",
    "motorhead_django.governance",
    "motorhead_django.health",
    "motorhead_django.summaries",
    "motorhead_django.embeddings",
    "motorhead_django.vectors",
    "motorhead_django.jobs",
    "motorhead_django.llm",
    "motorhead_django.jobs",
    "motorhead_django.vectors",
    # A task's return value and its exception are logged by Celery's tracer, not by us.
    "celery.app.trace",
)

# Our keys' shape (models.ApiKey): the secret part goes, the prefix stays.
_OUR_KEY = re.compile(r"(mhd_[0-9a-f]{8}_)[A-Za-z0-9_\-]{8,}")
# The key segment of the compatible routes' keyed URLs (…/k/<key>/…), also percent-encoded.
_KEYED_PATH = re.compile(r"((?:/|%2F)k(?:/|%2F))[^/?#\s\"'<>]+?(?=/|%2F|\?|#|\s|\"|'|<|>|$)", re.I)
# Header lines an echo or a debug dump may carry: name, then the value to the end of line.
_HEADER = re.compile(
    r"((?:x-metal-api-key|x-metal-client-id|authorization|cookie)\"?\s*[:=]\s*\"?)[^\r\n\",}]+",
    re.I,
)

_KEY_HEADERS = frozenset({"HTTP_X_METAL_API_KEY", "HTTP_X_METAL_CLIENT_ID", "HTTP_AUTHORIZATION"})

_request_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "motorhead_request_secrets", default=()
)


def remember(secret: str) -> None:
    """Redact ``secret`` (an API key a client sent) from everything until the next request."""
    if secret and secret not in _request_secrets.get():
        _request_secrets.set((*_request_secrets.get(), secret))


def forget(**kwargs: Any) -> None:
    """Drop the request secrets (connected to ``request_started`` and ``request_finished``)."""
    _request_secrets.set(())


def configured_secrets() -> list[str]:
    """The secrets known from settings and the environment (not the request's)."""
    s = motorhead_settings
    # Read even when the setting is malformed (the checks report that): only strings count.
    found: list[Any] = [s.API_KEY, s.CLIENT_ID]
    if isinstance(s.raw, dict) and isinstance(s.raw.get("URL"), str):
        found.extend(url_credentials(s.raw["URL"]))
    if isinstance(s.raw, dict) and isinstance(s.raw.get("SECRETS"), list | tuple):
        found.extend(s.SECRETS)
    # The built-in summariser's and the embeddings' keys (a malformed dict is the checks' job).
    for name in ("SUMMARIZER", "EMBEDDINGS"):
        endpoint = s.raw.get(name) if isinstance(s.raw, dict) else None
        if isinstance(endpoint, dict):
            found.append(endpoint.get("API_KEY"))
    found.extend(os.environ.get(name) for name in _LLM_KEY_VARIABLES)
    return [secret for secret in found if isinstance(secret, str) and len(secret) >= _MIN_SECRET]


def url_credentials(url: str) -> list[str]:
    """The user name and password of ``url``'s ``user:password@``, as written and decoded."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.username, parts.password]
    found.extend(unquote(value) for value in (parts.username, parts.password) if value)
    return [value for value in found if value]


def url_without_credentials(url: str, path: bool = True) -> str:
    """``url`` as ``scheme://host[:port][/path]``: no ``user:password@``, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}" + (parts.path if path else "")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the secrets, in any of their encodings, nor our keys or keyed paths."""
    if not text:
        return text
    everything = (*configured_secrets(), *_request_secrets.get(), *secrets)
    pattern = _pattern(tuple(sorted(set(everything))))
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _OUR_KEY.sub(lambda m: m.group(1) + REDACTED, text)
    text = _KEYED_PATH.sub(lambda m: m.group(1) + REDACTED, text)
    return _HEADER.sub(lambda m: m.group(1) + REDACTED, text)


def excerpt(text: str, length: int) -> str:
    """The redacted start of ``text``, at most ``length`` characters (an ellipsis marks a cut)."""
    text = redact(text)
    return text if len(text) <= length else text[: length - 1] + "…"


def error_text(exc: BaseException) -> str:
    """What is stored as ``last_error`` and logged for a failed sync step: bounded, redacted."""
    return excerpt(str(exc), ERROR_TEXT_LENGTH)


def encodings(secret: str) -> set[str]:
    """The forms of ``secret`` a server could echo (the base64 ones as alignment-free cores)."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote_plus(secret, safe=""),
        html.escape(secret),
        html.escape(secret, quote=False),
    }
    forms |= {form.replace("\\/", "/") for form in forms} | {secret.replace("/", "\\/")}
    forms |= set(_base64_cores(secret.encode("utf-8")))
    return {form for form in forms if len(form) >= _MIN_SECRET}


def _base64_cores(data: bytes) -> Iterable[str]:
    # A secret inside longer base64 text starts at byte offset 0, 1 or 2 of a
    # 3-byte group; the characters that depend on its bytes alone are the same
    # whatever surrounds it.
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data + bytes(2)).decode("ascii")
        core = encoded[-(-8 * offset // 6) : 8 * (offset + len(data)) // 6]
        yield core
        yield core.replace("+", "-").replace("/", "_")


@functools.lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms = {form for secret in secrets if len(secret) >= _MIN_SECRET for form in encodings(secret)}
    if not forms:
        return None
    # Longest first, so a form is not half-replaced by a shorter one it contains.
    alternatives = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(re.escape(form) for form in alternatives), re.IGNORECASE)


class RedactingFilter(logging.Filter):
    """Redacts a record's message, traceback and keyed request before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            clean_text = redact(text)
            if clean_text != text:
                # Handlers that render exc_info themselves (AdminEmailHandler) would show
                # the secret: the redacted traceback becomes part of the message instead.
                record.msg, record.args = f"{record.msg}\n{clean_text}", ()
                record.exc_info = None
            else:
                record.exc_text = text
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        # django.db.backends also passes the query and its parameters as attributes.
        sql, params = getattr(record, "sql", None), getattr(record, "params", None)
        if isinstance(sql, str):
            record.sql = redact(sql)
        if isinstance(params, list | tuple):
            record.params = tuple(_redact_value(value) for value in params)
        request = getattr(record, "request", None)
        if request is not None and _carries_key(request):
            # Handlers such as AdminEmailHandler render the whole request (path, headers).
            record.request = _redacted_request(request)
        return True


def _carries_key(request: Any) -> bool:
    path = str(getattr(request, "path", "") or getattr(request, "path_info", ""))
    meta = getattr(request, "META", {}) or {}
    if not isinstance(meta, dict):
        return False
    return redact(path) != path or any(name in meta for name in _KEY_HEADERS)


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def _redacted_request(request: Any) -> Any:
    """A shallow copy of ``request`` whose path and headers hold no key, for log handlers."""
    clone = copy.copy(request)
    meta = {
        name: REDACTED if name in _KEY_HEADERS else _redact_value(value)
        for name, value in request.META.items()
    }
    clone.META = meta
    if hasattr(clone, "environ"):
        clone.environ = meta
    clone.path = redact(str(request.path))
    clone.path_info = redact(str(getattr(request, "path_info", request.path)))
    return clone


_filter = RedactingFilter()


def install() -> None:
    """Put the filter on every logger in :data:`LOGGERS` (idempotent)."""
    for name in LOGGERS:
        target = logging.getLogger(name)
        if _filter not in target.filters:
            target.addFilter(_filter)
