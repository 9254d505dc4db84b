"""The mirrored models: constraints, ordering and the indexed hot queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from motorhead_django import policy
from motorhead_django.models import ChatMessage, ChatSession, MessageOrigin, SyncState

pytestmark = pytest.mark.django_db


def make_session(**overrides) -> ChatSession:
    fields = {"session_id": "s-1"} | overrides
    return ChatSession.objects.create(**fields)


def add_messages(session: ChatSession, count: int, **overrides) -> list[ChatMessage]:
    start = session.last_sequence
    rows = [
        ChatMessage(
            session=session,
            sequence=start + n,
            role="Human" if n % 2 else "AI",
            content=f"m{start + n}",
            **overrides,
        )
        for n in range(1, count + 1)
    ]
    ChatMessage.objects.bulk_create(rows)
    session.last_sequence = start + count
    session.save(update_fields=["last_sequence"])
    return rows


def test_defaults_and_str():
    session = make_session()
    assert session.sync_state == SyncState.LOCAL
    assert session.tokens == 0 and session.context is None and session.metadata == {}
    assert str(session) == "s-1"
    assert str(make_session(session_id="s-2", namespace="prod")) == "prod/s-2"
    (message,) = add_messages(session, 1)
    assert message.origin == MessageOrigin.LOCAL and message.sync_state == "pending"
    assert str(message) == "s-1 #1 Human"


def test_a_server_id_is_unique_across_namespaces():
    make_session(session_id="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_session(session_id="a")
    # Motorhead's message storage is flat: another namespace cannot share the server id.
    with pytest.raises(IntegrityError), transaction.atomic():
        make_session(session_id="a", namespace="other")


def test_sequence_is_unique_per_session():
    session = make_session()
    add_messages(session, 2)
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatMessage.objects.create(session=session, sequence=2, role="AI", content="again")
    other = make_session(session_id="s-2")
    ChatMessage.objects.create(session=other, sequence=2, role="AI", content="fine")


def test_ids_of_any_shape_are_kept_exactly():
    odd = ["a/b", "../x", "x?y#z", " spaced ", "ünïcødé", "UPPER", "upper"]
    for session_id in odd:
        make_session(session_id=session_id)
    assert sorted(ChatSession.objects.values_list("session_id", flat=True)) == sorted(odd)


def test_newest_is_one_query_and_chronological():
    session = make_session()
    add_messages(session, 30)
    with CaptureQueriesContext(connection) as queries:
        window = session.messages.newest(13)
    assert len(queries) == 1
    assert [m.sequence for m in window] == list(range(18, 31))


def test_chronological_and_pending():
    session = make_session()
    add_messages(session, 3)
    ChatMessage.objects.filter(sequence=1).update(sync_state="synced")
    assert [m.sequence for m in session.messages.chronological()] == [1, 2, 3]
    assert [m.sequence for m in session.messages.pending()] == [2, 3]


def test_due_and_pending_sessions():
    now = timezone.now()
    make_session(session_id="synced", sync_state=SyncState.SYNCED)
    make_session(session_id="new", sync_state=SyncState.PENDING)
    make_session(
        session_id="later",
        sync_state=SyncState.RETRYING,
        next_attempt_at=now + timedelta(minutes=5),
    )
    make_session(session_id="failed", sync_state=SyncState.FAILED)
    assert set(ChatSession.objects.with_work().values_list("session_id", flat=True)) == {
        "new",
        "later",
    }
    assert list(ChatSession.objects.due(now).values_list("session_id", flat=True)) == ["new"]
    assert list(ChatSession.objects.failed().values_list("session_id", flat=True)) == ["failed"]


def test_querysets_say_which_work_they_select():
    """``to_push`` leaves tombstones to their delete, ``to_delete_remotely`` given-up ones."""
    now = timezone.now()
    make_session(session_id="synced", sync_state=SyncState.SYNCED)
    make_session(session_id="drifted", sync_state=SyncState.DRIFTED)
    make_session(session_id="pending", sync_state=SyncState.PENDING)
    make_session(session_id="doubt", sync_state=SyncState.IN_DOUBT)
    make_session(session_id="tomb", sync_state=SyncState.DELETING, delete_requested_at=now)
    make_session(session_id="gave-up", sync_state=SyncState.FAILED, delete_requested_at=now)

    def ids(query):
        return set(query.values_list("session_id", flat=True))

    sessions = ChatSession.objects
    assert ids(sessions.with_work()) == {"pending", "doubt", "tomb"}
    assert ids(sessions.to_push()) == {"pending", "doubt"}
    assert ids(sessions.to_delete_remotely()) == {"tomb"}
    assert ids(sessions.to_rehydrate()) == {"drifted"}
    assert ids(sessions.mirrored()) == {"synced", "drifted"}


def test_states_keep_their_stored_values():
    """The states moved to ``states.py``; the values in the database did not change."""
    from motorhead_django import models, states

    assert models.SyncState is states.SyncState
    assert [s.value for s in states.ACTIVE] == ["pending", "retrying", "in_doubt", "deleting"]
    assert states.SyncState.IN_DOUBT.label == "In doubt"


def test_owned_by():
    users = get_user_model().objects
    alice = users.create_user("alice")
    bob = users.create_user("bob")
    staff = users.create_user("staff", is_staff=True)
    make_session(session_id="a", owner=alice)
    make_session(session_id="b", owner=bob)
    assert list(ChatSession.objects.owned_by(alice).values_list("session_id", flat=True)) == ["a"]
    # Being staff grants nothing by itself (issue 13): only a permission widens the view.
    assert ChatSession.objects.owned_by(staff).count() == 0
    assert policy.visible_to(staff).count() == 0
    assert ChatSession.objects.owned_by(AnonymousUser()).count() == 0
    assert policy.visible_to(AnonymousUser()).count() == 0


def test_owner_deletion_keeps_the_conversation():
    alice = get_user_model().objects.create_user("alice")
    session = make_session(owner=alice)
    add_messages(session, 2)
    alice.delete()
    session.refresh_from_db()
    assert session.owner is None and session.messages.count() == 2


def test_pending_work_query_uses_the_partial_index(postgres):
    """With many synced sessions, the sweep's query is answered from the partial index."""
    ChatSession.objects.bulk_create(
        ChatSession(session_id=f"s{n}", remote_id=f"s{n}", sync_state=SyncState.SYNCED)
        for n in range(3000)
    )
    make_session(session_id="todo", sync_state=SyncState.PENDING)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE motorhead_django_chatsession")
    plan = ChatSession.objects.due().explain()
    assert "motorhead_session_due" in plan, plan
    assert ChatSession.objects.filter(Q(sync_state="pending")).count() == 1
