"""Session ids per owner, the id on the server, create-or-fail, import and claim."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test import Client
from rest_framework.test import APIClient

from motorhead_django import engine, memory
from motorhead_django.exceptions import MotorheadSessionExistsError, MotorheadValidationError
from motorhead_django.models import ApiKey, ChatSession, parse_server_id, server_id

pytestmark = pytest.mark.django_db


def make_user(name: str):
    return get_user_model().objects.create_user(name)


def compat(client: Client, key: str, path: str, body=None):
    headers = {"HTTP_X_METAL_API_KEY": key}
    if body is None:
        return client.get(f"/motorhead{path}", **headers)
    return client.post(
        f"/motorhead{path}", json.dumps(body), content_type="application/json", **headers
    )


def write(pairs):
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


# -- ids ---------------------------------------------------------------------------------


def test_server_ids_are_scoped_by_owner_and_reversible():
    assert server_id(None, "chat") == "chat"
    assert server_id(7, "chat") == "u7:chat"
    assert parse_server_id("u7:chat") == (7, "chat")
    assert parse_server_id("u7:u3:x") == (7, "u3:x")
    assert parse_server_id("chat") == (None, "chat")
    assert parse_server_id("user:chat") == (None, "user:chat")


def test_two_users_each_have_their_own_session_with_one_id():
    ann, bob = make_user("ann"), make_user("bob")
    mine = memory.create_session("chat", owner=ann)
    theirs = memory.create_session("chat", owner=bob)
    assert mine.pk != theirs.pk
    assert (mine.remote_id, theirs.remote_id) == (f"u{ann.pk}:chat", f"u{bob.pk}:chat")
    with pytest.raises(MotorheadSessionExistsError):
        memory.create_session("chat", owner=ann)
    assert memory.find_session("chat", owner=bob).pk == theirs.pk
    assert memory.find_session("chat") is None  # the ownerless scope holds neither


def test_an_ownerless_id_in_the_reserved_form_is_refused(client, settings):
    with pytest.raises(MotorheadValidationError) as refused:
        memory.create_session("u12:chat")
    assert "reserved" in refused.value.errors["session_id"]
    assert not ChatSession.objects.exists()
    # An owner may use that text as an id: the server id is then u<pk>:u12:chat.
    ann = make_user("ann")
    assert memory.create_session("u12:chat", owner=ann).remote_id == f"u{ann.pk}:u12:chat"
    settings.MOTORHEAD = {"COMPAT_ALLOW_ANONYMOUS": True}
    response = client.post(
        "/motorhead/sessions/u12:x/memory",
        json.dumps(write([("Human", "hi")])),
        content_type="application/json",
    )
    assert response.status_code == 400 and "session_id" in response.json()
    assert not ChatSession.objects.filter(owner__isnull=True).exists()


def test_another_owners_id_answers_exactly_as_a_missing_one(client):
    ann, bob = make_user("ann"), make_user("bob")
    ann_key, bob_key = ApiKey.issue(ann, "a")[1], ApiKey.issue(bob, "b")[1]
    assert (
        compat(client, ann_key, "/sessions/taken/memory", write([("Human", "s3cret")])).status_code
        == 200
    )
    taken = compat(client, bob_key, "/sessions/taken/memory")
    missing = compat(client, bob_key, "/sessions/never-used/memory")
    assert (taken.status_code, taken.content) == (missing.status_code, missing.content)
    assert compat(client, bob_key, "/sessions").json() == []
    # REST: another's session and a missing one are the same 404.
    api = APIClient()
    api.force_authenticate(bob)
    session = ChatSession.objects.get(owner=ann)
    other = api.get(f"/api/sessions/{session.pk}/")
    absent = api.get(f"/api/sessions/{session.pk + 1000}/")
    assert (other.status_code, other.json()) == (absent.status_code, absent.json())
    assert other.status_code == 404
    # And nobody can block ann's id: bob writes his own, ann's stays hers.
    assert (
        compat(client, bob_key, "/sessions/taken/memory", write([("Human", "b")])).status_code
        == 200
    )
    assert api.post("/api/sessions/", {"session_id": "taken"}, format="json").status_code == 409
    carol = APIClient()
    carol.force_authenticate(make_user("carol"))
    assert carol.post("/api/sessions/", {"session_id": "taken"}, format="json").status_code == 201
    ann_memory = compat(client, ann_key, "/sessions/taken/memory").json()
    assert [m["content"] for m in ann_memory["messages"]] == ["s3cret"]
    assert ChatSession.objects.filter(session_id="taken").count() == 3


def test_a_namespaced_key_reaches_only_its_owner_in_its_namespace(client):
    ann = make_user("ann")
    key = ApiKey.issue(ann, "team", namespace="team")[1]
    elsewhere = memory.create_session("y", owner=ann, namespace="other")
    memory.append_messages(elsewhere, [("Human", "other namespace")])
    memory.create_session("x", namespace="team")  # ownerless, same id and namespace
    assert compat(client, key, "/sessions").json() == []
    assert compat(client, key, "/sessions/y/memory").json()["messages"] == []
    assert compat(client, key, "/sessions/x/memory", write([("Human", "mine")])).status_code == 200
    session = ChatSession.objects.get(owner=ann, namespace="team")
    assert session.remote_id == f"u{ann.pk}:x" and session.messages.count() == 1


def test_the_server_sees_the_owner_scoped_id_and_sync_uses_it(upstream):
    ann = make_user("ann")
    legacy = ChatSession.objects.create(session_id="legacy", owner=ann, remote_id="legacy")
    fresh = memory.create_session("fresh", owner=ann)
    for session in (legacy, fresh):
        memory.append_messages(session, [("Human", f"to {session.session_id}")])
        assert engine.push(session.pk).error == ""
    # An existing (or imported) session keeps its server id; a new one is scoped.
    assert upstream.stored_messages("legacy") == [{"role": "Human", "content": "to legacy"}]
    assert upstream.stored_messages(f"u{ann.pk}:fresh") == [
        {"role": "Human", "content": "to fresh"}
    ]
    assert upstream.stored_messages("fresh") == []


def test_a_user_deleted_leaves_sessions_anonymous_callers_cannot_reach(client, settings):
    ann = make_user("ann")
    memory.create_session("diary", owner=ann)
    memory.append_messages(ChatSession.objects.get(), [("Human", "private")])
    ann.delete()
    orphan = ChatSession.objects.get()
    assert orphan.owner is None and orphan.remote_id.endswith(":diary")
    settings.MOTORHEAD = {"COMPAT_ALLOW_ANONYMOUS": True}
    assert client.get("/motorhead/sessions").json() == []
    assert client.get("/motorhead/sessions/diary/memory").json()["messages"] == []


# -- create-or-fail: the database decides -------------------------------------------------


def _race(calls, trials: int = 25) -> list[list]:
    """Run the calls at the same moment in threads, ``trials`` times; their results."""
    results = []
    for trial in range(trials):
        barrier = threading.Barrier(len(calls))
        out: list = [None] * len(calls)

        def run(index: int, call, barrier=barrier, out=out, trial=trial) -> None:
            try:
                barrier.wait(5)
                out[index] = call(trial)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        results.append(out)
    return results


def _rest_create(user, by: str):
    def call(trial: int):
        api = APIClient()
        api.force_authenticate(user)
        body = {"session_id": f"race-{trial}", "metadata": {"by": by}}
        response = api.post("/api/sessions/", body, format="json")
        return response.status_code, response.json()

    return call


@pytest.mark.django_db(transaction=True)
def test_a_create_race_between_two_users_gives_each_their_own(postgres):
    ann, bob = make_user("ann"), make_user("bob")
    results = _race([_rest_create(ann, "ann"), _rest_create(bob, "bob")])
    for trial, pair in enumerate(results):
        assert [status for status, _ in pair] == [201, 201], pair
        rows = ChatSession.objects.filter(session_id=f"race-{trial}")
        assert {(r.owner_id, r.metadata["by"]) for r in rows} == {(ann.pk, "ann"), (bob.pk, "bob")}


@pytest.mark.django_db(transaction=True)
def test_a_create_race_of_one_user_has_exactly_one_winner_left_untouched(postgres):
    ann = make_user("ann")
    results = _race([_rest_create(ann, "first"), _rest_create(ann, "second")])
    for trial, pair in enumerate(results):
        statuses = Counter(status for status, _ in pair)
        assert statuses == Counter({201: 1, 409: 1}), pair
        winner = next(body for status, body in pair if status == 201)
        loser = next(body for status, body in pair if status == 409)
        assert "session_id" in loser
        row = ChatSession.objects.get(session_id=f"race-{trial}")
        assert row.pk == winner["id"] and row.metadata == winner["metadata"]


@pytest.mark.django_db(transaction=True)
def test_a_first_write_race_of_one_key_lands_both_writes_in_one_session(postgres):
    ann = make_user("ann")
    key = ApiKey.issue(ann, "k")[1]

    def writer(text: str):
        def call(trial: int):
            body = write([("Human", text)])
            return compat(Client(), key, f"/sessions/first-{trial}/memory", body).status_code

        return call

    results = _race([writer("a"), writer("b")], trials=10)
    for trial, pair in enumerate(results):
        assert pair == [200, 200]
        session = ChatSession.objects.get(session_id=f"first-{trial}")
        assert sorted(session.messages.values_list("content", flat=True)) == ["a", "b"]


def test_the_admin_adds_sessions_through_the_core(admin_client):
    ann = make_user("ann")
    form = {"session_id": "adm", "namespace": "", "owner": ann.pk, "metadata": "{}", "context": ""}
    response = admin_client.post("/admin/motorhead_django/chatsession/add/", form)
    assert response.status_code == 302, response.content
    assert ChatSession.objects.get(session_id="adm").remote_id == f"u{ann.pk}:adm"
    again = admin_client.post("/admin/motorhead_django/chatsession/add/", form)
    assert again.status_code == 200 and ChatSession.objects.count() == 1  # a form error
    reserved = {**form, "owner": "", "session_id": "u4:adm"}
    page = admin_client.post("/admin/motorhead_django/chatsession/add/", reserved)
    assert page.status_code == 200 and b"reserved" in page.content
    assert ChatSession.objects.count() == 1


# -- import and claim ------------------------------------------------------------------------


def test_import_decodes_owner_ids_and_gives_the_rest_to_owner(upstream, capsys):
    ann, bob = make_user("ann"), make_user("bob")
    upstream.preload("plain", [("Human", "old history")])
    upstream.preload(f"u{bob.pk}:his", [("Human", "bob's")])
    upstream.preload("u99999:ghost", [("Human", "nobody's")])
    upstream.preload(f"u{ann.pk}:hers", [("Human", "ann's")])
    call_command("motorhead_import", "--owner", "ann")
    plain = ChatSession.objects.get(session_id="plain")
    assert (plain.owner_id, plain.remote_id) == (ann.pk, "plain")
    hers = ChatSession.objects.get(session_id="hers")
    assert (hers.owner_id, hers.remote_id) == (ann.pk, f"u{ann.pk}:hers")
    # With --owner, an id naming another user is given to neither: listed with the reason.
    assert not ChatSession.objects.filter(remote_id__contains="his").exists()
    assert not ChatSession.objects.filter(remote_id__contains="ghost").exists()
    captured = capsys.readouterr()
    assert f"u{bob.pk}:his" in captured.err and f"user {bob.pk}'s session" in captured.err
    assert "u99999:ghost" in captured.err and "not the --owner's" in captured.err
    # Without --owner, the id's own user gets it (and an unknown user is refused).
    call_command("motorhead_import")
    his = ChatSession.objects.get(session_id="his")
    assert (his.owner_id, his.remote_id) == (bob.pk, f"u{bob.pk}:his")
    assert not ChatSession.objects.filter(remote_id__contains="ghost").exists()
    assert "does not exist" in capsys.readouterr().err
    # Ann's key reaches her imported history, and a write there goes to the same server id.
    client, key = Client(), ApiKey.issue(ann, "k")[1]
    got = compat(client, key, "/sessions/plain/memory").json()
    assert [m["content"] for m in got["messages"]] == ["old history"]
    assert compat(client, key, "/sessions/plain/memory", write([("AI", "new")])).status_code == 200
    assert engine.push(plain.pk).error == ""
    assert [m["content"] for m in upstream.stored_messages("plain")] == ["old history", "new"]
    # A rerun finds them by their server id: nothing twice.
    call_command("motorhead_import", "--owner", "ann")
    assert "0 session(s) imported, 3 already there" in capsys.readouterr().out


def test_import_refuses_an_unknown_owner(upstream):
    with pytest.raises(CommandError, match="no such user"):
        call_command("motorhead_import", "--owner", "nobody")


def test_claim_gives_ownerless_sessions_to_a_user(upstream, capsys):
    ann = make_user("ann")
    upstream.preload("one", [("Human", "1")])
    upstream.preload("two", [("Human", "2")])
    result = engine.import_sessions([""])
    assert result.sessions == 2 and not ChatSession.objects.filter(owner__isnull=False).exists()
    mine = memory.create_session("two", owner=ann)  # ann already has a "two" of her own
    key = ApiKey.issue(ann, "k")[1]
    client = Client()
    assert compat(client, key, "/sessions/one/memory").json()["messages"] == []
    with pytest.raises(CommandError, match="not claimed"):
        call_command("motorhead_claim", "ann", "--all")
    err = capsys.readouterr().err
    assert "two" in err and "already has" in err
    one = ChatSession.objects.get(session_id="one")
    assert one.owner_id == ann.pk and one.remote_id == "one"
    got = compat(client, key, "/sessions/one/memory").json()
    assert [m["content"] for m in got["messages"]] == ["1"]
    assert ChatSession.objects.get(session_id="two", owner__isnull=True).remote_id == "two"
    assert ChatSession.objects.get(pk=mine.pk).remote_id == f"u{ann.pk}:two"


def test_claim_needs_a_user_and_a_choice(capsys):
    make_user("ann")
    memory.create_session("s")
    with pytest.raises(CommandError, match="No user"):
        call_command("motorhead_claim", "nobody", "--all")
    with pytest.raises(CommandError, match="--session ID, or pass --all"):
        call_command("motorhead_claim", "ann")
    call_command("motorhead_claim", "ann", "--session", "s", "--session", "t", "--dry-run")
    captured = capsys.readouterr()
    assert "Would claim 1 session(s)" in captured.out and "'t'" in captured.err
    assert ChatSession.objects.get().owner is None
    call_command("motorhead_claim", "ann", "--session", "s", "--namespace", "")
    assert ChatSession.objects.get().owner.username == "ann"


def test_an_admin_add_that_loses_a_race_saves_nothing_and_says_so(admin_client, monkeypatch):
    ann = make_user("ann")
    winner = memory.create_session("adm", owner=ann, metadata={"by": "winner"})

    def lose(*args, **kwargs):
        # What the core raises when another request inserted the same id in between.
        raise MotorheadSessionExistsError(session_id="adm")

    monkeypatch.setattr(memory, "create_session", lose)
    form = {"session_id": "adm2", "namespace": "", "owner": ann.pk, "metadata": "{}", "context": ""}
    response = admin_client.post("/admin/motorhead_django/chatsession/add/", form, follow=True)
    assert response.status_code == 200 and b"created meanwhile" in response.content
    rows = list(ChatSession.objects.values_list("pk", "metadata"))
    assert rows == [(winner.pk, {"by": "winner"})]


def test_langchain_history_refuses_a_reserved_id_without_an_owner():
    pytest.importorskip("langchain_core")
    from motorhead_django.langchain import DjangoChatMessageHistory

    with pytest.raises(MotorheadValidationError):
        DjangoChatMessageHistory("u3:chat")
    ann = make_user("ann")
    history = DjangoChatMessageHistory("u3:chat", owner=ann)
    assert history.session.remote_id == f"u{ann.pk}:u3:chat"
    assert DjangoChatMessageHistory("chat", owner=ann).session.pk != history.session.pk


def test_an_anonymous_write_to_a_claimed_id_is_a_clean_conflict(client, settings):
    """A session claimed by a user keeps its plain server id, which no ownerless session can
    then take: an anonymous first write to that id is a 409, and the owner's session stays."""
    ann = make_user("ann")
    legacy = memory.create_session("old")
    memory.append_messages(legacy, [("Human", "ann's past")])
    memory.claim_sessions([legacy], ann)
    settings.MOTORHEAD = {"COMPAT_ALLOW_ANONYMOUS": True}
    response = client.post(
        "/motorhead/sessions/old/memory",
        json.dumps(write([("Human", "intruder")])),
        content_type="application/json",
    )
    assert response.status_code == 409 and "session_id" in response.json()
    assert list(ChatSession.objects.get().messages.values_list("content", flat=True)) == [
        "ann's past"
    ]


