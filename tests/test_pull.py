"""The pull, the summary timeline and drift, in process, against the test server over real HTTP."""

from __future__ import annotations

import pytest
import requests
from django.core.management import CommandError, call_command

from motorhead_django import memory, pull, signals, sync
from motorhead_django.models import (
    ChatMessage,
    ChatSession,
    MessageOrigin,
    MessageSyncState,
    SummaryVersion,
    SyncState,
)

from .conftest import lock_held_elsewhere

pytestmark = pytest.mark.django_db


def say(session: ChatSession, *contents: str) -> None:
    memory.append_messages(session, [("Human", content) for content in contents])


def local(session: ChatSession) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in memory.history(session)]


def test_remote_messages_interleaved_with_ours_come_back_in_order_once(upstream):
    session = memory.get_or_create_session("mixed")
    say(session, "m1", "m2")
    sync.push_session(session.pk)
    upstream.preload("mixed", [("AI", "r1"), ("AI", "r2")])  # another client, directly
    say(session, "m3")
    sync.push_session(session.pk)
    upstream.preload("mixed", [("AI", "r3")])
    say(session, "m4")
    sync.push_session(session.pk)

    first = pull.pull_session(session.pk)
    assert first.added == 3 and first.drift == ""
    assert local(session) == upstream.stored_messages("mixed")
    origins = {m.content: m.origin for m in memory.history(session)}
    assert {c for c, o in origins.items() if o == MessageOrigin.REMOTE} == {"r1", "r2", "r3"}
    assert not ChatMessage.objects.filter(session=session, sync_state="pending").exists()
    session.refresh_from_db()
    assert session.last_sequence == 7 and session.last_pulled_at is not None
    # A second pull finds nothing new, and so does a pull after more of both.
    assert pull.pull_session(session.pk).added == 0
    upstream.preload("mixed", [("AI", "r4")])
    say(session, "m5")  # pending: not on the server yet
    assert pull.pull_session(session.pk).added == 1
    contents = [m["content"] for m in local(session)]
    assert contents[-2:] == ["r4", "m5"]  # ours moved after it: that is where it will land
    sync.push_session(session.pk)
    assert local(session) == upstream.stored_messages("mixed")
    assert sorted(m.sequence for m in memory.history(session)) == list(range(1, 10))


def test_a_brand_new_session_on_the_server_comes_in_whole(upstream):
    upstream.preload("theirs", [("Human", "q"), ("AI", "a")], context="they talked")
    session = memory.get_or_create_session("theirs")
    result = pull.pull_session(session.pk)
    assert result.added == 2
    session.refresh_from_db()
    assert local(session) == upstream.stored_messages("theirs")
    assert session.context == "they talked"


def test_compaction_summary_and_tokens_come_in_and_every_version_is_kept(upstream):
    session = memory.get_or_create_session("summ")
    for round_ in range(3):
        say(session, *[f"r{round_} n{n}" for n in range(13)])
        sync.push_session(session.pk)
        upstream.wait_for_compactions()
        pull.pull_session(session.pk)
    session.refresh_from_db()
    assert session.context == upstream.context("summ") and session.context
    assert session.tokens == upstream.tokens("summ") > 0
    versions = list(session.summaries.order_by("pulled_at", "pk"))
    assert len(versions) == 3 and versions[-1].context == session.context
    assert [v.tokens for v in versions] == sorted(v.tokens for v in versions)
    assert versions[0].through_sequence < versions[-1].through_sequence <= session.last_sequence
    # Pulling an unchanged server records nothing new.
    pull.pull_session(session.pk)
    assert session.summaries.count() == 3


