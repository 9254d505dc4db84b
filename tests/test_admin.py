"""The admin pages render, read-mostly, with a constant number of queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from motorhead_django import engine, memory
from motorhead_django.models import ChatMessage, ChatSession

pytestmark = pytest.mark.django_db


def make_sessions(count: int, messages: int = 3, prefix: str = "s") -> list[ChatSession]:
    sessions = ChatSession.objects.bulk_create(
        ChatSession(session_id=f"{prefix}{n}", remote_id=f"{prefix}{n}", last_sequence=messages)
        for n in range(count)
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


# -- the sessions list ------------------------------------------------------------


def test_changelist_columns_badge_error_and_context(admin_client):
    ChatSession.objects.create(
        session_id="bad",
        last_sequence=2,
        sync_state="failed",
        last_error="POST /sessions/bad/memory: 401 Unauthorized",
        context="They talked about the weather " * 5,
    )
    page = admin_client.get(reverse("admin:motorhead_django_chatsession_changelist")).content
    assert b'<span class="mh-badge mh-failed">Failed</span>' in page
    assert b"401 Unauthorized" in page and b"They talked about the weather" in page
    assert b"Sync overview" in page


def test_search_finds_message_content_and_owner(admin_client, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    make_sessions(2)
    ChatSession.objects.filter(session_id="s0").update(owner=alice)
    ChatMessage.objects.filter(session__session_id="s1", sequence=2).update(content="purple llama")
    url = reverse("admin:motorhead_django_chatsession_changelist")
    by_content = admin_client.get(url, {"q": "llama"}).context["cl"].result_list
    assert [s.session_id for s in by_content] == ["s1"]
    by_owner = admin_client.get(url, {"q": "alice"}).context["cl"].result_list
    assert [s.session_id for s in by_owner] == ["s0"]


def test_filters_by_state_and_owner(admin_client, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    ChatSession.objects.create(session_id="a", sync_state="pending", owner=bob)
    ChatSession.objects.create(session_id="b", sync_state="synced")
    url = reverse("admin:motorhead_django_chatsession_changelist")
    pending = admin_client.get(url, {"sync_state__exact": "pending"}).context["cl"].result_list
    assert [s.session_id for s in pending] == ["a"]
    owned = admin_client.get(url, {"owner__id__exact": bob.pk}).context["cl"].result_list
    assert [s.session_id for s in owned] == ["a"]


def test_default_order_is_most_recent_activity_first(admin_client):
    for name in ("old", "new"):
        session = memory.get_or_create_session(name)
        memory.append_messages(session, [("Human", name)])
    rows = admin_client.get(reverse("admin:motorhead_django_chatsession_changelist"))
    assert [s.session_id for s in rows.context["cl"].result_list] == ["new", "old"]


# -- the session page -------------------------------------------------------------


def change_url(session: ChatSession) -> str:
    return reverse("admin:motorhead_django_chatsession_change", args=[session.pk])


def test_transcript_is_chronological_and_marks_the_window(admin_client, settings):
    settings.MOTORHEAD = {"WINDOW_SIZE": 4}
    session = memory.get_or_create_session("chat")
    memory.append_messages(
        session, [("Human" if n % 2 else "AI", f"line {n}") for n in range(1, 9)]
    )
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(change_url(session)).content.decode()
    positions = [page.index(f"line {n}<") for n in range(1, 9)]
    assert positions == sorted(positions)
    divider = page.index("Motorhead's window: the newest 5 messages")
    assert positions[2] < divider < positions[3]  # messages 4..8 are the window
    assert 'class="mh-message mh-role-human mh-summarised"' in page
    assert 'class="mh-message mh-role-ai"' in page
    assert len(queries) < 15


def test_a_long_history_shows_the_newest_messages_and_counts_the_rest(admin_client, monkeypatch):
    monkeypatch.setattr("motorhead_django.admin.sessions.TRANSCRIPT_LIMIT", 3)
    session = memory.get_or_create_session("long")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(10)])
    page = admin_client.get(change_url(session)).content.decode()
    assert "7 older messages are kept in the database" in page
    assert "m9<" in page and "m6<" not in page


def change_form_data(session: ChatSession, **extra: str) -> dict[str, str]:
    return {
        "owner": "",
        "metadata": "{}",
        "context": session.context or "",
        "add_role": "Human",
        "add_content": "",
        # The summary timeline inline's management form, as the page sends it.
        "summaries-TOTAL_FORMS": "0",
        "summaries-INITIAL_FORMS": "0",
        "summaries-MIN_NUM_FORMS": "0",
        "summaries-MAX_NUM_FORMS": "1000",
        **extra,
    }


def test_adding_a_message_goes_through_the_outbox(
    admin_client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    scheduled: list[int] = []
    monkeypatch.setattr("motorhead_django.tasks.schedule_push", scheduled.append)
    session = memory.get_or_create_session("talk")
    memory.append_messages(session, [("Human", "hello")])
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            change_url(session), change_form_data(session, add_role="AI", add_content="hi there")
        )
    assert response.status_code == 302
    rows = list(session.messages.order_by("sequence").values_list("sequence", "role", "content"))
    assert rows == [(1, "Human", "hello"), (2, "AI", "hi there")]
    assert session.messages.get(sequence=2).sync_state == "pending"
    assert scheduled == [session.pk]  # scheduled on commit, as for any write


def test_a_bad_new_message_is_a_form_error_and_writes_nothing(admin_client, settings):
    settings.MOTORHEAD = {"MAX_CONTENT_LENGTH": 5}
    session = memory.get_or_create_session("strict")
    response = admin_client.post(
        change_url(session), change_form_data(session, add_content="x" * 6)
    )
    assert response.status_code == 200 and "At most 5 characters." in response.content.decode()
    assert session.messages.count() == 0


def test_editing_the_context_marks_it_for_the_next_push(admin_client, settings):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    session = memory.get_or_create_session("ctx")
    admin_client.post(change_url(session), change_form_data(session, context="A new summary"))
    session.refresh_from_db()
    assert session.context == "A new summary" and session.context_pending


def test_the_add_page_refuses_an_id_the_server_cannot_hold(admin_client):
    url = reverse("admin:motorhead_django_chatsession_add")
    response = admin_client.post(
        url, {"session_id": "a\nb", "namespace": "", "metadata": "{}", "context": ""}
    )
    assert response.status_code == 200
    assert "control characters" in response.content.decode()
    assert not ChatSession.objects.exists()


# -- actions ----------------------------------------------------------------------


def run_action(admin_client, action: str, sessions: list[ChatSession], confirm: bool = True):
    """Run an action as the changelist does; the destructive ones through their confirmation."""
    data = {"action": action, "_selected_action": [s.pk for s in sessions]}
    if confirm:
        data["post"] = "yes"
    return admin_client.post(
        reverse("admin:motorhead_django_chatsession_changelist"), data, follow=True
    )


def test_push_now_runs_inline_and_reports(admin_client, settings, motorhead_server, no_autopush):
    settings.MOTORHEAD = {"URL": motorhead_server.url, "RETRY_BACKOFF": 0.01}
    good = memory.get_or_create_session("good")
    memory.append_messages(good, [("Human", "a"), ("AI", "b")])
    response = run_action(admin_client, "push_now", [good])
    assert "Pushed 2 message(s) of 1 session." in response.content.decode()
    assert [m["content"] for m in motorhead_server.stored_messages("good")] == ["a", "b"]


def test_push_now_reports_what_failed_and_why(
    admin_client, settings, motorhead_server, no_autopush
):
    settings.MOTORHEAD = {"URL": motorhead_server.url, "RETRY_BACKOFF": 0.01}
    session = memory.get_or_create_session("flaky")
    memory.append_messages(session, [("Human", "a")])
    motorhead_server.faults.fail_next(1, mode="error", methods={"POST"})
    page = run_action(admin_client, "push_now", [session]).content.decode()
    assert "Pushed 0 message(s) of 1 session." in page
    assert "Session “flaky” is retrying: POST /sessions/flaky/memory: 500" in page


def test_push_now_without_a_server_says_so(admin_client):
    (session,) = make_sessions(1)
    page = run_action(admin_client, "push_now", [session]).content.decode()
    assert "Sync is not enabled" in page


# -- the sync overview -------------------------------------------------------------


def test_overview_counts_states_failures_and_pending_age(admin_client, settings, motorhead_server):
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    ChatSession.objects.create(session_id="f", sync_state="failed", last_error="boom: 400")
    session = ChatSession.objects.create(session_id="p", sync_state="pending", last_sequence=1)
    ChatMessage.objects.create(session=session, sequence=1, role="Human", content="x")
    page = admin_client.get(reverse("admin:motorhead_django_sync_overview")).content.decode()
    assert "boom: 400" in page and "The oldest message waiting to be pushed" in page
    assert '?sync_state__exact=failed">1</a>' in page
    assert "answering" in page


def test_overview_checks_the_server_once_and_survives_it_being_down(
    admin_client, settings, motorhead_server
):
    settings.MOTORHEAD = {"URL": motorhead_server.url}
    url = reverse("admin:motorhead_django_sync_overview")
    cache.clear()
    admin_client.get(url)
    admin_client.get(url)
    assert len(motorhead_server.requests_for("GET")) == 1  # cached
    cache.clear()
    motorhead_server.faults.fail_next(1, mode="drop")
    page = admin_client.get(url).content.decode()
    assert "mh-failed" in page and "the connection dropped" in page


def test_overview_in_local_only_mode(admin_client):
    page = admin_client.get(reverse("admin:motorhead_django_sync_overview")).content.decode()
    assert "Local-only mode" in page


def test_the_overview_reads_its_history_in_one_query_however_many_samples(admin_client):
    from motorhead_django.models import SyncStateSample

    url = reverse("admin:motorhead_django_sync_overview")
    now = timezone.now()

    def sample(minutes: int) -> SyncStateSample:
        return SyncStateSample(taken_at=now - timedelta(minutes=minutes), counts={"synced": 1})

    SyncStateSample.objects.bulk_create(sample(m) for m in range(1, 4))
    admin_client.get(url)  # the session and the cached health check settle
    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    SyncStateSample.objects.bulk_create(sample(m) for m in range(4, 24 * 60, 5))
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(url).content.decode()
    assert len(many.captured_queries) == len(few.captured_queries)
    reads = [
        q["sql"] for q in many.captured_queries if "motorhead_django_syncstatesample" in q["sql"]
    ]
    assert len(reads) == 1
    assert page.count('class="mh-chart-hit"') == 288  # thinned to one point per 5 minutes


def test_a_view_only_user_sees_the_history_of_states(client):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from motorhead_django import history

    user = get_user_model().objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_chatsession"))
    client.force_login(user)
    ChatSession.objects.create(session_id="f", sync_state="failed", last_error="secret: 500")
    history.record_sample()
    page = client.get(reverse("admin:motorhead_django_sync_overview")).content.decode()
    assert "mh-chart-history" in page and "Failed: 1 now, at most 1" in page
    assert "secret: 500" not in page  # counts only, never the error text


def test_app_index_links_to_the_overview(admin_client):
    page = admin_client.get(reverse("admin:app_list", args=["motorhead_django"])).content
    assert reverse("admin:motorhead_django_sync_overview").encode() in page


def test_an_unfiltered_changelist_of_a_huge_table_does_not_count_it(postgres, admin_client):
    make_sessions(3)
    with connection.cursor() as cursor:
        # As the planner would believe after ANALYZE of a table with 2 million rows.
        cursor.execute(
            "UPDATE pg_class SET reltuples = 2000000 WHERE relname = 'motorhead_django_chatsession'"
        )
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:motorhead_django_chatsession_changelist"))
    assert response.context["cl"].paginator.count == 2_000_000
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def test_change_page_shows_the_summary_timeline_and_drift(admin_client):
    from motorhead_django.models import SummaryVersion

    (session,) = make_sessions(1)
    SummaryVersion.objects.create(session=session, context="first summary", tokens=7)
    ChatSession.objects.filter(pk=session.pk).update(drift="the server has no messages")
    url = reverse("admin:motorhead_django_chatsession_change", args=[session.pk])
    response = admin_client.get(url)
    assert b"first summary" in response.content
    assert b"the server has no messages" in response.content


# -- the sync actions against a server -------------------------------------------


def pushed_session(name: str, count: int) -> ChatSession:
    session = memory.get_or_create_session(name)
    memory.append_messages(
        session, [("Human" if n % 2 else "AI", f"{name} {n}") for n in range(count)]
    )
    engine.push(session.pk)
    return session


def test_pull_now_brings_in_what_other_clients_wrote(admin_client, upstream):
    session = pushed_session("pulled", 2)
    upstream.preload("pulled", [("Human", "from elsewhere"), ("AI", "me too")])
    page = run_action(admin_client, "pull_now", [session]).content.decode()
    assert "Pulled 1 session: 2 message(s) found only on the server" in page
    assert [m.content for m in memory.history(session)][-2:] == ["from elsewhere", "me too"]


def test_full_resync_pushes_the_whole_history_through_the_summariser(admin_client, upstream):
    session = pushed_session("resynced", 30)
    upstream.wipe()
    page = run_action(admin_client, "full_resync", [session]).content.decode()
    assert "Resynced 1 session: 30 message(s) pushed, paced." in page
    upstream.wait_for_compactions()
    lines = [f"{m.role}: {m.content}" for m in memory.history(session)]
    kept = upstream.stored_lines("resynced")
    # Every message reached the server's summariser or its window; none was dropped.
    assert upstream.dropped_lines("resynced") == []
    assert set(lines) == set(upstream.summarized_lines("resynced")) | set(kept)


def test_delete_on_the_server_keeps_the_record(admin_client, upstream):
    session = pushed_session("kept", 3)
    page = run_action(admin_client, "delete_on_server", [session]).content.decode()
    assert "Deleted 1 session on the server; the local record is kept." in page
    assert upstream.stored_messages("kept") == []
    session.refresh_from_db()
    assert session.sync_state == "drifted" and session.messages.count() == 3


@pytest.mark.django_db(transaction=True)  # the server's DELETE runs when the tombstone commits
def test_delete_everywhere_and_the_delete_button_go_through_the_core(admin_client, upstream):
    first, second = pushed_session("gone-1", 2), pushed_session("gone-2", 2)
    page = run_action(admin_client, "delete_everywhere", [first]).content.decode()
    assert "Deleted 1 of 1 session." in page
    assert (
        upstream.stored_messages("gone-1") == []
        and not ChatSession.objects.filter(pk=first.pk).exists()
    )
    delete_url = reverse("admin:motorhead_django_chatsession_delete", args=[second.pk])
    admin_client.post(delete_url, {"post": "yes"})
    assert upstream.stored_messages("gone-2") == []  # DELETE_REMOTE: the server's copy too


@pytest.mark.django_db(transaction=True)
def test_delete_everywhere_while_the_server_is_down_keeps_a_tombstone(admin_client, upstream):
    session = pushed_session("later", 1)
    upstream.faults.fail_rate = 1.0
    page = run_action(admin_client, "delete_everywhere", [session]).content.decode()
    assert "Deleted 0 of 1 session. 1 wait for the server to confirm" in page
    session.refresh_from_db()
    assert session.sync_state == "deleting"


def test_with_a_broker_the_actions_are_queued(admin_client, upstream, monkeypatch):
    queued: list[tuple[str, int]] = []
    monkeypatch.setattr("motorhead_django.tasks.runs_inline", lambda: False)
    monkeypatch.setattr(
        "motorhead_django.tasks.schedule", lambda task, pk: queued.append((task.name, pk))
    )
    session = pushed_session("queued", 1)
    page = run_action(admin_client, "full_resync", [session]).content.decode()
    assert "Queued 1 session for a worker." in page
    assert queued == [("motorhead_django.resync_session", session.pk)]


def test_import_from_the_overview_page(admin_client, upstream):
    for name in ("i1", "i2", "i3"):
        upstream.preload(name, [("Human", f"{name} hello")], namespace="team")
    url = reverse("admin:motorhead_django_sync_overview")
    assert b"Import from the server" in admin_client.get(url).content
    page = admin_client.post(url, {"namespaces": "team"}, follow=True).content.decode()
    assert "Imported 3 session(s) from the server; 0 were here already." in page
    assert sorted(
        ChatSession.objects.filter(namespace="team").values_list("session_id", flat=True)
    ) == ["i1", "i2", "i3"]
    again = admin_client.post(url, {"namespaces": "team"}, follow=True).content.decode()
    assert "Imported 0 session(s) from the server; 3 were here already." in again


def test_the_state_filter_offers_in_doubt(admin_client):
    ChatSession.objects.create(session_id="doubt", sync_state="in_doubt")
    ChatSession.objects.create(session_id="fine", sync_state="synced")
    url = reverse("admin:motorhead_django_chatsession_changelist")
    response = admin_client.get(url, {"sync_state__exact": "in_doubt"})
    assert [s.session_id for s in response.context["cl"].result_list] == ["doubt"]
    assert "?sync_state__exact=in_doubt" in response.content.decode()


# -- rough edges (issue 20) ---------------------------------------------------------


def test_a_transcript_beyond_the_limit_pages_back_to_its_start(admin_client, monkeypatch):
    monkeypatch.setattr("motorhead_django.admin.sessions.TRANSCRIPT_LIMIT", 4)
    session = memory.get_or_create_session("paged")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(1, 11)])  # sequences 1..10
    page = admin_client.get(change_url(session)).content.decode()
    assert "m7<" in page and "m10<" in page and "m6<" not in page
    assert 'class="mh-older" href="?before=7"' in page and "mh-newer" not in page
    page = admin_client.get(change_url(session), {"before": 7}).content.decode()
    assert "m3<" in page and "m6<" in page and "m2<" not in page and "m7<" not in page
    assert 'href="?before=3"' in page
    assert 'class="mh-newer" href="?"' in page  # the next page up is the newest
    page = admin_client.get(change_url(session), {"before": 3}).content.decode()
    assert "m1<" in page and "m2<" in page and "mh-older" not in page
    assert 'class="mh-newer" href="?before=7"' in page
    assert "8 newer messages are not shown here." in page
    # A bad value is the newest page, not an error.
    assert "m10<" in admin_client.get(change_url(session), {"before": "x"}).content.decode()


def test_long_ids_are_cut_with_the_whole_id_on_hover(admin_client):
    long_id = "conversation-" + "x" * 120
    memory.append_messages(memory.get_or_create_session(long_id), [("Human", "hi")])
    memory.append_messages(memory.get_or_create_session("short"), [("Human", "hi")])
    page = admin_client.get(reverse("admin:motorhead_django_chatsession_changelist"))
    html = page.content.decode()
    assert f'<span class="mh-id" title="{long_id}">' in html
    assert long_id + "<" not in html  # never shown whole in the cell
    assert ">short</a>" in html


def test_last_activity_is_in_words_with_the_time_on_hover(admin_client):
    session = memory.get_or_create_session("when")
    memory.append_messages(session, [("Human", "hi")])
    ChatSession.objects.filter(pk=session.pk).update(
        updated_at=timezone.now() - timedelta(minutes=3, seconds=5)
    )
    html = admin_client.get(reverse("admin:motorhead_django_chatsession_changelist")).content
    assert "3\xa0minutes ago</time>" in html.decode()


def test_a_search_says_what_it_searched(admin_client):
    html = admin_client.get(
        reverse("admin:motorhead_django_chatsession_changelist"), {"q": "refund"}
    ).content.decode()
    assert (
        "Searched session ids, owners’ usernames, message content for “refund”." in html
        or "Searched session ids, owners' usernames, message content for “refund”." in html
        or "Searched session ids, owners&#x27; usernames, message content for “refund”." in html
    )
    plain = admin_client.get(reverse("admin:motorhead_django_chatsession_changelist"))
    assert "mh-searched" not in plain.content.decode()


def test_the_overview_says_the_lag_in_words(admin_client, upstream):
    session = memory.get_or_create_session("lagging")
    memory.append_messages(session, [("Human", "hi")])
    ChatMessage.objects.update(created_at=timezone.now() - timedelta(hours=2, minutes=1))
    html = admin_client.get(reverse("admin:motorhead_django_sync_overview")).content.decode()
    assert "was written 2\xa0hours, 1\xa0minute ago" in html


def test_the_summary_timeline_is_a_timeline_and_the_page_still_saves(admin_client):
    import re

    from motorhead_django.models import SummaryVersion

    (session,) = make_sessions(1)
    SummaryVersion.objects.create(
        session=session,
        context="older summary",
        tokens=7,
        through_sequence=2,
        pulled_at=timezone.now() - timedelta(hours=3),
    )
    SummaryVersion.objects.create(session=session, context="newer summary", tokens=9)
    page = admin_client.get(change_url(session)).content.decode()
    timeline = page[page.index('<ol class="mh-timeline">') :]
    assert timeline.index("newer summary") < timeline.index("older summary")
    assert "3\xa0hours ago" in timeline and "through message #2" in timeline
    # What the page itself sends back (the inline's hidden fields) saves.
    hidden = dict(
        re.findall(r'<input type="hidden" name="(summaries-[^"]+)" value="([^"]*)"', page)
    )
    assert hidden["summaries-INITIAL_FORMS"] == "2"
    data = {**change_form_data(session, add_content="from the admin"), **hidden}
    response = admin_client.post(change_url(session), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert memory.history(session)[-1].content == "from the admin"


def test_verify_now_marks_a_drifted_session_and_says_what_differs(admin_client, upstream):
    same, changed = pushed_session("same", 2), pushed_session("changed", 2)
    upstream.preload("changed", [("Human", "written elsewhere")])
    page = run_action(admin_client, "verify_now", [same, changed], confirm=False).content.decode()
    assert "Verified 2 sessions against the server: 1 drifted." in page
    assert "Session “changed” is drifted:" in page
    states = dict(ChatSession.objects.values_list("session_id", "sync_state"))
    assert states == {"same": "synced", "changed": "drifted"}


def test_rehydrate_now_confirms_then_gives_the_server_the_summary_and_window(
    admin_client, upstream, settings
):
    session = pushed_session("rehydrated", 4)
    memory.set_context(session, "what was said")
    engine.push(session.pk)
    upstream.wipe()
    page = run_action(admin_client, "rehydrate_now", [session], confirm=False).content.decode()
    assert "replaced with its latest summary and its newest window" in page
    assert upstream.stored_messages("rehydrated") == []  # nothing until confirmed
    page = run_action(admin_client, "rehydrate_now", [session]).content.decode()
    assert "Rehydrated 1 session: 4 message(s) and its summary sent." in page
    assert len(upstream.stored_messages("rehydrated")) == 4


def test_the_session_page_shows_the_summarisers_progress_read_only(admin_client, settings):
    url = "http://127.0.0.1:9/v1"
    settings.MOTORHEAD = {"WINDOW_SIZE": 2, "SUMMARIZER": {"BASE_URL": url, "MODEL": "m"}}
    (session,) = make_sessions(1, messages=10)
    ChatSession.objects.filter(pk=session.pk).update(summarized_through=4)
    change = reverse("admin:motorhead_django_chatsession_change", args=[session.pk])
    page = admin_client.get(change)
    body = page.content.decode()
    # 10 messages, a window of 2 + 1: 7 have left it, 4 are in the summary.
    assert "message #4: 3 message(s) left the window and wait to be summarised" in body
    assert 'name="summarized_through"' not in body and "summary_progress" not in str(
        page.context["adminform"].form.fields
    )
    ChatSession.objects.filter(pk=session.pk).update(summarized_through=7)
    assert "message #7: up to date" in admin_client.get(change).content.decode()
    settings.MOTORHEAD = {}
    assert "the built-in summariser is off" in admin_client.get(change).content.decode()


def test_checkpoints_show_their_owner_and_filter_by_it(admin_client, django_user_model):
    from motorhead_django.models import LangGraphBlob, LangGraphCheckpoint, LangGraphWrite

    ann = django_user_model.objects.create_user("ann")
    django_user_model.objects.create_user("bob")  # owns nothing: not a choice
    for owner, thread in ((ann, "ann-thread"), (None, "loose-thread")):
        where = {"owner": owner, "thread_id": thread, "checkpoint_ns": ""}
        LangGraphCheckpoint.objects.create(
            **where, checkpoint_id="1", type="msgpack", checkpoint=b"", metadata={}
        )
        LangGraphBlob.objects.create(**where, channel="c", version="1", type="msgpack", blob=b"")
        LangGraphWrite.objects.create(
            **where, checkpoint_id="1", task_id="t", idx=0, channel="c", type="msgpack"
        )
    for model in ("langgraphcheckpoint", "langgraphblob", "langgraphwrite"):
        url = reverse(f"admin:motorhead_django_{model}_changelist")
        page = admin_client.get(url).content.decode()
        assert re.search(r'<td class="field-owner[^"]*">ann</td>', page) and "?owner=none" in page
        assert f"?owner={ann.pk}" in page and "bob" not in page
        mine = admin_client.get(url, {"owner": ann.pk}).content.decode()
        assert "ann-thread" in mine and "loose-thread" not in mine
        loose = admin_client.get(url, {"owner": "none"}).content.decode()
        assert "loose-thread" in loose and "ann-thread" not in loose
        assert "ann-thread" not in admin_client.get(url, {"owner": "x"}).content.decode()
    checkpoint = LangGraphCheckpoint.objects.get(owner=ann)
    change = reverse("admin:motorhead_django_langgraphcheckpoint_change", args=[checkpoint.pk])
    page = admin_client.get(change).content.decode()
    assert re.search(r'<div class="readonly">(<a href="[^"]*">)?ann(</a>)?</div>', page)