def test_create_session_runs_the_cores_validators_before_writing():
    ann = make_user("ann")
    with pytest.raises(MotorheadValidationError) as bad_metadata:
        memory.create_session("m", owner=ann, metadata={"deep": float("nan")})
    assert "metadata.deep" in bad_metadata.value.errors
    with pytest.raises(MotorheadValidationError) as bad_namespace:
        memory.create_session("m", owner=ann, namespace="a\nb")
    assert "namespace" in bad_namespace.value.errors
    with pytest.raises(MotorheadValidationError) as bad_context:
        memory.create_session("m", owner=ann, context="\x00")
    assert "context" in bad_context.value.errors
    assert not ChatSession.objects.exists()
    session = memory.create_session("m", owner=ann, metadata={"k": 1}, context="sum")
    assert (session.metadata, session.context) == ({"k": 1}, "sum")


def test_the_commands_refuse_a_nul_in_a_username(upstream):
    with pytest.raises(CommandError, match="NUL"):
        call_command("motorhead_import", "--owner", "a\x00b")
    with pytest.raises(CommandError, match="NUL"):
        call_command("motorhead_claim", "a\x00b", "--all")


def test_motorhead_sync_names_a_session_by_its_server_id(upstream, capsys):
    ann, bob = make_user("ann"), make_user("bob")
    for user in (ann, bob):
        session = memory.create_session("chat", owner=user)
        memory.append_messages(session, [("Human", f"from {user.username}")])
    call_command("motorhead_sync", "--session", f"u{ann.pk}:chat")
    assert "Pushing 1 session(s)" in capsys.readouterr().out
    assert upstream.stored_messages(f"u{ann.pk}:chat") == [{"role": "Human", "content": "from ann"}]
    assert upstream.stored_messages(f"u{bob.pk}:chat") == []
    call_command("motorhead_sync", "--session", "chat")  # the id alone: every owner's
    assert "Pushing 2 session(s)" in capsys.readouterr().out
    assert upstream.stored_messages(f"u{bob.pk}:chat") == [{"role": "Human", "content": "from bob"}]


