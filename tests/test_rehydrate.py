"""Rehydration and remote deletes, in process, against the test server over real HTTP."""

from __future__ import annotations

import json
import time

import pytest
import requests
from django.core.management import CommandError, call_command

from motorhead_django import memory, tasks
from motorhead_django.engine import deletion, passes, pulling, rehydration, verifying
from motorhead_django.models import ChatMessage, ChatSession, SyncState

pytestmark = pytest.mark.django_db


@pytest.fixture
def upstream(upstream, settings):
    """The shared upstream, giving up after two retries."""
    settings.MOTORHEAD = settings.MOTORHEAD | {
        "RETRY_BACKOFF": 0.05,
        "RETRY_BACKOFF_MAX": 0.1,
        "MAX_RETRIES": 2,
    }
    return upstream


def langchain_read(server, session_id: str) -> tuple[list[str], str | None]:
    """What LangChain's MotorheadMemory.init() reads: reversed messages, the context."""
    data = requests.get(f"{server.url}/sessions/{session_id}/memory", timeout=5).json()
    return [m["content"] for m in reversed(data["messages"])], data["context"]


def test_a_wiped_server_is_found_drifted_and_rehydrated(upstream, capsys):
    session = memory.get_or_create_session("talk", namespace="team")
    for n in range(3):
        memory.append_messages(session, [("Human", f"q{n}-{k}") for k in range(13)])
        passes.push_session(session.pk)
        upstream.wait_for_compactions()
    pulling.pull_session(session.pk)
    session.refresh_from_db()
    summary = session.context
    assert summary and session.summaries.count() >= 1

    upstream.wipe()
    # A drift found is an exit status of 1 naming the session.
    with pytest.raises(CommandError, match=r"1 session\(s\) drifted: team/talk\."):
        call_command("motorhead_sync", "--verify")
    assert "team/talk: drifted: the server has no messages" in capsys.readouterr().out
    session.refresh_from_db()
    assert session.sync_state == SyncState.DRIFTED and "wiped" in session.drift

    before = len(upstream.requests)
    call_command("motorhead_sync", "--rehydrate", "--drifted-only")
    assert "12 message(s) and the summary" in capsys.readouterr().out
    newest = [m.content for m in memory.history(session)][-12:]
    assert langchain_read(upstream, "talk") == (newest, summary)
    assert upstream.sessions("team") == ["talk"]
    # Paced: the server's list never passed the window, so nothing was compacted.
    posts = [json.loads(r.body) for r in upstream.requests[before:] if r.method == "POST"]
    assert [len(p["messages"]) for p in posts] == [6, 6] and posts[0]["context"] == summary
    upstream.wait_for_compactions()
    assert upstream.context("talk") == summary
    session.refresh_from_db()
    assert session.sync_state == SyncState.SYNCED and session.drift == ""
    assert verifying.verify_session(session.pk) == ""


def test_rehydrating_twice_does_not_duplicate(upstream):
    session = memory.get_or_create_session("twice")
    memory.append_messages(session, [("Human", "a"), ("AI", "b")])
    passes.push_session(session.pk)
    rehydration.rehydrate_session(session.pk)
    upstream.faults.fail_next(1, mode="apply_then_drop", methods={"POST"})
    assert rehydration.rehydrate_session(session.pk).error
    assert rehydration.rehydrate_session(session.pk).sent == 2
    assert upstream.stored_messages("twice") == [
        {"role": "Human", "content": "a"},
        {"role": "AI", "content": "b"},
    ]


