"""Shared fixtures: real services, or a clear skip (a failure under CI=true)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection, connections

from motorhead_django import outbox
from motorhead_django.engine import locks

from . import celery_app  # noqa: F401  (the current Celery app: eager unless a test says not)

IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_service(name: str, url: str, default_port: int) -> None:
    """Skip the test when the service is down; in CI, fail instead."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        message = f"{name} is not reachable at {address[0]}:{address[1]} ({exc})"
        if IN_CI:
            pytest.fail(f"{message}; CI=true, so a missing service is a failure")
        pytest.skip(f"{message}; start it to run this test")


@pytest.fixture(autouse=True)
def _fresh_broker_breaker(monkeypatch) -> None:
    """A broker failure seen by one test must not make the next one skip its enqueues."""
    monkeypatch.setattr("motorhead_django.tasks._broker_down_until", 0.0)


@pytest.fixture(autouse=True)
def _llm_work_in_the_test(request, monkeypatch) -> None:
    """Eager mode hands the summariser and embeddings to a thread (tasks.hand_off_llm); tests
    run them in their own thread so they can assert on the result (and because the in-memory
    SQLite test database refuses a second thread's writes). ``@pytest.mark.llm_hand_off``
    keeps the real thread (tests/test_tasks.py tests it)."""
    if request.node.get_closest_marker("llm_hand_off"):
        return
    monkeypatch.setattr(
        "motorhead_django.tasks.hand_off_llm", lambda task, pk: task.apply(args=(pk,))
    )


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    """Throttle counters (and the admin's health cache) live in Django's cache: start empty."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def no_autopush() -> Iterator[None]:
    """No automatic push after a write: a test pushes when it says so (deletes still go)."""
    with outbox.suspended():
        yield


@pytest.fixture
def upstream_factory(motorhead_server_factory, settings, no_autopush):
    """Start a test server as the configured upstream; pushes run only when a test says so.

    ``start(window_size=12, motorhead=None, **server_options)``: ``motorhead``
    adds to the MOTORHEAD setting, ``server_options`` go to the test server.
    """

    def start(window_size: int = 12, motorhead: dict[str, Any] | None = None, **server_options):
        server = motorhead_server_factory(window_size=window_size, **server_options)
        settings.MOTORHEAD = {
            "URL": server.url,
            "WINDOW_SIZE": window_size,
            "READ_TIMEOUT": 1.0,
            "CONNECT_TIMEOUT": 1.0,
            "RETRY_BACKOFF": 0.01,
            "RETRY_BACKOFF_MAX": 0.05,
            "COMPACTION_TIMEOUT": 5.0,
            **(motorhead or {}),
        }
        return server

    return start


@pytest.fixture
def upstream(upstream_factory):
    return upstream_factory()


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture
def postgres() -> None:
    """For tests that need PostgreSQL itself (locking, concurrency)."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL: runs in the PostgreSQL leg of `python3.11 dev.py test` "
            "(DATABASE_URL=postgres://...)"
        )


@contextmanager
def lock_held_elsewhere(session_pk: int) -> Iterator[None]:
    """A session's session lock held by another thread, on its own database connection."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with locks.session_lock(session_pk) as acquired:
                assert acquired
                taken.set()
                done.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        done.set()
        holder.join()


def lock_is_free_elsewhere(session_pk: int) -> bool:
    """Whether another worker (a thread with its own connection) could take the session lock now."""
    answer = []

    def probe() -> None:
        try:
            with locks.session_lock(session_pk) as acquired:
                answer.append(acquired)
        finally:
            connections.close_all()

    prober = threading.Thread(target=probe)
    prober.start()
    prober.join()
    return answer == [True]


def unavailable(message: str) -> None:
    """Skip for want of something optional; under CI=true, fail."""
    if IN_CI:
        pytest.fail(f"{message}; CI=true, so this is a failure")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pgserver_database(django_db_blocker) -> Iterator[dict[str, Any]]:
    """A PostgreSQL with pgvector from the ``pgserver`` wheel (the dev extra), migrated.

    It runs from a temporary directory over a unix socket (no port), for this
    test session only; its settings dict is what :func:`pgvector_db` connects to.
    """
    import shutil
    import tempfile
    from urllib.parse import parse_qs

    from django.core.management import call_command

    try:
        import pgserver
    except ImportError as exc:
        unavailable(f"pgserver is not installed ({exc}): pip install -e '.[dev]'")
    directory = tempfile.mkdtemp(prefix="motorhead-pgserver-")
    try:
        server = pgserver.get_server(os.path.join(directory, "data"), cleanup_mode="delete")
        server.psql("CREATE DATABASE motorhead_pgvector;")
    except Exception as exc:
        shutil.rmtree(directory, ignore_errors=True)
        unavailable(f"pgserver's PostgreSQL did not start ({exc})")
    socket_dir = parse_qs(urlsplit(server.get_uri()).query)["host"][0]
    database = {"NAME": "motorhead_pgvector", "USER": "postgres", "HOST": socket_dir}
    with _default_database(database), django_db_blocker.unblock():
        call_command("migrate", verbosity=0, interactive=False)
    yield database
    server.cleanup()
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _default_database(overrides: dict[str, Any]) -> Iterator[None]:
    """Point the ``default`` alias at another PostgreSQL for a while."""
    from django.db.utils import load_backend

    previous = connections["default"]
    engine = "django.db.backends.postgresql"
    settings_dict = {
        **previous.settings_dict,
        "ENGINE": engine,
        "PASSWORD": "",
        "PORT": "",
        "OPTIONS": {},
        **overrides,
    }
    replacement = load_backend(engine).DatabaseWrapper(settings_dict, "default")
    connections["default"] = replacement
    try:
        yield
    finally:
        replacement.close()
        connections["default"] = previous


@pytest.fixture
def pgvector_db(pgserver_database, django_db_blocker) -> Iterator[None]:
    """The test's default database is pgserver's (pgvector installed), rolled back after."""
    from django.db import transaction

    with _default_database(pgserver_database), django_db_blocker.unblock(), transaction.atomic():
        yield
        transaction.set_rollback(True)