def test_null_context_keeps_a_real_summary_and_none_is_kept_as_said(upstream):
    session = memory.get_or_create_session("nulls")
    memory.append_messages(session, [("Human", "hi")], context="ours")
    sync.push_session(session.pk)
    upstream.store.contexts.pop("nulls")  # the server lost only its summary
    pull.pull_session(session.pk)
    session.refresh_from_db()
    assert session.context == "ours"
    upstream.store.set_context("nulls", "NONE")
    pull.pull_session(session.pk)
    session.refresh_from_db()
    assert session.context == "NONE"
    assert SummaryVersion.objects.filter(session=session, context="NONE").count() == 1


def test_a_local_context_not_pushed_yet_wins(upstream):
    session = memory.get_or_create_session("mine")
    say(session, "hi")
    sync.push_session(session.pk)
    upstream.store.set_context("mine", "theirs")
    memory.set_context(session, "newer here")
    pull.pull_session(session.pk)
    session.refresh_from_db()
    assert session.context == "newer here" and session.context_pending


def test_wiped_server_is_drift(upstream):
    session = memory.get_or_create_session("gone")
    say(session, "a", "b")
    sync.push_session(session.pk)
    upstream.wipe()
    result = pull.pull_session(session.pk)
    assert "wiped" in result.drift
    session.refresh_from_db()
    assert session.sync_state == SyncState.DRIFTED and "wiped" in session.drift
    assert len(memory.history(session)) == 2  # the local record is untouched


def test_verify_reports_missing_and_extra_messages(upstream):
    received = []
    signals.drift_found.connect(lambda **kw: received.append(kw["drift"]), weak=False)
    try:
        fine = memory.get_or_create_session("fine")
        say(fine, "x")
        lost = memory.get_or_create_session("lost")
        say(lost, "a", "b", "c")
        extra = memory.get_or_create_session("extra")
        say(extra, "a")
        for session in (fine, lost, extra):
            sync.push_session(session.pk)
        del upstream.store.lists["lost"][1]  # "b" vanished on the server
        upstream.preload("extra", [("AI", "not from us")])
        assert pull.verify_session(fine.pk) == ""
        assert "1 local message(s) missing" in pull.verify_session(lost.pk)
        assert "1 message(s) on the server not in the local history" in pull.verify_session(
            extra.pk
        )
    finally:
        signals.drift_found.receivers.clear()
    states = dict(ChatSession.objects.values_list("session_id", "sync_state"))
    assert states == {"fine": "synced", "lost": "drifted", "extra": "drifted"}
    assert len(received) == 2
    # Verify is read-only: nothing was imported.
    assert len(memory.history(extra)) == 1


def test_pending_in_flight_sessions_are_left_to_the_push(upstream):
    session = memory.get_or_create_session("busy")
    say(session, "a")
    ChatSession.objects.filter(pk=session.pk).update(inflight_through=1)
    upstream.preload("busy", [("Human", "a")])
    result = pull.pull_session(session.pk)
    assert result.skipped == "in flight" and result.added == 0


def test_compare_places_extras_by_their_neighbours():
    def msgs(*contents):
        return [
            ChatMessage(sequence=n, role="H", content=c, sync_state=MessageSyncState.SYNCED)
            for n, c in enumerate(contents, start=1)
        ]

    def pairs(*contents):
        return [("H", c) for c in contents]

    ours = msgs("a", "b", "c")
    assert pull.compare(pairs("a", "b", "c"), ours).extras == []
    assert pull.compare(pairs("b", "x", "c", "y"), ours).extras == [
        (2, ("H", "x")),
        (3, ("H", "y")),
    ]
    assert pull.compare(pairs("x", "c"), ours).extras == [(2, ("H", "x"))]
    assert pull.compare(pairs("a", "c"), ours).missing == 1
    assert pull.compare([], ours).wiped
    # Nothing in common: appended after ours, reported.
    unrelated = pull.compare(pairs("p", "q"), ours)
    assert unrelated.extras == [(3, ("H", "p")), (3, ("H", "q"))] and not unrelated.overlap


