"""Liveness and readiness endpoints for container probes.

    from motorhead_django.health import health_urlpatterns

    urlpatterns = [path("health/", include(health_urlpatterns))]

``live`` answers 200 whenever the process can serve a request (it touches
nothing else: a database outage must not get every pod restarted). ``ready``
checks what a request needs, each check under a short timeout: the database,
the Celery broker (when sync is on and tasks are not run eagerly) and the
upstream Motorhead server (when ``MOTORHEAD['URL']`` is set and sync is not
paused). It answers 200 when all pass and 503 naming the ones that failed.
Bodies carry check names, exception class names and a redacted, bounded
message: never a URL's credentials, a key or a password.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import redaction
from .client import MotorheadClient
from .conf import motorhead_settings

logger = logging.getLogger(__name__)

#: Seconds each readiness check may take (connect and read).
CHECK_TIMEOUT = 2.0
_DETAIL_LENGTH = 200
# user:password@ in any URL an exception may quote (broker and database errors do).
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def without_credentials(text: str) -> str:
    """``text`` with every ``user:password@`` of a URL replaced."""
    return _CREDENTIALS.sub("[redacted]@", text)


def _detail(exc: BaseException) -> str:
    text = without_credentials(str(exc))
    return f"{type(exc).__name__}: {redaction.excerpt(text, _DETAIL_LENGTH)}"


def check_database() -> None:
    for alias in connections:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")


def _broker_used() -> bool:
    from celery import current_app

    return motorhead_settings.SYNC_ENABLED and not current_app.conf.task_always_eager


def check_broker() -> None:
    from celery import current_app

    with current_app.connection_for_write(connect_timeout=CHECK_TIMEOUT) as conn:
        # One attempt, no retry loop: a probe must answer within its own timeout.
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


def check_upstream() -> None:
    client = MotorheadClient(
        motorhead_settings.URL or "",
        api_key=motorhead_settings.API_KEY,
        client_id=motorhead_settings.CLIENT_ID,
        connect_timeout=CHECK_TIMEOUT,
        read_timeout=CHECK_TIMEOUT,
        user_agent=motorhead_settings.USER_AGENT,
    )
    try:
        client.health()
    finally:
        client.close()


def readiness_checks() -> dict[str, Callable[[], None]]:
    """The checks that apply to this configuration, by name."""
    checks: dict[str, Callable[[], None]] = {"database": check_database}
    if _broker_used():
        checks["broker"] = check_broker
    if motorhead_settings.SYNC_ENABLED:
        checks["upstream"] = check_upstream
    return checks


def run_checks() -> dict[str, dict[str, Any]]:
    """Run every readiness check: ``{name: {"ok": bool, "ms": float, "error"?: str}}``."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in readiness_checks().items():
        started = time.monotonic()
        try:
            check()
        except Exception as exc:  # a probe reports every failure, whatever it is
            detail = _detail(exc)
            logger.warning("Readiness check %s failed: %s", name, detail)
            results[name] = {"ok": False, "error": detail}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    return results


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """200 while the process serves requests."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, else 503 with the names of those that failed."""
    checks = run_checks()
    failed = sorted(name for name, result in checks.items() if not result["ok"])
    body = {"status": "fail" if failed else "ok", "failed": failed, "checks": checks}
    return JsonResponse(body, status=503 if failed else 200)


health_urlpatterns = [
    path("live", live, name="motorhead-health-live"),
    path("ready", ready, name="motorhead-health-ready"),
]
