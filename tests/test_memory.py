"""The memory core: the one write path, in local-only mode and with sync on."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from motorhead_django import memory, outbox
from motorhead_django.exceptions import MotorheadSessionExistsError, MotorheadValidationError
from motorhead_django.models import ChatMessage, ChatSession, SyncState

pytestmark = pytest.mark.django_db


def test_local_only_writes_are_kept_and_ordered():
    session = memory.get_or_create_session("chat-1")
    assert session.sync_state == SyncState.LOCAL
    memory.append_messages(session, [("Human", "q1"), {"role": "AI", "content": "a1"}])
    memory.append_messages(session, [("Human", "q2")], context="greeting")
    assert [(m.sequence, m.role, m.content) for m in memory.history(session)] == [
        (1, "Human", "q1"),
        (2, "AI", "a1"),
        (3, "Human", "q2"),
    ]
    session.refresh_from_db()
    assert session.last_sequence == 3 and session.context == "greeting"
    # Local-only: nothing waits for a server.
    assert session.sync_state == SyncState.LOCAL and not session.messages.pending().exists()


def test_get_or_create_is_idempotent_and_namespaced(settings):
    first = memory.get_or_create_session("a")
    assert memory.get_or_create_session("a").pk == first.pk
    other = memory.get_or_create_session("b", namespace="ns")
    assert other.pk != first.pk and other.namespace == "ns"
    assert memory.find_session("b") is None and memory.find_session("a", namespace="ns") is None
    # One id is one conversation on the server, whatever the namespace: held once.
    with pytest.raises(MotorheadSessionExistsError):
        memory.get_or_create_session("a", namespace="ns")
    settings.MOTORHEAD = {"NAMESPACE": "default-ns"}
    assert memory.get_or_create_session("c").namespace == "default-ns"


def test_get_memory_is_the_newest_window_newest_first(settings):
    settings.MOTORHEAD = {"WINDOW_SIZE": 4}
    session = memory.get_or_create_session("w")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(1, 11)])
    with CaptureQueriesContext(connection) as queries:
        window = memory.get_memory(session)
    assert len(queries) == 1
    assert [m.content for m in window.messages] == ["m10", "m9", "m8", "m7", "m6"]
    assert [m.content for m in window.chronological][0] == "m6"
    assert window.context is None and window.tokens == 0


@pytest.mark.parametrize(
    "messages,field",
    [
        ([], "messages"),
        ([("Human",)], "messages"),
        ([{"role": "Human", "content": 5}], "messages"),
        ([("", "x")], "messages[0].role"),
        ([("Human", "ok"), ("Human", "x" * 101)], "messages[1].content"),
    ],
)
def test_bad_batches_write_nothing(settings, messages, field):
    settings.MOTORHEAD = {"MAX_CONTENT_LENGTH": 100}
    session = memory.get_or_create_session("bad")
    with pytest.raises(MotorheadValidationError) as raised:
        memory.append_messages(session, messages)
    assert field in raised.value.errors
    assert ChatMessage.objects.count() == 0
    session.refresh_from_db()
    assert session.last_sequence == 0


def test_roles_can_be_restricted(settings):
    settings.MOTORHEAD = {"ALLOWED_ROLES": ["Human", "AI"]}
    session = memory.get_or_create_session("roles")
    with pytest.raises(MotorheadValidationError) as raised:
        memory.append_messages(session, [("System", "x")])
    assert "Unknown role 'System'" in raised.value.errors["messages[0].role"]


def test_too_many_messages_in_one_request(settings):
    settings.MOTORHEAD = {"MAX_MESSAGES_PER_REQUEST": 2}
    session = memory.get_or_create_session("many")
    with pytest.raises(MotorheadValidationError):
        memory.append_messages(session, [("Human", "x")] * 3)


@pytest.mark.parametrize("session_id", ["", "x" * 256, "a\nb", "tab\there", "\x7f"])
def test_bad_session_ids(session_id):
    with pytest.raises(MotorheadValidationError) as raised:
        memory.get_or_create_session(session_id)
    assert "session_id" in raised.value.errors


def test_with_sync_on_messages_are_pending_and_a_push_is_scheduled_on_commit(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    scheduled: list[int] = []
    monkeypatch.setattr("motorhead_django.tasks.schedule_push", scheduled.append)
    session = memory.get_or_create_session("synced")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        memory.append_messages(session, [("Human", "hi")], context="ctx")
    assert len(callbacks) == 1 and scheduled == [session.pk]
    session.refresh_from_db()
    assert session.sync_state == SyncState.PENDING and session.context_pending
    assert list(session.messages.pending().values_list("sequence", flat=True)) == [1]


def test_a_suspended_outbox_enqueues_no_push_and_keeps_the_messages_pending(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    enqueued: list[tuple] = []
    monkeypatch.setattr("motorhead_django.tasks._enqueue", lambda *a, **k: enqueued.append(a))
    session = memory.get_or_create_session("quiet")
    with outbox.suspended(), django_capture_on_commit_callbacks(execute=True):
        memory.append_messages(session, [("Human", "hi")])
        memory.set_context(session, "a summary")
    assert enqueued == []
    assert list(session.messages.pending().values_list("sequence", flat=True)) == [1]
    assert not outbox.is_suspended()
    with django_capture_on_commit_callbacks(execute=True):
        memory.append_messages(session, [("Human", "again")])
    assert [args[1] for args in enqueued] == [session.pk]  # on again once the block is left


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_consecutive_sequences(postgres):
    session = memory.get_or_create_session("race")
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            for n in range(20):
                memory.append_messages(session, [("Human", f"{tag}{n}"), ("AI", f"{tag}{n}'")])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = list(ChatMessage.objects.filter(session=session).order_by("sequence"))
    assert [m.sequence for m in rows] == list(range(1, 161))
    # Each batch stays contiguous: a pair is never split by another writer.
    for first, second in zip(rows[::2], rows[1::2], strict=True):
        assert second.content == first.content + "'"
    assert ChatSession.objects.get(pk=session.pk).last_sequence == 160


def joining_summarizer(previous, messages):
    """A stand-in for an LLM: the previous summary plus the contents that left the window."""
    lines = ",".join(m.content for m in messages)
    return f"{previous} | {lines}" if previous else lines


def test_local_summarizer_folds_in_what_leaves_the_window(
    settings, django_capture_on_commit_callbacks
):
    settings.MOTORHEAD = {
        "WINDOW_SIZE": 4,
        "SUMMARIZER": "tests.test_memory.joining_summarizer",
    }
    session = memory.get_or_create_session("summed")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        memory.append_messages(session, [("Human", f"m{n}") for n in range(1, 5)])
    assert callbacks == [] and memory.get_memory(session).context is None  # all in the window
    with django_capture_on_commit_callbacks(execute=True):
        memory.append_messages(session, [("Human", f"m{n}") for n in range(5, 11)])
    window = memory.get_memory(session)
    assert [m.content for m in window.chronological] == ["m6", "m7", "m8", "m9", "m10"]
    assert ChatSession.objects.get(pk=session.pk).context == "m1,m2,m3,m4,m5"
    with django_capture_on_commit_callbacks(execute=True):
        memory.append_messages(session, [("Human", "m11"), ("AI", "m12")])
    assert ChatSession.objects.get(pk=session.pk).context == "m1,m2,m3,m4,m5 | m6,m7"
    assert session.messages.count() == 12  # nothing dropped locally


def test_no_local_summary_without_the_setting_or_with_a_server(
    settings, django_capture_on_commit_callbacks, no_autopush
):
    for config in (
        {"WINDOW_SIZE": 2},
        {"WINDOW_SIZE": 2, "URL": "http://127.0.0.1:9", "SUMMARIZER": "tests.test_memory.x"},
    ):
        settings.MOTORHEAD = config
        session = memory.get_or_create_session(f"plain-{len(config)}")
        with django_capture_on_commit_callbacks(execute=True):
            memory.append_messages(session, [("Human", f"m{n}") for n in range(10)])
        assert ChatSession.objects.get(pk=session.pk).context is None


def test_delete_in_local_only_mode_deletes_at_once():
    session = memory.get_or_create_session("gone")
    memory.append_messages(session, [("Human", "hi")])
    memory.delete_session(session)
    assert not ChatSession.objects.filter(session_id="gone").exists()
    assert not ChatMessage.objects.exists()


def test_retrieval_uses_the_servers_long_term_memory_when_it_is_on(
    settings, motorhead_server_factory, no_autopush
):
    server = motorhead_server_factory(long_term_memory=True)
    settings.MOTORHEAD = {"URL": server.url, "LONG_TERM_MEMORY": True}
    session = memory.get_or_create_session("ltm_session")
    # Only the server knows these (another client wrote them): the answer must come from it.
    server.preload("ltm_session", [])
    server.store.index_long_term("ltm_session", [("Human", "green tea please"), ("AI", "coffee")])
    found = memory.retrieve(session, "green tea")
    assert found[0] == {"role": "Human", "content": "green tea please", "dist": found[0]["dist"]}
    assert [r.method for r in server.requests] == ["POST"]


def test_retrieval_falls_back_to_a_local_search_when_the_server_fails(
    settings, motorhead_server_factory, no_autopush, caplog
):
    server = motorhead_server_factory(long_term_memory=True)
    settings.MOTORHEAD = {"URL": server.url, "LONG_TERM_MEMORY": True}
    # Motorhead answers 500 for ids with punctuation (its RediSearch query breaks).
    session = memory.get_or_create_session("9b2e-uuid-like")
    memory.append_messages(session, [("Human", "I would like green tea"), ("AI", "Sure")])
    found = memory.retrieve(session, "green tea")
    assert found[0]["content"] == "I would like green tea"
    assert "searching locally" in caplog.text


def test_full_text_search_stems_on_postgresql(postgres):
    session = memory.get_or_create_session("fts")
    memory.append_messages(
        session,
        [
            ("Human", "I ordered two pizzas"),
            ("AI", "Your orders are on the way"),
            ("Human", "thanks"),
        ],
    )
    found = memory.search(session, "order")
    assert {m.content for m, _ in found} == {"I ordered two pizzas", "Your orders are on the way"}
    assert all(0 <= dist < 1 for _, dist in found)
    assert memory.search(session, "unrelated words") == []


def test_append_messages_stores_one_item_per_message_validated():
    session = memory.get_or_create_session("with-items")
    item = {"type": "function_call", "call_id": "c", "arguments": '{"a": [1, 2.5, null]}'}
    rows = memory.append_messages(session, [("AI", "call"), ("Human", "plain")], items=[item, None])
    assert [row.item for row in session.messages.chronological()] == [item, None]
    assert [row.item for row in rows] == [item, None]
    memory.append_messages(session, [("Human", "no items")])
    assert session.messages.get(content="no items").item is None
    with pytest.raises(MotorheadValidationError) as caught:
        memory.append_messages(session, [("AI", "a"), ("AI", "b")], items=[item])
    assert "items" in caught.value.errors
    with pytest.raises(MotorheadValidationError) as caught:
        memory.append_messages(session, [("AI", "a")], items=[["not", "an", "object"]])  # type: ignore[list-item]
    assert caught.value.errors == {"messages[0].item": "A JSON object."}
    assert session.messages.count() == 3