def test_every_server_call_for_an_owned_session_uses_its_server_id(upstream, settings):
    """Push, pull, verify, rehydration, full resync, delete on the server, retrieval and the
    remote delete all address the server by remote_id: none by the owner's bare id."""
    settings.MOTORHEAD = {**settings.MOTORHEAD, "LONG_TERM_MEMORY": True}
    ann = make_user("ann")
    session = memory.create_session("chat_1", owner=ann)
    memory.append_messages(session, [("Human", "hello there")])
    assert engine.push(session.pk).error == ""
    assert engine.pull(session.pk).done
    assert engine.verify(session.pk).done
    assert engine.rehydrate(session.pk).done
    assert engine.resync(session.pk).done
    assert engine.delete(session.pk, scope=engine.Scope.REMOTE).done
    memory.retrieve(session, "hello")
    memory.delete_session(session, remote=True)
    engine.delete(session.pk, scope=engine.Scope.BOTH)
    paths = {r.path for r in upstream.requests if r.path.startswith("/sessions/")}
    scoped = f"/sessions/u{ann.pk}%3Achat_1"  # the path segment of u<pk>:chat_1
    expected = {f"{scoped}/memory", f"{scoped}/retrieval"}
    assert paths == expected, paths
    assert {r.method for r in upstream.requests if r.path in expected} >= {"GET", "POST", "DELETE"}
    assert not ChatSession.objects.filter(pk=session.pk).exists()


