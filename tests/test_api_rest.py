"""The REST resources through DRF's APIClient: ownership, shapes, bad input, query counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from motorhead_django import memory
from motorhead_django.models import ApiKey, ChatMessage, ChatSession

pytestmark = pytest.mark.django_db

API = "/api"


def make_user(username: str, **extra):
    return get_user_model().objects.create(username=username, **extra)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def make_session(owner, session_id: str = "s", messages: int = 0, **fields) -> ChatSession:
    session = memory.get_or_create_session(session_id, owner=owner, **fields)
    if messages:
        memory.append_messages(session, [("Human", f"m{n}") for n in range(1, messages + 1)])
    return session


@pytest.fixture
def ann():
    return make_user("ann")


@pytest.fixture
def api(ann) -> APIClient:
    return client_for(ann)


def test_create_and_retrieve_a_session(api, ann):
    response = api.post(
        f"{API}/sessions/",
        {"session_id": "a/b.c", "metadata": {"topic": "x"}, "context": "ctx"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["session_id"] == "a/b.c" and body["owner"] == ann.pk
    assert body["metadata"] == {"topic": "x"} and body["context"] == "ctx"
    assert body["message_count"] == 0 and body["sync_state"] == "local" and body["last_error"] == ""
    detail = api.get(f"{API}/sessions/{body['id']}/").json()
    assert detail["id"] == body["id"] and detail["last_activity"] is None


def test_create_refuses_duplicates_and_bad_ids(api, ann):
    make_session(ann, "taken")
    assert "session_id" in api.post(f"{API}/sessions/", {"session_id": "taken"}).json()
    for bad in ("", "x" * 10_000, "a\x00b", "tab\there"):
        response = api.post(f"{API}/sessions/", {"session_id": bad}, format="json")
        assert response.status_code == 400 and "session_id" in response.json(), bad
    assert api.post(f"{API}/sessions/", {"session_id": 5}, format="json").status_code == 400
    for metadata in ([1], {"k": "a\x00b"}):
        bad = api.post(f"{API}/sessions/", {"session_id": "m", "metadata": metadata}, format="json")
        assert bad.status_code == 400 and "metadata" in bad.json()
    assert ChatSession.objects.count() == 1


def test_update_metadata_and_context_and_delete(api, ann):
    session = make_session(ann, messages=2)
    url = f"{API}/sessions/{session.pk}/"
    body = api.patch(url, {"metadata": {"k": 1}, "context": "sum"}, format="json").json()
    assert body["metadata"] == {"k": 1} and body["context"] == "sum"
    assert body["session_id"] == "s" and body["message_count"] == 2
    assert api.patch(url, {"context": 5}, format="json").status_code == 400
    assert api.delete(url).status_code == 204
    assert not ChatSession.objects.exists() and not ChatMessage.objects.exists()
    assert api.get(url).status_code == 404


def test_messages_append_one_or_many_and_list_in_order(api, ann):
    session = make_session(ann)
    url = f"{API}/sessions/{session.pk}/messages/"
    one = api.post(url, {"role": "Human", "content": "hi"}, format="json")
    assert one.status_code == 201 and one.json()[0]["sequence"] == 1
    many = api.post(
        url,
        {"messages": [{"role": "AI", "content": "a"}, {"role": "Human", "content": "b"}]},
        format="json",
    )
    assert [m["sequence"] for m in many.json()] == [2, 3]
    listed = api.get(url, {"page_size": 2}).json()
    assert [m["content"] for m in listed["results"]] == ["hi", "a"]
    # A message appended between pages does not shift the cursor.
    memory.append_messages(session, [("AI", "late")])
    rest = api.get(listed["next"]).json()
    assert [m["content"] for m in rest["results"]] == ["b", "late"]


def test_messages_show_the_agent_item_read_only(api, ann, client, settings):
    session = make_session(ann, "agent")
    call = {
        "type": "function_call",
        "call_id": "c1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    memory.append_messages(
        session,
        [("AI", '[function_call get_weather] {"city": "Paris"}'), ("Human", "plain")],
        items=[call, None],
    )
    url = f"{API}/sessions/{session.pk}/messages/"
    listed = api.get(url).json()["results"]
    assert [m["item"] for m in listed] == [call, None]
    assert listed[0]["content"] == '[function_call get_weather] {"city": "Paris"}'
    # Read-only: a body carrying an item is refused, and nothing is stored.
    for body in (
        {"role": "AI", "content": "x", "item": call},
        {"messages": [{"role": "AI", "content": "x", "item": call}]},
    ):
        refused = api.post(url, body, format="json")
        assert refused.status_code == 400, refused.content
    assert session.messages.count() == 2
    # The compatible routes keep Motorhead's wire shape: role and content only.
    key = ApiKey.issue(ann, "k")[1]
    window = client.get("/motorhead/sessions/agent/memory", HTTP_X_METAL_API_KEY=key).json()
    assert [set(m) for m in window["messages"]] == [{"role", "content"}] * 2
    # REDACT_LOCAL: the core stores the item redacted, as it does content; REST shows it.
    settings.MOTORHEAD = {
        **getattr(settings, "MOTORHEAD", {}),
        "REDACT": "motorhead_django.redact.default",
        "REDACT_LOCAL": True,
    }
    mailed = {"type": "function_call", "call_id": "c2", "name": "mail", "arguments": "ann@ex.org"}
    memory.append_messages(session, [("AI", "[function_call mail] ann@ex.org")], items=[mailed])
    newest = api.get(url).json()["results"][-1]
    assert newest["content"] == "[function_call mail] [email]"
    assert newest["item"] == {**mailed, "arguments": "[email]"}


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"role": "Human"}, "content"),
        ({"role": "Human", "content": 5}, "content"),
        ({"messages": [{"role": "Human"}]}, "messages"),
        (
            {"role": "Human", "content": "x", "messages": [{"role": "AI", "content": "y"}]},
            "non_field_errors",
        ),
    ],
)
def test_bad_message_bodies_are_field_level_400s(api, ann, body, field):
    session = make_session(ann)
    response = api.post(f"{API}/sessions/{session.pk}/messages/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not ChatMessage.objects.exists()


def test_core_limits_map_to_field_errors(api, ann, settings):
    settings.MOTORHEAD = {"ALLOWED_ROLES": ["Human"], "MAX_CONTENT_LENGTH": 3}
    session = make_session(ann)
    url = f"{API}/sessions/{session.pk}/messages/"
    assert "messages[0].role" in api.post(url, {"role": "AI", "content": "x"}).json()
    assert "messages[0].content" in api.post(url, {"role": "Human", "content": "long"}).json()


def test_memory_is_the_motorhead_window(api, ann, settings):
    settings.MOTORHEAD = {"WINDOW_SIZE": 2}
    session = make_session(ann, messages=5)
    memory.set_context(session, "sum")
    body = api.get(f"{API}/sessions/{session.pk}/memory/").json()
    assert body == {
        "messages": [
            {"role": "Human", "content": "m5"},
            {"role": "Human", "content": "m4"},
            {"role": "Human", "content": "m3"},
        ],
        "context": "sum",
        "tokens": 0,
    }


def test_sync_status_and_trigger(api, ann, settings, motorhead_server):
    session = make_session(ann, messages=1)
    url = f"{API}/sessions/{session.pk}/sync/"
    status = api.get(url).json()
    assert status["sync_state"] == "local" and status["pending_messages"] == 0
    assert api.post(url).status_code == 400  # local-only: nothing to push to
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    memory.append_messages(session, [("AI", "pending")])  # on_commit never runs in this test
    assert api.get(url).json()["pending_messages"] == 1
    assert api.post(url).json() == {"status": "scheduled"}  # eager Celery: pushed now
    status = api.get(url).json()
    assert status["sync_state"] == "synced" and status["pending_messages"] == 0
    assert session.remote_id == f"u{ann.pk}:s"  # the id on the server is scoped by owner
    last = motorhead_server.stored_messages(session.remote_id)[-1]
    assert last == {"role": "AI", "content": "pending"}


def test_trigger_a_pull(api, ann, settings, motorhead_server):
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    session = make_session(ann, session_id="pulled-in")
    motorhead_server.preload(
        session.remote_id, [("Human", "written elsewhere")], context="a summary"
    )
    url = f"{API}/sessions/{session.pk}/sync/"
    response = api.post(url, {"action": "pull"}, format="json")
    assert response.status_code == 202  # eager Celery: pulled now
    assert [m.content for m in memory.history(session)] == ["written elsewhere"]
    session.refresh_from_db()
    assert session.context == "a summary"
    bad = api.post(url, {"action": "both"}, format="json")
    assert bad.status_code == 400 and "action" in bad.json()


def test_a_drf_rate_for_the_rest_scope_still_applies(api, ann, settings):
    session = make_session(ann)
    url = f"{API}/sessions/{session.pk}/memory/"
    assert all(api.get(url).status_code == 200 for _ in range(5))
    cache.clear()
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {
        "DEFAULT_THROTTLE_RATES": {"motorhead-rest": "3/min"}
    }
    statuses = [api.get(url).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


# -- who sees what -----------------------------------------------------------------

ROUTES = ("", "messages/", "memory/", "sync/")


def test_anonymous_callers_get_401_everywhere(ann):
    session = make_session(ann)
    anonymous = APIClient()
    assert anonymous.get(f"{API}/sessions/").status_code == 401
    assert anonymous.post(f"{API}/sessions/", {"session_id": "x"}).status_code == 401
    for route in ROUTES:
        assert anonymous.get(f"{API}/sessions/{session.pk}/{route}").status_code == 401


def test_other_users_sessions_are_404_on_every_route(api):
    other = make_session(make_user("bob"), "bobs", messages=1)
    base = f"{API}/sessions/{other.pk}/"
    for route in ROUTES:
        assert api.get(base + route).status_code == 404, route
    assert api.patch(base, {"context": "mine"}, format="json").status_code == 404
    assert api.delete(base).status_code == 404
    assert api.post(base + "messages/", {"role": "Human", "content": "x"}).status_code == 404
    assert api.post(base + "sync/").status_code == 404
    assert api.get(f"{API}/sessions/").json()["count"] == 0
    assert ChatSession.objects.get(pk=other.pk).context is None
    assert ChatMessage.objects.count() == 1


@pytest.mark.parametrize("pk", ["abc", "9" * 40, "1.5", "%00", "x" * 10_000, "..", "99999"])
def test_odd_primary_keys_are_404(api, pk):
    assert api.get(f"{API}/sessions/{pk}/").status_code == 404
    assert api.get(f"{API}/sessions/{pk}/messages/").status_code == 404


def test_a_view_permission_sees_everyone_and_can_filter_by_owner(ann):
    staff = make_user("root", is_staff=True)
    bob = make_user("bob")
    make_session(ann, "a")
    make_session(bob, "b")
    api = client_for(staff)
    assert api.get(f"{API}/sessions/").json()["count"] == 0  # being staff grants nothing
    staff.user_permissions.add(Permission.objects.get(codename="view_chatsession"))
    api = client_for(get_user_model().objects.get(pk=staff.pk))  # a fresh permission cache
    assert api.get(f"{API}/sessions/").json()["count"] == 2
    listed = api.get(f"{API}/sessions/", {"owner": bob.pk}).json()["results"]
    assert [s["session_id"] for s in listed] == ["b"]
    assert api.get(f"{API}/sessions/", {"owner": "bob"}).status_code == 400


def test_token_authentication(ann):
    session = make_session(ann)
    token = Token.objects.create(user=ann)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(f"{API}/sessions/{session.pk}/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Token nope")
    assert client.get(f"{API}/sessions/{session.pk}/").status_code == 401
    # PostgreSQL cannot compare with a NUL: DRF's own lookup answered 500.
    client.credentials(HTTP_AUTHORIZATION="Token a\x00b")
    assert client.get(f"{API}/sessions/{session.pk}/").status_code == 401


def test_session_authentication(client, ann):
    session = make_session(ann)
    client.force_login(ann)
    assert client.get(f"{API}/sessions/{session.pk}/").status_code == 200


# -- the list: filters, search, ordering, pagination, query counts -------------------


def test_list_filters_search_and_ordering(api, ann):
    a = make_session(ann, "alpha", messages=3)
    make_session(ann, "beta", namespace="ns")
    memory.append_messages(a, [("AI", "the secret word")])
    ChatSession.objects.filter(session_id="beta").update(sync_state="failed")

    def ids(**params):
        response = api.get(f"{API}/sessions/", params)
        assert response.status_code == 200, response.content
        return [s["session_id"] for s in response.json()["results"]]

    assert ids(namespace="ns") == ["beta"]
    assert ids(sync_state="failed") == ["beta"]
    assert ids(search="secret") == ["alpha"] and ids(search="BET") == ["beta"]
    assert ids(ordering="session_id") == ["alpha", "beta"]
    assert ids(ordering="-message_count") == ["alpha", "beta"]
    soon = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert ids(created_before=soon) == ids() and ids(created_after=soon) == []
    assert api.get(f"{API}/sessions/", {"ordering": "password"}).status_code == 400
    assert api.get(f"{API}/sessions/", {"created_after": "yesterday"}).status_code == 400
    for name in ("namespace", "sync_state", "search"):
        assert api.get(f"{API}/sessions/", {name: "a\x00b"}).status_code == 400


def list_queries(api, path: str, **params) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(path, params)
    assert response.status_code == 200
    return len(queries)


def test_list_query_counts_are_constant(api, ann):
    first = make_session(ann, "first", messages=3)
    list_queries(api, f"{API}/sessions/")  # the user's permissions, read once and cached
    small = (
        list_queries(api, f"{API}/sessions/"),
        list_queries(api, f"{API}/sessions/{first.pk}/messages/"),
        list_queries(api, f"{API}/sessions/{first.pk}/memory/"),
    )
    for n in range(30):
        make_session(ann, f"more-{n}", messages=2)
    memory.append_messages(first, [("Human", f"x{n}") for n in range(90)])
    large = (
        list_queries(api, f"{API}/sessions/", page_size=100),
        list_queries(api, f"{API}/sessions/{first.pk}/messages/", page_size=200),
        list_queries(api, f"{API}/sessions/{first.pk}/memory/"),
    )
    assert large == small


def test_retrieval_searches_the_whole_history(api, ann):
    session = make_session(ann)
    memory.append_messages(session, [("Human", "my dog is Rex"), ("AI", "ok")])
    url = f"{API}/sessions/{session.pk}/retrieval/"
    found = api.post(url, {"text": "dog Rex"}, format="json").json()
    if connection.vendor == "postgresql":  # ranked full-text search: distances in [0, 1)
        assert [r["content"] for r in found] == ["my dog is Rex"] and 0 <= found[0]["dist"] < 1
    else:
        assert found == [{"role": "Human", "content": "my dog is Rex", "dist": 0.0}]
    assert api.post(url, {"text": 5}, format="json").status_code == 400
    other = make_session(make_user("bob"), "bobs")
    other_url = f"{API}/sessions/{other.pk}/retrieval/"
    assert api.post(other_url, {"text": "x"}, format="json").status_code == 404


def test_oversized_bodies_are_413_before_parsing(api, ann, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    session = make_session(ann)
    body = {"role": "Human", "content": "x" * 200}
    response = api.post(f"{API}/sessions/{session.pk}/messages/", body, format="json")
    assert (
        response.status_code == 413 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    )
    assert not ChatMessage.objects.exists()


@pytest.mark.parametrize(
    "value,status",
    [
        # Python reads offsets up to a day; PostgreSQL refused this one with a 500.
        ("2024-01-01T00:00:00+23:58", 200),
        # Before year 1 once in UTC: Python cannot represent it.
        ("0001-01-01T00:00:00+05:00", 400),
        ("9999-12-31T23:59:59-05:00", 400),
    ],
)
def test_date_filters_take_any_offset_or_answer_400(api, ann, value, status):
    make_session(ann)
    response = api.get(f"{API}/sessions/", {"created_after": value})
    assert response.status_code == status, response.content
    if status == 400:
        assert "created_after" in response.json()


@pytest.mark.parametrize(
    "state,drift", [("drifted", "the server has no messages"), ("in_doubt", ""), ("synced", "")]
)
def test_sync_status_shows_drift_and_in_doubt_as_their_own_states(api, ann, state, drift):
    session = make_session(ann, messages=1)
    ChatSession.objects.filter(pk=session.pk).update(sync_state=state, drift=drift)
    status = api.get(f"{API}/sessions/{session.pk}/sync/").json()
    assert status["sync_state"] == state and status["drift"] == drift
    listed = api.get(f"{API}/sessions/", {"sync_state": state}).json()["results"]
    assert [s["id"] for s in listed] == [session.pk]


def test_drift_text_is_for_who_may_change_the_session_view_only_sees_that_there_is_drift(ann):
    session = make_session(ann, messages=1)
    text = "3 local message(s) missing from the server's window"
    ChatSession.objects.filter(pk=session.pk).update(sync_state="drifted", drift=text)
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_chatsession"))
    changer = make_user("changer")
    changer.user_permissions.add(Permission.objects.get(codename="change_chatsession"))
    url = f"{API}/sessions/{session.pk}/sync/"
    seen = client_for(viewer).get(url).json()
    assert seen["sync_state"] == "drifted" and seen["drift"] and text not in seen["drift"]
    assert "change permission" in seen["drift"]
    assert client_for(ann).get(url).json()["drift"] == text
    assert client_for(changer).get(url).json()["drift"] == text
    ChatSession.objects.filter(pk=session.pk).update(sync_state="synced", drift="")
    assert client_for(viewer).get(url).json()["drift"] == ""