def test_listing_beyond_the_hundredth_page_is_refused(upstream):
    for n in range(101):
        upstream.preload(f"s{n}", [("Human", "hi")])
    from motorhead_django.client import get_client

    with pytest.raises(Exception, match="at most 100 pages"):
        list(pull.remote_session_ids(get_client(), None, size=1))
    assert sum(len(p) for p in pull.remote_session_ids(get_client(), None, size=2)) == 101


def test_motorhead_sync_pull_and_verify(upstream, capsys):
    session = memory.get_or_create_session("cmd")
    say(session, "hi")
    sync.push_session(session.pk)
    upstream.preload("cmd", [("AI", "hello")])
    call_command("motorhead_sync", "--pull")
    assert "1 new message(s)" in capsys.readouterr().out
    assert local(session) == upstream.stored_messages("cmd")
    call_command("motorhead_sync", "--verify", "--session", "cmd")
    assert "in step" in capsys.readouterr().out
    upstream.stop()
    with pytest.raises(CommandError):
        call_command("motorhead_sync", "--pull", "--session", "cmd")


def test_a_langchain_style_reader_sees_the_pulled_window(upstream):
    session = memory.get_or_create_session("reader")
    say(session, "one", "two")
    sync.push_session(session.pk)
    data = requests.get(f"{upstream.url}/sessions/reader/memory", timeout=5).json()
    assert [m["content"] for m in reversed(data["messages"])] == ["one", "two"]


@pytest.mark.slow
def test_import_of_500_sessions_in_two_namespaces_interrupted_and_resumed(upstream, capsys):
    for n in range(500):
        namespace = "alpha" if n % 2 else "beta"
        upstream.preload(
            f"imp-{n:03d}",
            [("Human", f"q{n}"), ("AI", f"a{n}")],
            context=f"summary {n}" if n % 5 == 0 else None,
            namespace=namespace,
        )
    # Reads fail now and then (500s and dropped connections), from a fixed seed.
    upstream.faults.methods = {"GET"}
    upstream.faults.fail_rate = 0.004
    upstream.faults._random.seed(4)
    runs = interruptions = 0
    while True:
        runs += 1
        assert runs <= 30, "the import never completed"
        try:
            call_command(
                "motorhead_import",
                "--namespace",
                "alpha",
                "--namespace",
                "beta",
                "--page-size",
                "100",
            )
            break
        except CommandError as exc:
            assert "Run the command again to resume" in str(exc) or "Could not list" in str(exc)
            interruptions += 1
    assert interruptions >= 1
    out = capsys.readouterr().out
    assert "Namespace 'alpha': 250 session(s) listed" in out
    assert ChatSession.objects.count() == 500
    assert ChatSession.objects.filter(namespace="alpha").count() == 250
    assert ChatMessage.objects.count() == 1000
    assert not ChatMessage.objects.exclude(origin=MessageOrigin.REMOTE).exists()
    for session in ChatSession.objects.filter(session_id__in=["imp-000", "imp-005", "imp-499"]):
        assert local(session) == upstream.stored_messages(session.session_id)
        assert session.context == upstream.context(session.session_id)
    # Listing pages: 3 per namespace per complete run, several runs.
    listings = [r for r in upstream.requests if r.path == "/sessions"]
    assert {r.query for r in listings} >= {"page=3&size=100&namespace=alpha"}
    # A last run imports nothing again.
    upstream.faults.clear()
    call_command("motorhead_import", "--namespace", "alpha", "--namespace", "beta")
    assert "0 session(s) imported, 500 already there" in capsys.readouterr().out
    assert ChatMessage.objects.count() == 1000


def test_a_pull_waits_its_turn_behind_a_push(upstream):
    """The pull takes the push's per-session lock: held elsewhere, the pull does nothing."""
    session = memory.get_or_create_session("locked")
    with lock_held_elsewhere(session.pk):
        upstream.preload("locked", [("AI", "meanwhile")])
        result = pull.pull_session(session.pk)
        assert result.busy and result.added == 0
    assert pull.pull_session(session.pk).added == 1


