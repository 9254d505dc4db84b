"""A session deleted while its server delete is pending (a tombstone) is gone on both surfaces:
reads are 404 / empty like a missing session, and a write to its id is a 409 with Retry-After
until the server confirmed the delete, then creates a fresh session."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from motorhead_django import engine, memory
from motorhead_django.models import ApiKey, ChatSession

pytestmark = pytest.mark.django_db

SECRET = "old secret words"


@pytest.fixture
def upstream(upstream_factory, monkeypatch):
    server = upstream_factory()
    # The server's delete waits until a test runs it: the session stays a tombstone.
    monkeypatch.setattr("motorhead_django.tasks.schedule_delete", lambda pk, eta=None: None)
    return server


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice")


def rest_client(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_rest_tombstone_is_a_404_everywhere_and_a_write_to_its_id_is_a_409(upstream, alice):
    session = memory.create_session("s1", owner=alice)
    memory.append_messages(session, [("Human", SECRET)])
    api = rest_client(alice)
    assert api.delete(f"/api/sessions/{session.pk}/").status_code == 204
    tombstone = ChatSession.objects.get(pk=session.pk)
    assert tombstone.delete_requested_at is not None  # still here, until the server confirms

    for sub in ("", "messages/", "memory/", "sync/"):
        answer = api.get(f"/api/sessions/{session.pk}/{sub}")
        assert answer.status_code == 404, (sub, answer.content)
        assert SECRET not in answer.content.decode()
    assert api.post(f"/api/sessions/{session.pk}/retrieval/", {"text": "old"}).status_code == 404
    assert api.get("/api/sessions/").json()["results"] == []
    patch = api.patch(f"/api/sessions/{session.pk}/", {"context": "x"}, format="json")
    assert patch.status_code == 404
    post = api.post(
        f"/api/sessions/{session.pk}/messages/", {"role": "Human", "content": "x"}, format="json"
    )
    assert post.status_code == 404
    assert api.post(f"/api/sessions/{session.pk}/sync/").status_code == 404
    assert api.delete(f"/api/sessions/{session.pk}/").status_code == 404
    tombstone.refresh_from_db()
    assert tombstone.context is None and tombstone.messages.count() == 1  # nothing written

    again = api.post("/api/sessions/", {"session_id": "s1"}, format="json")
    assert again.status_code == 409
    assert "being deleted on the server" in again.json()["session_id"][0]
    assert int(again["Retry-After"]) >= 1
    assert ChatSession.objects.filter(session_id="s1").count() == 1

    # Once the server confirmed the delete, the id is free again: a fresh, empty session.
    engine.delete(session.pk, scope=engine.Scope.BOTH)
    assert not ChatSession.objects.filter(pk=session.pk).exists()
    fresh = api.post("/api/sessions/", {"session_id": "s1"}, format="json")
    assert fresh.status_code == 201
    assert api.get(f"/api/sessions/{fresh.json()['id']}/memory/").json()["messages"] == []


def test_compat_tombstone_reads_empty_and_a_write_is_a_409_with_retry_after(upstream, alice):
    _, raw = ApiKey.issue(owner=alice, name="k")
    compat = APIClient()
    keyed = {"HTTP_X_METAL_API_KEY": raw}
    url = "/motorhead/sessions/chat/memory"
    body = {"messages": [{"role": "Human", "content": SECRET}]}
    assert compat.post(url, body, format="json", **keyed).status_code == 200
    assert compat.delete(url, **keyed).status_code == 200
    assert ChatSession.objects.get(session_id="chat").delete_requested_at is not None

    read = compat.get(url, **keyed)
    assert read.status_code == 200
    assert read.json() == {"messages": [], "context": None, "tokens": 0}
    assert compat.get("/motorhead/sessions", **keyed).json() == []
    retrieval = compat.post(
        "/motorhead/sessions/chat/retrieval", {"text": "old"}, format="json", **keyed
    )
    assert retrieval.json() == []
    assert compat.delete(url, **keyed).status_code == 200  # like a missing session

    write = compat.post(
        url, {"messages": [{"role": "Human", "content": "new"}]}, format="json", **keyed
    )
    assert write.status_code == 409
    assert "retry after it is gone" in write.json()["session_id"][0]
    assert int(write["Retry-After"]) >= 1
    tombstone = ChatSession.objects.get(session_id="chat")
    assert [m.content for m in tombstone.messages.all()] == [SECRET]  # "new" not added

    engine.delete(tombstone.pk, scope=engine.Scope.BOTH)
    written = compat.post(
        url, {"messages": [{"role": "Human", "content": "new"}]}, format="json", **keyed
    )
    assert written.status_code == 200
    assert compat.get(url, **keyed).json()["messages"] == [{"role": "Human", "content": "new"}]