def test_an_anonymous_request_user_as_owner_is_a_clear_validation_error():
    """The README's view snippet without a login: refused by name, not a TypeError (a 500)."""
    from django.contrib.auth.models import AnonymousUser

    from motorhead_django.exceptions import MotorheadValidationError

    with pytest.raises(MotorheadValidationError, match="signed-in user or None, not AnonymousUser"):
        memory.get_or_create_session("user-42", owner=AnonymousUser())
    assert not ChatSession.objects.exists()


def test_a_server_id_is_held_once_across_namespaces(upstream):
    """Motorhead's message storage is not namespaced: one server id is one conversation, so
    one local session holds it, whatever the namespace (the same owner's second one is a 409)."""
    ann = make_user("ann")
    first = memory.create_session("chat", namespace="app-a", owner=ann)
    memory.append_messages(first, [("Human", "secret of app A")])
    assert engine.push(first.pk).error == ""
    with pytest.raises(MotorheadSessionExistsError):
        memory.create_session("chat", namespace="app-b", owner=ann)
    with pytest.raises(MotorheadSessionExistsError):
        memory.get_or_create_session("chat", namespace="app-b", owner=ann)
    # An ownerless id too, and an imported one passing the server id itself.
    memory.create_session("plain", namespace="app-a")
    with pytest.raises(MotorheadSessionExistsError):
        memory.create_session("plain", namespace="app-b")
    with pytest.raises(MotorheadSessionExistsError):
        memory.create_session("other", namespace="app-b", owner=ann, remote_id="plain")
    assert list(ChatSession.objects.values_list("namespace", flat=True)) == ["app-a", "app-a"]
    # Deleting on the server can only ever touch the one session's conversation.
    assert [m["content"] for m in upstream.stored_messages(first.remote_id)] == ["secret of app A"]


