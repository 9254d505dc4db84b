"""bench/api_throughput.py's floor is honest: its bare views run our SQL and answer our bytes."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from motorhead_django import memory
from motorhead_django.models import ApiKey

pytestmark = [pytest.mark.django_db, pytest.mark.urls("bench.api_urls")]

BODY = json.dumps(
    {"messages": [{"role": "Human", "content": "hé"}, {"role": "AI", "content": "ok"}]}
)


def statements(client, method: str, path: str, key: str) -> tuple[bytes, list[str]]:
    """The response's bytes and the SQL it ran (before parameters are bound), savepoints
    aside: only our memory core nests a transaction."""
    sql: list[str] = []

    def record(execute, text, params, many, context):
        if "SAVEPOINT" not in text:
            sql.append(text)
        return execute(text, params, many, context)

    with connection.execute_wrapper(record):
        if method == "GET":
            response = client.get(path, HTTP_X_METAL_API_KEY=key)
        else:
            response = client.post(
                path, BODY, content_type="application/json", HTTP_X_METAL_API_KEY=key
            )
    assert response.status_code == 200, response.content
    return response.content, sql


@pytest.fixture
def key() -> str:
    user = get_user_model().objects.create_user("bench")
    session = memory.get_or_create_session("chat", owner=user)
    memory.append_messages(session, [("Human", f"q{n}") for n in range(20)], context="summary")
    return ApiKey.issue(user, "bench")[1]


@pytest.mark.parametrize("session_id", ["chat", "missing"])
def test_get_same_queries_and_bytes(client, key, session_id):
    statements(client, "GET", "/bare/sessions/chat/memory", key)  # touches last_used_at once
    ours = statements(client, "GET", f"/motorhead/sessions/{session_id}/memory", key)
    bare = statements(client, "GET", f"/bare/sessions/{session_id}/memory", key)
    assert ours == bare and len(ours[1]) == (3 if session_id == "chat" else 2)


def test_post_same_queries_and_bytes(client, key):
    statements(client, "GET", "/bare/sessions/chat/memory", key)
    ours_bytes, ours_sql = statements(client, "POST", "/motorhead/sessions/chat/memory", key)
    bare_bytes, bare_sql = statements(client, "POST", "/bare/sessions/chat/memory", key)
    assert ours_bytes == bare_bytes == b'{"status":"Ok"}'
    # key, session, update, re-read, insert
    assert ours_sql == bare_sql and len(ours_sql) == 5
    window = statements(client, "GET", "/motorhead/sessions/chat/memory", key)[0]
    newest = [(m["role"], m["content"]) for m in json.loads(window)["messages"][:4]]
    assert newest == [("AI", "ok"), ("Human", "hé")] * 2
