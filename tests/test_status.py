"""``motorhead_status`` and the snapshot behind it: real database, real test server."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from motorhead_django import memory, status
from motorhead_django.models import ChatMessage, ChatSession, SyncState

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("motorhead_status", *args, stdout=out)
    return out.getvalue()


def _pending_sessions(count: int) -> list[ChatSession]:
    rows = []
    for n in range(count):
        session = memory.get_or_create_session(f"st{n}")
        memory.append_messages(session, [("Human", "a"), ("AI", "b")])
        rows.append(session)
    return rows


def test_snapshot_counts_every_state_and_the_lag(upstream):
    sessions = _pending_sessions(3)
    ChatMessage.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    ChatSession.objects.filter(pk=sessions[0].pk).update(
        sync_state=SyncState.FAILED, last_error="500 from the server"
    )
    now = status.snapshot()
    assert set(now.counts) == set(SyncState.values)
    assert now.counts["pending"] == 2 and now.counts["failed"] == 1
    assert now.pending_messages == 6
    assert timedelta(minutes=5) <= now.lag < timedelta(minutes=6)
    assert [s.pk for s in status.last_errors()] == [sessions[0].pk]


def test_the_screen_shows_states_lag_errors_and_health(upstream):
    sessions = _pending_sessions(2)
    ChatMessage.objects.update(created_at=timezone.now() - timedelta(minutes=3))
    ChatSession.objects.filter(pk=sessions[1].pk).update(
        sync_state=SyncState.RETRYING, last_error="MotorheadServerError: 503 Service Unavailable"
    )
    text = run()
    assert f"Upstream: {upstream.url}" in text
    assert "pending" in text and "retrying" in text
    assert "Pending messages: 4" in text
    assert "Sync lag: 3\xa0minutes" in text
    assert "st1 [retrying" in text and "503 Service Unavailable" in text
    assert "upstream" in text and "ok (" in text


def test_json_for_scripts_and_exit_1_when_a_check_fails(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.MOTORHEAD = {"URL": f"http://user:pw-secret@127.0.0.1:{port}", "CONNECT_TIMEOUT": 0.5}
    settings.CELERY_TASK_ALWAYS_EAGER = True
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("motorhead_status", "--json", stdout=out)
    assert exit_info.value.code == 1
    body = json.loads(out.getvalue())
    assert body["sessions"]["local"] == 0 and body["lag_seconds"] == 0
    assert body["health"]["upstream"]["ok"] is False
    with pytest.raises(SystemExit):
        text = StringIO()
        call_command("motorhead_status", stdout=text)
    assert "pw-secret" not in text.getvalue() and "FAILED" in text.getvalue()


def test_local_only_without_health_checks():
    _pending_sessions(1)
    text = run("--no-health", "--errors", "0")
    assert "Upstream: none (local-only)" in text
    assert "Sync lag: none" in text
    assert "Health:" not in text
