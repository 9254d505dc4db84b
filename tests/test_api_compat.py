"""The Motorhead-compatible routes, through Django's test client: shapes, order, errors, scope."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from motorhead_django import memory
from motorhead_django.models import ApiKey, ChatMessage, ChatSession

pytestmark = pytest.mark.django_db

BASE = "/motorhead"


def make_key(username: str = "alice", namespace: str | None = None) -> str:
    user, _ = get_user_model().objects.get_or_create(username=username)
    return ApiKey.issue(user, f"{username}'s key", namespace=namespace)[1]


class Caller:
    """A Motorhead client speaking to our routes with one key (or none)."""

    def __init__(self, client, key: str | None = None, in_url: bool = False) -> None:
        self.client, self.key, self.in_url = client, key, in_url

    def url(self, path: str) -> str:
        return f"{BASE}/k/{self.key}{path}" if self.in_url else f"{BASE}{path}"

    def headers(self) -> dict[str, str]:
        return {"HTTP_X_METAL_API_KEY": self.key} if self.key and not self.in_url else {}

    def get(self, path: str, **params):
        return self.client.get(self.url(path), params, **self.headers())

    def post(self, path: str, body, content_type: str = "application/json"):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.post(self.url(path), data, content_type=content_type, **self.headers())

    def delete(self, path: str):
        return self.client.delete(self.url(path), **self.headers())

    def add(self, session_id: str, *pairs: tuple[str, str], **extra):
        body = {"messages": [{"role": r, "content": c} for r, c in pairs], **extra}
        return self.post(f"/sessions/{quote(session_id, safe='')}/memory", body)

    def memory(self, session_id: str) -> dict:
        response = self.get(f"/sessions/{quote(session_id, safe='')}/memory")
        assert response.status_code == 200, response.content
        return response.json()


@pytest.fixture
def alice(client) -> Caller:
    return Caller(client, make_key("alice"))


def test_health_needs_no_key(client):
    before = time.time_ns() // 1_000_000
    response = client.get(f"{BASE}/")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert before <= response.json()["now"] <= time.time_ns() // 1_000_000


def test_post_then_get_newest_first_like_the_server(alice):
    assert alice.add("chat", ("Human", "q1"), ("AI", "a1")).json() == {"status": "Ok"}
    alice.add("chat", ("Human", "q2"), ("AI", "a2"))
    response = alice.get("/sessions/chat/memory")
    # The server's exact bytes: compact JSON, fields in its order.
    assert response.content == (
        b'{"messages":[{"role":"AI","content":"a2"},{"role":"Human","content":"q2"},'
        b'{"role":"AI","content":"a1"},{"role":"Human","content":"q1"}],'
        b'"context":null,"tokens":0}'
    )


def test_window_is_window_size_plus_one_and_nothing_is_dropped_locally(alice, settings):
    settings.MOTORHEAD = {"WINDOW_SIZE": 4}
    alice.add("w", *[("Human", f"m{n}") for n in range(1, 11)])
    contents = [m["content"] for m in alice.memory("w")["messages"]]
    assert contents == ["m10", "m9", "m8", "m7", "m6"]
    assert ChatMessage.objects.filter(session__session_id="w").count() == 10


def test_context_is_set_by_a_post_and_kept_by_one_without(alice):
    alice.add("c", ("Human", "hi"), context="a summary")
    alice.add("c", ("Human", "again"), context=None)
    alice.add("c", ("Human", "more"))
    assert alice.memory("c")["context"] == "a summary"


def test_in_local_only_mode_a_summarizer_writes_the_context(
    alice, settings, django_capture_on_commit_callbacks
):
    settings.MOTORHEAD = {"WINDOW_SIZE": 2, "SUMMARIZER": "tests.test_memory.joining_summarizer"}
    with django_capture_on_commit_callbacks(execute=True):
        alice.add("sum", ("Human", "q1"), ("AI", "a1"))
        alice.add("sum", ("Human", "q2"), ("AI", "a2"))
    body = alice.memory("sum")
    assert [m["content"] for m in body["messages"]] == ["a2", "q2", "a1"]
    assert body["context"] == "q1"


def test_unknown_session_is_empty_and_get_creates_nothing(alice):
    assert alice.memory("nobody") == {"messages": [], "context": None, "tokens": 0}
    assert not ChatSession.objects.exists()


def test_sessions_are_created_for_the_keys_owner(alice):
    alice.add("mine", ("Human", "hi"))
    assert ChatSession.objects.get(session_id="mine").owner.username == "alice"


def test_delete_removes_the_session_and_is_always_ok(alice):
    alice.add("gone", ("Human", "hi"))
    assert alice.delete("/sessions/gone/memory").json() == {"status": "Ok"}
    assert not ChatSession.objects.filter(session_id="gone").exists()
    assert ChatMessage.objects.count() == 0
    assert alice.delete("/sessions/never-was/memory").json() == {"status": "Ok"}


def test_sessions_list_least_recently_written_first_and_paged(alice):
    for name in ("b", "a", "c"):
        alice.add(name, ("Human", "hi"))
    alice.add("b", ("Human", "newest write"))
    assert alice.get("/sessions").json() == ["a", "c", "b"]
    assert alice.get("/sessions", page=2, size=2).json() == ["b"]
    assert alice.get("/sessions", page=100, size=2).json() == []


@pytest.mark.parametrize(
    "params",
    [
        {"page": 101},
        {"page": 0},
        {"size": 0},
        {"page": "abc"},
        {"page": "-1"},
        {"size": "9" * 5000},
    ],
)
def test_bad_paging_is_a_json_400(alice, params):
    response = alice.get("/sessions", **params)
    assert response.status_code == 400
    assert set(response.json()) <= {"page", "size"}


def test_namespaces_are_separate(alice):
    alice.add("s", ("Human", "default"))
    alice.post(
        "/sessions/t/memory?namespace=ns", {"messages": [{"role": "AI", "content": "in ns"}]}
    )
    assert alice.get("/sessions", namespace="ns").json() == ["t"]
    assert alice.get("/sessions").json() == ["s"]
    assert [m["content"] for m in alice.memory("s")["messages"]] == ["default"]
    in_ns = alice.get("/sessions/t/memory", namespace="ns").json()
    assert [m["content"] for m in in_ns["messages"]] == ["in ns"]


def test_one_id_in_a_second_namespace_is_a_conflict(alice):
    """Motorhead's messages are not namespaced: one id is one conversation on the server,
    so it is held by one session here, in the namespace that first wrote it."""
    alice.add("s", ("Human", "default"))
    response = alice.post(
        "/sessions/s/memory?namespace=ns", {"messages": [{"role": "AI", "content": "in ns"}]}
    )
    assert response.status_code == 409 and "session_id" in response.json()
    assert alice.get("/sessions", namespace="ns").json() == []
    assert [m["content"] for m in alice.memory("s")["messages"]] == ["default"]


# -- bad input: a clear 4xx with valid JSON, and nothing written ----------------------


@pytest.mark.parametrize(
    "body,field",
    [
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": "x"}, "messages"),
        ({"messages": None}, "messages"),
        ({"messages": [{"role": "Human"}]}, "messages"),
        ({"messages": [{"role": "Human", "content": 5}]}, "messages"),
        ({"messages": [{"role": "", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "Human", "content": "a\x00b"}]}, "messages"),
        ({"messages": [{"role": "Hu\x00man", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "Human", "content": "\ud800"}]}, "messages"),
        ({"messages": [{"role": "Human", "content": "x"}], "context": 3}, "context"),
        ([[["Human", "hi"]], None], "non_field_errors"),
    ],
)
def test_bad_bodies_are_field_level_400s_with_no_side_effects(alice, body, field):
    response = alice.post(
        "/sessions/bad/memory",
        body,
    )
    assert response.status_code == 400
    assert field in response.json()
    assert not ChatSession.objects.exists()


@pytest.mark.parametrize("raw", ['{"messages": [', "", '{"messages": NaN}', "\xff"])
def test_malformed_json_is_a_json_400(alice, raw):
    response = alice.post("/sessions/bad/memory", raw)
    assert response.status_code == 400
    assert response.json()
    assert not ChatSession.objects.exists()


def test_not_json_is_a_415(alice):
    response = alice.post("/sessions/bad/memory", "messages", content_type="text/plain")
    assert response.status_code == 415 and "detail" in response.json()


def test_limits_from_settings_are_400s_and_leave_no_session(alice, settings):
    settings.MOTORHEAD = {
        "ALLOWED_ROLES": ["Human", "AI"],
        "MAX_CONTENT_LENGTH": 10,
        "MAX_MESSAGES_PER_REQUEST": 2,
    }
    role = alice.add("lim", ("System", "x"))
    assert role.status_code == 400 and "Unknown role" in role.json()["messages[0].role"][0]
    long = alice.add("lim", ("Human", "ok"), ("AI", "x" * 11))
    assert long.status_code == 400 and "messages[1].content" in long.json()
    many = alice.add("lim", *[("Human", "x")] * 3)
    assert many.status_code == 400 and "messages" in many.json()
    assert not ChatSession.objects.exists()


def test_ids_with_slashes_dots_and_spaces_round_trip(alice):
    for session_id in ("a/b", "a.b", "..", "with space", "ünï/cødé", "a%2Fb"):
        assert alice.add(session_id, ("Human", session_id)).status_code == 200
        assert alice.memory(session_id)["messages"][0]["content"] == session_id
    assert sorted(alice.get("/sessions").json()) == sorted(
        ["a/b", "a.b", "..", "with space", "ünï/cødé", "a%2Fb"]
    )


@pytest.mark.parametrize("session_id", ["a\x00b", "a\nb", "tab\there", "\x7f", "x" * 10_000])
def test_bad_ids_are_400s_on_every_route(alice, session_id):
    path = f"/sessions/{quote(session_id, safe='')}"
    body = {"messages": [{"role": "Human", "content": "x"}]}
    answers = [
        alice.get(f"{path}/memory"),
        alice.post(f"{path}/memory", body),
        alice.delete(f"{path}/memory"),
        alice.post(f"{path}/retrieval", {"text": "x"}),
    ]
    assert [a.status_code for a in answers] == [400] * 4
    assert all("session_id" in a.json() for a in answers)
    assert not ChatSession.objects.exists()


@pytest.mark.parametrize("namespace", ["a\x00b", "n" * 256])
def test_bad_namespaces_are_400s(alice, namespace):
    assert alice.get("/sessions", namespace=namespace).status_code == 400
    assert alice.get("/sessions/s/memory", namespace=namespace).status_code == 400


def test_unknown_paths_and_methods_are_json_4xx(alice):
    assert alice.get("/nope").status_code == 404
    assert alice.get("/nope").json() == {"detail": "Not found."}
    assert alice.get("/sessions/x/memory/").status_code == 404
    response = alice.client.put(f"{BASE}/sessions/x/memory", **alice.headers())
    assert response.status_code == 405 and response.json()


# -- retrieval ---------------------------------------------------------------------


def test_retrieval_is_a_local_search_in_the_servers_shape(alice):
    alice.add(
        "r",
        ("Human", "my cat is called Tom"),
        ("AI", "nice cat"),
        ("Human", "the weather is bad"),
    )
    found = alice.post("/sessions/r/retrieval", {"text": "cat Tom"}).json()
    assert [(r["role"], r["content"]) for r in found] == [
        ("Human", "my cat is called Tom"),
        ("AI", "nice cat"),
    ]
    if connection.vendor == "postgresql":  # ranked full-text search: distances in [0, 1)
        assert 0 <= found[0]["dist"] < found[1]["dist"] < 1
    else:
        assert [r["dist"] for r in found] == [0.0, 0.5]
    assert alice.post("/sessions/unknown/retrieval", {"text": "cat"}).json() == []
    assert alice.post("/sessions/r/retrieval", {"text": ""}).status_code == 400
    assert alice.post("/sessions/r/retrieval", {}).status_code == 400


# -- who sees what -----------------------------------------------------------------


def test_no_key_is_401_unless_anonymous_access_is_allowed(client, settings):
    anonymous = Caller(client)
    response = anonymous.get("/sessions")
    assert response.status_code == 401 and "API key" in response.json()["detail"]
    assert anonymous.add("s", ("Human", "hi")).status_code == 401
    settings.MOTORHEAD = {"COMPAT_ALLOW_ANONYMOUS": True}
    assert anonymous.add("s", ("Human", "hi")).status_code == 200
    assert anonymous.get("/sessions").json() == ["s"]
    assert ChatSession.objects.get().owner is None


def test_anonymous_callers_never_reach_owned_sessions(client, alice, settings):
    settings.MOTORHEAD = {"COMPAT_ALLOW_ANONYMOUS": True}
    alice.add("private", ("Human", "secret"))
    anonymous = Caller(client)
    assert anonymous.get("/sessions").json() == []
    assert anonymous.memory("private")["messages"] == []


def test_a_key_never_reaches_another_owners_sessions(client, alice):
    bob = Caller(client, make_key("bob"))
    alice.add("alices", ("Human", "secret"))
    assert bob.get("/sessions").json() == []
    assert bob.memory("alices") == {"messages": [], "context": None, "tokens": 0}
    assert bob.post("/sessions/alices/retrieval", {"text": "secret"}).json() == []
    assert bob.delete("/sessions/alices/memory").status_code == 200
    # Ids are per owner: bob's write makes his own "alices", alice's stays as it was.
    assert bob.add("alices", ("Human", "his own")).status_code == 200
    assert [m["content"] for m in alice.memory("alices")["messages"]] == ["secret"]
    assert [m["content"] for m in bob.memory("alices")["messages"]] == ["his own"]


def test_a_namespaced_key_only_reaches_its_namespace(client, alice):
    scoped = Caller(client, make_key("alice", namespace="team"))
    alice.add("outside", ("Human", "x"))
    scoped.add("inside", ("Human", "y"))
    assert ChatSession.objects.get(session_id="inside").namespace == "team"
    assert scoped.get("/sessions").json() == ["inside"]
    assert scoped.get("/sessions", namespace="team").json() == ["inside"]
    assert scoped.get("/sessions", namespace="").status_code == 403
    assert scoped.memory("outside")["messages"] == []


def test_the_key_can_ride_in_the_url(client):
    key = make_key()
    in_url = Caller(client, key, in_url=True)
    assert in_url.add("u", ("Human", "hi")).status_code == 200
    assert in_url.memory("u")["messages"] == [{"role": "Human", "content": "hi"}]
    assert in_url.get("/sessions").json() == ["u"]
    assert in_url.delete("/sessions/u/memory").status_code == 200
    assert in_url.get("/").status_code == 200
    assert in_url.get("/nope").status_code == 404


def test_bad_revoked_or_mismatched_keys_are_401_and_never_echoed(client):
    key = make_key()
    for bad in ("nope", key[:-1] + ("A" if key[-1] != "A" else "B"), "mhd_" + "0" * 40):
        for caller in (Caller(client, bad), Caller(client, bad, in_url=True)):
            response = caller.get("/sessions")
            assert response.status_code == 401, bad
            assert bad.encode() not in response.content
    prefix = ApiKey.objects.get().prefix
    good = Caller(client, key)
    ok = client.get(f"{BASE}/sessions", HTTP_X_METAL_API_KEY=key, HTTP_X_METAL_CLIENT_ID=prefix)
    assert ok.status_code == 200
    wrong = client.get(f"{BASE}/sessions", HTTP_X_METAL_API_KEY=key, HTTP_X_METAL_CLIENT_ID="x")
    assert wrong.status_code == 401
    ApiKey.objects.get().revoke()
    assert good.get("/sessions").status_code == 401
    assert Caller(client, key, in_url=True).get("/sessions").status_code == 401


def test_an_inactive_owner_locks_their_keys_out(client):
    key = make_key("carol")
    get_user_model().objects.filter(username="carol").update(is_active=False)
    assert Caller(client, key).get("/sessions").status_code == 401


# -- sync and performance ----------------------------------------------------------


def test_a_post_is_pushed_upstream_when_a_server_is_configured(
    alice, settings, motorhead_server, django_capture_on_commit_callbacks
):
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    with django_capture_on_commit_callbacks(execute=True):
        alice.add("up", ("Human", "q"), ("AI", "a"), context="summary")
    session = ChatSession.objects.get(session_id="up")
    assert session.remote_id == f"u{session.owner_id}:up"  # the id on the server
    assert motorhead_server.stored_messages(session.remote_id) == [
        {"role": "Human", "content": "q"},
        {"role": "AI", "content": "a"},
    ]
    assert session.sync_state == "synced"
    assert motorhead_server.context(session.remote_id) == "summary"


def count_queries(call) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    assert response.status_code == 200
    return len(queries)


def test_query_counts_do_not_grow_with_history_or_sessions(alice):
    alice.add("q", ("Human", "one"))
    alice.add("other", ("Human", "one"))
    small = (
        count_queries(lambda: alice.get("/sessions/q/memory")),
        count_queries(lambda: alice.get("/sessions")),
    )
    session = ChatSession.objects.get(session_id="q")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(90)])
    for n in range(30):
        alice.add(f"more-{n}", ("Human", "x"))
    large = (
        count_queries(lambda: alice.get("/sessions/q/memory")),
        count_queries(lambda: alice.get("/sessions", size=100)),
    )
    assert large == small


def test_oversized_bodies_are_413(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = alice.add("big", ("Human", "x" * 200))
    assert response.status_code == 413 and response.json()["detail"]
    assert not ChatSession.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_delete_with_an_upstream_deletes_there_too(alice, settings, motorhead_server):
    """With a server configured (and eager Celery), the tombstone is confirmed at once."""
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    alice.add("mirrored", ("Human", "hi"))
    remote_id = ChatSession.objects.get(session_id="mirrored").remote_id
    assert len(motorhead_server.stored_messages(remote_id)) == 1
    assert alice.delete("/sessions/mirrored/memory").json() == {"status": "Ok"}
    assert motorhead_server.stored_messages(remote_id) == []
    assert not ChatSession.objects.filter(session_id="mirrored").exists()


def test_the_compatible_routes_have_their_own_throttle_scope(alice, settings):
    cache.clear()
    settings.REST_FRAMEWORK = settings.REST_FRAMEWORK | {
        "DEFAULT_THROTTLE_RATES": {"motorhead-compat": "2/min"}
    }
    statuses = [alice.get("/sessions").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
