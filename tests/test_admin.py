"""The admin pages render, read-mostly, with a constant number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from motorhead_django.models import ChatMessage, ChatSession

pytestmark = pytest.mark.django_db


def make_sessions(count: int, messages: int = 3, prefix: str = "s") -> list[ChatSession]:
    sessions = ChatSession.objects.bulk_create(
        ChatSession(session_id=f"{prefix}{n}", last_sequence=messages) for n in range(count)
    )
    ChatMessage.objects.bulk_create(
        ChatMessage(session=s, sequence=i, role="Human", content=f"hello {i}")
        for s in sessions
        for i in range(1, messages + 1)
    )
    return sessions


def changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:motorhead_django_chatsession_changelist"))
    assert response.status_code == 200
    return len(queries)


def test_changelist_query_count_does_not_grow_with_rows(admin_client):
    make_sessions(2)
    few = changelist_queries(admin_client)
    make_sessions(40, prefix="more-")
    many = changelist_queries(admin_client)
    assert many == few


def test_changelist_shows_message_counts(admin_client):
    make_sessions(1, messages=5)
    response = admin_client.get(reverse("admin:motorhead_django_chatsession_changelist"))
    assert b'<td class="field-message_count">5</td>' in response.content


def test_change_page_shows_the_conversation_read_only(admin_client):
    (session,) = make_sessions(1)
    url = reverse("admin:motorhead_django_chatsession_change", args=[session.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b"hello 3" in response.content
    # The id names the session on the server: not an editable input once created.
    assert b'name="session_id"' not in response.content


def test_add_page_lets_the_id_be_chosen(admin_client):
    response = admin_client.get(reverse("admin:motorhead_django_chatsession_add"))
    assert b'name="session_id"' in response.content


def test_change_page_shows_the_summary_timeline_and_drift(admin_client):
    from motorhead_django.models import SummaryVersion

    (session,) = make_sessions(1)
    SummaryVersion.objects.create(session=session, context="first summary", tokens=7)
    ChatSession.objects.filter(pk=session.pk).update(drift="the server has no messages")
    url = reverse("admin:motorhead_django_chatsession_change", args=[session.pk])
    response = admin_client.get(url)
    assert b"first summary" in response.content
    assert b"the server has no messages" in response.content