def test_a_zero_token_count_never_replaces_ours(upstream):
    session = memory.get_or_create_session("count")
    memory.append_messages(session, [("Human", "hi")])
    sync.push_session(session.pk)
    ChatSession.objects.filter(pk=session.pk).update(tokens=120)
    upstream.store.set_context("count", "a summary")
    pull.pull_session(session.pk)
    session.refresh_from_db()
    assert session.tokens == 120 and session.context == "a summary"
    upstream.store.tokens["count"] = 30
    pull.pull_session(session.pk)
    session.refresh_from_db()
    assert session.tokens == 30


@pytest.mark.django_db(transaction=True)
def test_pulls_and_concurrent_writers_keep_one_unbroken_order(upstream, postgres):
    """On PostgreSQL: writers append while pulls insert foreign messages before their rows."""
    import threading
    import time

    from django.db import connection

    session = memory.get_or_create_session("busy-pull")
    say(session, "m1", "m2")
    sync.push_session(session.pk)
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set() or n < 20:
                memory.append_messages(session, [("Human", f"w{n}"), ("AI", f"w{n}'")])
                n += 1
                progress.append(n)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    progress: list[int] = []
    thread = threading.Thread(target=writer)
    thread.start()
    moved = 0
    for n in range(10):
        while len(progress) <= n and thread.is_alive():  # pending rows exist: they must move
            time.sleep(0.001)
        upstream.preload("busy-pull", [("AI", f"f{n}")])
        moved += pull.pull_session(session.pk).added
    stop.set()
    thread.join(30)
    assert errors == [] and moved == 10
    rows = list(ChatMessage.objects.filter(session=session).order_by("sequence"))
    assert [m.sequence for m in rows] == list(range(1, len(rows) + 1))
    assert ChatSession.objects.get(pk=session.pk).last_sequence == len(rows)
    contents = [m.content for m in rows]
    # Ours first, then the foreign ones in the server's order, then every pending write.
    assert contents[:12] == ["m1", "m2"] + [f"f{n}" for n in range(10)]
    written = contents[12:]
    assert written == [c for n in range(len(written) // 2) for c in (f"w{n}", f"w{n}'")]
    assert sync.push_session(session.pk).error == ""
    upstream.wait_for_compactions()
    stored = upstream.stored_messages("busy-pull")
    assert stored and local(session)[-len(stored) :] == stored


@pytest.mark.parametrize(
    "role, content, context",
    [
        ("AI", "before\x00after", None),  # PostgreSQL refuses NUL in text
        ("R" * 300, "a role longer than the column", None),
        ("AI", "fine", "a summary with \x00"),
    ],
    ids=["nul", "long-role", "context"],
)
def test_a_window_the_database_cannot_store_is_refused_whole_not_half_written(
    upstream, role, content, context
):
    session = memory.get_or_create_session("odd")
    say(session, "ours")
    sync.push_session(session.pk)
    upstream.preload("odd", [("AI", "theirs"), (role, content)], context=context)

    result = pull.pull_session(session.pk)

    assert result.error == result.refused
    assert result.refused.startswith("the server's window holds text this database cannot store (")
    # "theirs" did not come in either
    assert local(session) == [{"role": "Human", "content": "ours"}]
    session.refresh_from_db()
    assert session.context is None and session.last_pulled_at is None


def test_import_skips_a_session_it_cannot_store_and_goes_on(upstream, capsys):
    upstream.preload("bad", [("AI", "x\x00y")])
    upstream.preload("good", [("AI", "fine")])
    call_command("motorhead_import")
    assert local(ChatSession.objects.get(session_id="good")) == [{"role": "AI", "content": "fine"}]
    assert "Skipped 'bad'" in capsys.readouterr().err
    assert not ChatMessage.objects.filter(session__session_id="bad").exists()