def test_delete_while_the_server_is_down_completes_when_it_is_back(
    upstream, django_capture_on_commit_callbacks
):
    session = memory.get_or_create_session("bye", namespace="ns")
    memory.append_messages(session, [("Human", "hi")])
    passes.push_session(session.pk)
    assert upstream.sessions("ns") == ["bye"]
    upstream.stop()
    with django_capture_on_commit_callbacks(execute=True):
        memory.delete_session(session)
    session.refresh_from_db()
    # A tombstone: the content stays until the server confirmed.
    assert session.sync_state == SyncState.DELETING and session.delete_requested_at
    assert "could not connect" in session.last_error and session.next_attempt_at
    assert ChatMessage.objects.filter(session=session).count() == 1
    tasks.sweep()  # still down: the tombstone waits
    assert ChatSession.objects.filter(pk=session.pk, sync_state=SyncState.DELETING).exists()
    upstream.start()
    deadline = time.monotonic() + 10
    while ChatSession.objects.filter(pk=session.pk).exists():
        assert time.monotonic() < deadline, "the delete never completed"
        time.sleep(0.05)
        tasks.sweep()
    assert not ChatMessage.objects.exists()
    assert upstream.sessions("ns") == [] and upstream.stored_messages("bye") == []
    deletes = upstream.requests_for("DELETE")
    assert deletes and all(r.query == "namespace=ns" for r in deletes)


def test_a_push_finishing_after_the_delete_request_does_not_cancel_it(upstream):
    session = memory.get_or_create_session("race")
    memory.append_messages(session, [("Human", "hi")])
    memory.delete_session(session)  # on_commit never runs here: the task is not sent
    passes.push_session(session.pk)  # a push that was already queued
    assert deletion.due_deletions() == [session.pk]
    assert deletion.delete_remote(session.pk).deleted
    assert not ChatSession.objects.exists() and upstream.stored_messages("race") == []


@pytest.mark.parametrize("how", ["argument", "setting"])
def test_local_only_delete_leaves_the_server_alone(upstream, settings, how):
    session = memory.get_or_create_session("keep")
    memory.append_messages(session, [("Human", "hi")])
    passes.push_session(session.pk)
    if how == "argument":
        memory.delete_session(session, remote=False)
    else:
        settings.MOTORHEAD = settings.MOTORHEAD | {"DELETE_REMOTE": False}
        memory.delete_session(session)
    assert not ChatSession.objects.exists()
    assert upstream.stored_messages("keep") == [{"role": "Human", "content": "hi"}]
    assert upstream.requests_for("DELETE") == []


def test_a_session_being_deleted_takes_no_more_messages(upstream):
    from motorhead_django.exceptions import MotorheadValidationError

    session = memory.get_or_create_session("closing")
    memory.append_messages(session, [("Human", "hi")])
    memory.delete_session(session)
    with pytest.raises(MotorheadValidationError, match="being deleted"):
        memory.append_messages(session, [("Human", "one more")])
    session.refresh_from_db()
    assert session.last_sequence == 1 and session.sync_state == SyncState.DELETING


def test_verify_reports_an_unreachable_server(upstream, capsys):
    from django.core.management import CommandError

    session = memory.get_or_create_session("far")
    memory.append_messages(session, [("Human", "hi")])
    passes.push_session(session.pk)
    upstream.stop()
    with pytest.raises(CommandError, match="1 session"):
        call_command("motorhead_sync", "--verify")
    assert "could not connect" in capsys.readouterr().out
    assert tasks.verify_session(session.pk) == ""  # the task logs and waits for the next run


def test_rehydrate_one_session_by_id(upstream, capsys):
    kept = memory.get_or_create_session("kept")
    memory.append_messages(kept, [("Human", "stay")])
    one = memory.get_or_create_session("one", namespace="ns")
    memory.append_messages(one, [("Human", "a")], context="about a")
    for session in (kept, one):
        passes.push_session(session.pk)
    upstream.wipe()
    call_command("motorhead_sync", "--rehydrate", "--session", "one", "--namespace", "ns")
    assert "1 message(s) and the summary" in capsys.readouterr().out
    assert langchain_read(upstream, "one") == (["a"], "about a")
    assert upstream.stored_messages("kept") == []  # only the one asked for
