"""The liveness and readiness endpoints: real database, real test server, a dead broker."""

from __future__ import annotations

import socket

import pytest
from celery import Celery

from .celery_app import app as default_app

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dead_broker(settings):
    """A current Celery app whose Redis broker listens nowhere, tasks not eager."""
    app = Celery("motorhead_health_test")
    app.conf.update(
        broker_url=f"redis://:s3cretpassword@127.0.0.1:{_closed_port()}/0",
        task_always_eager=False,
        broker_connection_timeout=1,
    )
    app.set_current()
    yield app
    default_app.set_current()


def test_live_answers_without_touching_anything(client, settings):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_local_only_checks_the_database(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database"}
    assert response["Cache-Control"].startswith("max-age=0")


def test_ready_with_a_live_upstream(client, upstream):
    response = client.get("/health/ready")
    assert response.status_code == 200, response.json()
    assert set(response.json()["checks"]) == {"database", "upstream"}
    assert any(r.method == "GET" and r.path == "/" for r in upstream.requests)


def test_ready_names_an_unreachable_upstream_without_its_key(client, settings):
    settings.MOTORHEAD = {
        "URL": f"http://127.0.0.1:{_closed_port()}",
        "API_KEY": "upstream-secret-key",
        "CONNECT_TIMEOUT": 0.5,
    }
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["upstream"]
    assert body["checks"]["database"]["ok"] is True
    assert "upstream-secret-key" not in response.content.decode()


def test_ready_names_an_unreachable_broker_without_its_password(client, upstream, dead_broker):
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["upstream"]["ok"] is True
    assert body["checks"]["broker"]["error"]
    assert "s3cretpassword" not in response.content.decode()


def test_ready_with_a_reachable_broker(client, upstream, redis_url):
    app = Celery("motorhead_health_live_broker")
    app.conf.update(broker_url=redis_url, task_always_eager=False)
    app.set_current()
    try:
        response = client.get("/health/ready")
    finally:
        default_app.set_current()
    assert response.status_code == 200, response.json()
    assert set(response.json()["checks"]) == {"database", "broker", "upstream"}


def test_ready_refuses_other_methods(client):
    assert client.post("/health/ready").status_code == 405