def test_an_anonymous_write_in_another_namespace_cannot_reach_a_claimed_session(
    client, settings, upstream
):
    ann = make_user("ann")
    legacy = memory.create_session("chat")
    memory.append_messages(legacy, [("Human", "ann private")])
    assert engine.push(legacy.pk).error == ""
    memory.claim_sessions([legacy], ann)
    settings.MOTORHEAD = {**settings.MOTORHEAD, "COMPAT_ALLOW_ANONYMOUS": True}
    response = client.post(
        "/motorhead/sessions/chat/memory?namespace=evil",
        json.dumps(write([("Human", "injected")])),
        content_type="application/json",
    )
    assert response.status_code == 409 and "session_id" in response.json()
    assert not ChatSession.objects.filter(namespace="evil").exists()
    assert [m["content"] for m in upstream.stored_messages("chat")] == ["ann private"]


def test_import_refuses_a_server_id_already_held_under_another_namespace(upstream, capsys):
    upstream.preload("shared", [("Human", "one conversation")], namespace="a")
    upstream.store.touch_session("shared", "b")  # posted under "b" too: listed in both
    call_command("motorhead_import", "--namespace", "a", "--namespace", "b")
    assert list(ChatSession.objects.values_list("namespace", "remote_id")) == [("a", "shared")]
    err = capsys.readouterr().err
    assert "'shared'" in err and "Already held here under namespace 'a'" in err


def test_an_ownerless_id_in_the_moved_form_is_refused():
    with pytest.raises(MotorheadValidationError) as refused:
        memory.create_session("n12:chat")
    assert "reserved" in refused.value.errors["session_id"]
    ann = make_user("ann")
    assert memory.create_session("n12:chat", owner=ann).remote_id == f"u{ann.pk}:n12:chat"


def test_the_admin_refuses_a_server_id_held_in_another_namespace(admin_client, admin_user):
    memory.create_session("chat", namespace="a", owner=admin_user)
    response = admin_client.post(
        "/admin/motorhead_django/chatsession/add/",
        {"session_id": "chat", "namespace": "b", "owner": admin_user.pk, "metadata": "{}"},
        follow=True,
    )
    assert response.status_code == 200 and b"in another namespace" in response.content
    assert list(ChatSession.objects.values_list("namespace", flat=True)) == ["a"]
