"""The push engine, in process, against the test server over real HTTP."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from motorhead_django import memory, signals, sync
from motorhead_django.exceptions import CompactionTimeout, is_retryable
from motorhead_django.models import ChatSession, SyncState
from motorhead_django.sync import landed_prefix

from .conftest import lock_held_elsewhere, lock_is_free_elsewhere

pytestmark = pytest.mark.django_db


def write(session_id: str, count: int, start: int = 1) -> ChatSession:
    session = memory.get_or_create_session(session_id)
    pairs = [
        ("Human" if n % 2 else "AI", f"{session_id} message {n}")
        for n in range(start, start + count)
    ]
    for offset in range(0, len(pairs), 50):
        memory.append_messages(session, pairs[offset : offset + 50])
    return session


def local(session: ChatSession) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in memory.history(session)]


def test_push_sends_everything_in_order_and_marks_it_synced(upstream):
    session = write("s1", 5)
    result = sync.push_session(session.pk)
    assert result.pushed == 5 and result.state == SyncState.SYNCED
    assert upstream.stored_messages("s1") == local(session)
    session.refresh_from_db()
    assert session.sync_state == SyncState.SYNCED and session.last_pushed_at is not None
    assert not session.messages.pending().exists()
    # Nothing left: a second push sends nothing.
    before = len(upstream.requests)
    assert sync.push_session(session.pk).pushed == 0
    assert [r.method for r in upstream.requests[before:]] == []


def test_context_goes_with_the_next_batch(upstream):
    session = memory.get_or_create_session("ctx")
    memory.append_messages(session, [("Human", "hi")], context="an earlier summary")
    sync.push_session(session.pk)
    assert upstream.context("ctx") == "an earlier summary"
    session.refresh_from_db()
    assert not session.context_pending


def test_batches_are_never_empty_or_larger_than_batch_size(upstream, settings):
    settings.MOTORHEAD = settings.MOTORHEAD | {"BATCH_SIZE": 4}
    session = write("sizes", 10)
    sync.push_session(session.pk)
    posts = [r for r in upstream.requests if r.method == "POST"]
    sizes = [len(__import__("json").loads(r.body)["messages"]) for r in posts]
    assert sizes and all(1 <= size <= 4 for size in sizes) and sum(sizes) == 10


@pytest.mark.slow
def test_backlog_is_paced_so_every_message_is_summarised(upstream_factory):
    """With a slow summariser, a backlog still passes through it whole, and nothing is dropped."""
    server = upstream_factory(6, {"COMPACTION_TIMEOUT": 10.0}, compaction_delay=0.2)
    session = write("backlog", 40)
    result = sync.push_session(session.pk)
    assert result.pushed == 40
    server.wait_for_compactions()
    assert server.dropped_lines("backlog") == []
    summarised = set(server.summarized_lines("backlog"))
    lines = [f"{m['role']}: {m['content']}" for m in local(session)]
    # All but the newest kept window went through the summariser.
    kept = {f"{m['role']}: {m['content']}" for m in server.stored_messages("backlog")}
    assert all(line in summarised or line in kept for line in lines)


def test_an_unpaced_backlog_would_lose_messages(motorhead_server_factory):
    """The control for the test above: the same backlog posted flat out loses summary input."""
    import requests

    server = motorhead_server_factory(window_size=6, compaction_delay=0.2)
    for start in range(0, 40, 3):
        requests.post(
            f"{server.url}/sessions/flat/memory",
            json={
                "messages": [
                    {"role": "Human", "content": f"m{n}"} for n in range(start, min(start + 3, 40))
                ]
            },
            timeout=5,
        )
    server.wait_for_compactions()
    assert server.dropped_lines("flat") != []


def test_failed_attempts_back_off_then_succeed(upstream):
    session = write("flaky", 3)
    upstream.faults.fail_next(2, mode="error", methods={"POST"})
    first = sync.push_session(session.pk)
    assert first.state == SyncState.RETRYING and first.retry_at is not None
    session.refresh_from_db()
    assert session.sync_attempts == 1 and "500" in session.last_error
    sync.push_session(session.pk)
    final = sync.push_session(session.pk)
    assert final.state == SyncState.SYNCED
    session.refresh_from_db()
    assert session.sync_attempts == 0 and session.last_error == ""
    assert upstream.stored_messages("flaky") == local(session)


def test_gives_up_after_max_retries(upstream, settings):
    settings.MOTORHEAD = settings.MOTORHEAD | {"MAX_RETRIES": 1}
    session = write("down", 1)
    upstream.faults.fail_rate = 1.0
    assert sync.push_session(session.pk).state == SyncState.RETRYING
    assert sync.push_session(session.pk).state == SyncState.FAILED


def test_a_client_error_fails_at_once_with_the_servers_message(motorhead_server_factory, settings):
    server = motorhead_server_factory(hosted=True, api_key="right", client_id="c")
    settings.MOTORHEAD = {"URL": server.url, "API_KEY": "wrong", "CLIENT_ID": "c"}
    session = write("auth", 1)
    result = sync.push_session(session.pk)
    assert result.state == SyncState.FAILED and result.retry_at is None
    session.refresh_from_db()
    assert "401" in session.last_error and "wrong" not in session.last_error


@pytest.mark.parametrize("mode", ["apply_then_error", "apply_then_drop"])
def test_applied_then_failed_is_not_sent_twice(upstream, mode):
    session = write("ambiguous", 4)
    upstream.faults.fail_next(1, mode=mode, methods={"POST"})
    result = sync.push_session(session.pk)
    assert result.state == SyncState.SYNCED
    assert result.resolved == ["seq 1-4: landed"]
    assert upstream.stored_messages("ambiguous") == local(session)


def test_failed_before_applying_is_sent_again(upstream):
    session = write("lost", 4)
    upstream.faults.fail_next(1, mode="drop", methods={"POST"})
    first = sync.push_session(session.pk)
    assert first.resolved == ["seq 1-4: not applied"] and first.state == SyncState.RETRYING
    session.refresh_from_db()
    # A slow server could still apply it: the retry looks at the window again first.
    assert session.inflight_through == 4
    second = sync.push_session(session.pk)
    assert second.resolved == ["seq 1-4: not applied"] and second.state == SyncState.SYNCED
    assert upstream.stored_messages("lost") == local(session)


def test_a_timed_out_write_that_landed_is_not_duplicated(upstream, settings):
    settings.MOTORHEAD = settings.MOTORHEAD | {"READ_TIMEOUT": 0.3}
    session = write("slow", 2)
    upstream.faults.latency = 0.6
    upstream.faults.methods = {"POST"}
    sync.push_session(session.pk)
    upstream.faults.clear()
    sync.push_session(session.pk)
    assert upstream.stored_messages("slow") == local(session)


def test_a_crash_after_sending_is_settled_from_the_window(upstream):
    """The worker died after the POST landed and before it recorded it."""
    session = write("crash", 3)
    upstream.preload("crash", local(session))
    ChatSession.objects.filter(pk=session.pk).update(inflight_through=3)
    result = sync.push_session(session.pk)
    assert result.resolved == ["seq 1-3: landed"] and result.pushed == 3
    assert upstream.stored_messages("crash") == local(session)


def test_a_crash_before_sending_is_sent_again(upstream):
    session = write("crash2", 3)
    ChatSession.objects.filter(pk=session.pk).update(inflight_through=3)
    result = sync.push_session(session.pk)
    assert result.resolved == ["seq 1-3: not applied"]
    assert upstream.stored_messages("crash2") == local(session)


def test_signals_around_each_step(upstream):
    seen: list[tuple[str, int]] = []

    def on(name):
        def receiver(sender, session, **kwargs):
            seen.append((name, len(kwargs.get("messages") or [])))

        return receiver

    receivers = [on("pre"), on("post"), on("failed")]
    signals.pre_push.connect(receivers[0])
    signals.post_push.connect(receivers[1])
    signals.push_failed.connect(receivers[2])
    try:
        session = write("sig", 2)
        upstream.faults.fail_next(1, mode="error", methods={"POST"})
        sync.push_session(session.pk)
        sync.push_session(session.pk)
    finally:
        signals.pre_push.disconnect(receivers[0])
        signals.post_push.disconnect(receivers[1])
        signals.push_failed.disconnect(receivers[2])
    assert seen == [("pre", 2), ("failed", 0), ("pre", 2), ("post", 2)]


@pytest.mark.parametrize(
    "window,landed",
    [
        (["a", "b", "c", "d"], True),  # tail of earlier + batch
        (["a", "b"], False),  # tail of earlier
        ([], False),  # empty server
        (["c", "d", "x"], True),  # another client wrote after our batch
        (["x", "y"], False),  # unrelated
    ],
)
def test_one_posted_batch_landed_or_not(window, landed):
    """A single POST is applied whole or not at all: all of it is the landed prefix, or none."""
    pair = lambda text: ("Human", text)  # noqa: E731
    batch = [pair("c"), pair("d")]
    prefix = landed_prefix([pair(t) for t in window], [pair("a"), pair("b")], batch)
    assert prefix == (len(batch) if landed else 0)


def test_motorhead_sync_command_drains_and_reports(upstream, capsys):
    write("cmd-a", 3)
    write("cmd-b", 2)
    call_command("motorhead_sync")
    out = capsys.readouterr().out
    assert (
        "Pushing 2 session(s)" in out
        and "Done: 5 message(s) pushed, 2 session(s) synced, 0 not." in out
    )
    assert upstream.stored_messages("cmd-b")[-1]["content"] == "cmd-b message 2"


def test_motorhead_sync_command_fails_when_something_stays_failed(upstream):
    write("cmd-fail", 1)
    upstream.faults.fail_rate = 1.0
    with pytest.raises(CommandError, match="1 session\\(s\\) still not synced"):
        call_command("motorhead_sync", "--session", "cmd-fail")


def test_motorhead_sync_command_needs_a_server(settings):
    settings.MOTORHEAD = {}
    with pytest.raises(CommandError, match="Sync is not enabled"):
        call_command("motorhead_sync")


@pytest.mark.parametrize(
    "window,landed",
    [
        (["a", "b", "c", "d", "e"], 3),  # the window ends within the in-flight run
        (["b", "c", "d", "e", "f", "g"], 5),  # all of it
        (["a", "b"], 0),
        (["d", "e", "x"], 3),  # another writer after our third message
    ],
)
def test_landed_prefix(window, landed):
    pair = lambda text: ("Human", text)  # noqa: E731
    inflight = [pair(t) for t in "cdefg"]
    assert landed_prefix([pair(t) for t in window], [pair("a"), pair("b")], inflight) == landed


def test_one_mark_and_one_confirmation_per_segment_whatever_the_batches(upstream, settings):
    """The in-flight bookkeeping does not grow with the number of POSTs."""
    updates = {}
    for batch_size in (2, 6):
        settings.MOTORHEAD = settings.MOTORHEAD | {"BATCH_SIZE": batch_size}
        session = write(f"cost-{batch_size}", 12)
        with CaptureQueriesContext(connection) as queries:
            result = sync.push_session(session.pk)
        assert result.pushed == 12 and result.batches == 12 // batch_size
        updates[batch_size] = sum(q["sql"].startswith("UPDATE") for q in queries.captured_queries)
    assert updates[2] == updates[6] <= 4


def test_a_crash_in_the_middle_of_a_segment_resends_only_what_did_not_land(upstream, settings):
    settings.MOTORHEAD = settings.MOTORHEAD | {"BATCH_SIZE": 2}
    session = write("half", 10)
    # The worker died after three of the segment's five POSTs landed.
    upstream.preload("half", local(session)[:6])
    ChatSession.objects.filter(pk=session.pk).update(inflight_through=10)
    result = sync.push_session(session.pk)
    assert result.resolved == ["seq 1-10: landed through seq 6"]
    assert result.pushed == 10 and result.state == SyncState.SYNCED
    assert upstream.stored_messages("half") == local(session)


@pytest.mark.parametrize(
    "mode,resolved",
    [
        ("error", ["seq 1-10: landed through seq 4"]),
        ("apply_then_drop", ["seq 1-10: landed through seq 6"]),
    ],
)
def test_a_failure_in_the_middle_of_a_segment(upstream, settings, mode, resolved):
    settings.MOTORHEAD = settings.MOTORHEAD | {"BATCH_SIZE": 2}
    session = write("mid", 10)
    upstream.faults.fail_next(1, mode=mode, methods={"POST"}, after=2)
    first = sync.push_session(session.pk)
    assert first.resolved == resolved
    sync.push_session(session.pk)
    assert upstream.stored_messages("mid") == local(session)


def test_a_client_error_mid_segment_keeps_what_was_answered(upstream, settings):
    """A 4xx is not ambiguous: the answered batches are confirmed and nothing is read."""
    settings.MOTORHEAD = settings.MOTORHEAD | {"BATCH_SIZE": 2}
    session = write("denied", 6)
    upstream.faults.fail_next(1, mode="reject", methods={"POST"}, after=2)
    result = sync.push_session(session.pk)
    assert result.pushed == 4 and result.state == SyncState.FAILED and result.resolved == []
    assert [r.method for r in upstream.requests] == ["GET", "POST", "POST", "POST"]
    session.refresh_from_db()
    assert session.inflight_through is None and "400" in session.last_error
    assert list(session.messages.pending().values_list("sequence", flat=True)) == [5, 6]


def test_a_write_during_the_push_leaves_the_session_pending(upstream):
    """A message committed after the push's last read is neither lost nor covered by 'synced'."""
    session = write("busy", 2)

    def write_more(sender, session, messages, **kwargs):
        signals.post_push.disconnect(write_more)
        memory.append_messages(session, [("Human", "written during the push")])

    signals.post_push.connect(write_more)
    try:
        first = sync.push_session(session.pk)
    finally:
        signals.post_push.disconnect(write_more)
    assert first.pushed == 2 and first.state == SyncState.PENDING and first.more
    assert sync.push_session(session.pk).state == SyncState.SYNCED
    assert upstream.stored_messages("busy") == local(session)


# -- passes: many sessions pushed together ---------------------------------------------------


def applied_lines(server, session_id: str) -> list[dict[str, str]]:
    """Every message the server applied for a session, in the order it applied them.

    Read from the POSTs it recorded (those that failed after applying included),
    so a duplicate shows even where compaction has trimmed the list since.
    """
    path = f"/sessions/{session_id}/memory"
    applied = []
    for request in server.requests_for("POST"):
        if request.path == path and (request.fault is None or request.fault.startswith("apply")):
            applied.extend(json.loads(request.body)["messages"])
    return applied


def test_a_pass_costs_the_same_statements_for_one_session_or_twelve(upstream, settings):
    """Locks, reads, marks and records are shared by the sessions of a pass."""
    settings.MOTORHEAD = settings.MOTORHEAD | {"WINDOW_SIZE": 100, "BATCH_SIZE": 4}
    counts = {}
    for size in (1, 12):
        keys = [write(f"pass{size}-{n}", 8).pk for n in range(size)]
        with CaptureQueriesContext(connection) as queries:
            results = sync.push_sessions(keys)
        assert [r.state for r in results] == [SyncState.SYNCED] * size
        assert sum(r.batches for r in results) == 2 * size
        counts[size] = len(queries.captured_queries)
    assert counts[1] == counts[12] <= 14  # 12 outside a test, which adds savepoints


def test_a_pass_pushes_other_sessions_while_one_waits_for_its_compaction(upstream_factory):
    server = upstream_factory(4, {"BATCH_SIZE": 2}, compaction_delay=0.3)
    slow, quick = write("slow-compaction", 8), write("no-compaction", 2)
    started = time.monotonic()
    sync.push_sessions([slow.pk, quick.pk])
    paths = [r.path for r in server.requests_for("POST")]
    # The quick session's POST came before the slow one's second segment.
    first_quick = paths.index("/sessions/no-compaction/memory")
    assert first_quick < len([p for p in paths if "slow" in p])
    assert time.monotonic() - started >= 0.3
    for session in (slow, quick):
        assert applied_lines(server, session.session_id) == local(session)
    assert server.dropped_lines("slow-compaction") == []


def test_a_busy_or_failing_session_does_not_hold_up_the_pass(upstream):
    busy, failing, fine = write("p-busy", 2), write("p-failing", 2), write("p-fine", 2)
    upstream.faults.fail_next(1, mode="reject", methods={"POST"}, after=0)
    with lock_held_elsewhere(busy.pk):  # another worker is pushing it
        results = sync.push_sessions([failing.pk, busy.pk, fine.pk])
    by_key = {r.session_pk: r for r in results}
    assert by_key[busy.pk].busy and by_key[busy.pk].pushed == 0
    assert by_key[failing.pk].state == SyncState.FAILED and "400" in by_key[failing.pk].error
    assert by_key[fine.pk].state == SyncState.SYNCED and by_key[fine.pk].pushed == 2
    assert upstream.stored_messages("p-fine") == local(fine)
    assert upstream.stored_messages("p-failing") == []


def test_a_backlog_longer_than_a_chunk_is_pushed_in_one_run(upstream, settings, monkeypatch):
    monkeypatch.setattr(sync, "_READ_CHUNK", 5)
    settings.MOTORHEAD = settings.MOTORHEAD | {"WINDOW_SIZE": 100, "BATCH_SIZE": 3}
    session = write("long", 12)
    result = sync.push_session(session.pk)
    assert result.pushed == 12 and result.state == SyncState.SYNCED and not result.more
    assert upstream.stored_messages("long") == local(session)


def test_when_the_window_cannot_be_read_after_an_ambiguous_post_the_mark_stays(upstream, settings):
    settings.MOTORHEAD = settings.MOTORHEAD | {"BATCH_SIZE": 2}
    session = write("unsettled", 4)
    upstream.faults.fail_next(1, mode="apply_then_drop", methods={"POST"}, after=1)
    upstream.faults.fail_next(1, mode="error", methods={"GET"}, after=1)
    first = sync.push_session(session.pk)
    assert first.pushed == 2 and first.state == SyncState.RETRYING
    session.refresh_from_db()
    assert session.inflight_through == 4  # seq 3-4 may be on the server
    second = sync.push_session(session.pk)
    assert second.resolved == ["seq 3-4: landed"] and second.state == SyncState.SYNCED
    assert applied_lines(upstream, "unsettled") == local(session)


@pytest.mark.slow
@pytest.mark.parametrize("window", [12, 64])
def test_passes_through_a_faulty_server_apply_every_message_once(
    upstream_factory, monkeypatch, window
):
    """30% of requests fail and 10% fail after applying; passes run until nothing is pending."""
    server = upstream_factory(window, {"BATCH_SIZE": 4, "MAX_RETRIES": 10_000}, seed=window)
    monkeypatch.setattr(sync, "PASS_SIZE", 7)
    sessions = [write(f"faulty-{n}", 20) for n in range(30)]
    server.faults.fail_rate, server.faults.apply_then_fail_rate = 0.3, 0.1
    for _ in range(100):
        sync.drain()
        if not ChatSession.objects.pending().exists():
            break
    assert not ChatSession.objects.pending().exists()
    assert {"error", "drop", "apply_then_error", "apply_then_drop"} <= {
        r.fault for r in server.requests if r.fault
    }
    server.wait_for_compactions()
    for session in sessions:
        assert applied_lines(server, session.session_id) == local(session), session.session_id
        assert server.dropped_lines(session.session_id) == []


def test_a_session_that_finishes_is_released_while_the_pass_goes_on(upstream_factory):
    server = upstream_factory(4, {"BATCH_SIZE": 2}, compaction_delay=0.05)
    long, short = write("long-one", 16), write("short-one", 2)
    seen_later = []

    def on_pre_push(sender, session, messages, **kwargs):
        if session.pk == long.pk and messages[-1].sequence > 10:
            short.refresh_from_db()
            seen_later.append((short.sync_state, lock_is_free_elsewhere(short.pk)))

    signals.pre_push.connect(on_pre_push)
    try:
        results = sync.push_sessions([long.pk, short.pk])
    finally:
        signals.pre_push.disconnect(on_pre_push)
    assert [r.state for r in results] == [SyncState.SYNCED, SyncState.SYNCED]
    # While the long session was still pushing, the short one was recorded and unlocked.
    assert seen_later and set(seen_later) == {(SyncState.SYNCED, True)}
    for session in (long, short):
        assert applied_lines(server, session.session_id) == local(session)


def test_one_segment_at_a_time_is_marked_in_flight(upstream_factory):
    """A worker killed at any point leaves at most WINDOW_SIZE + 1 messages to settle."""
    server = upstream_factory(4, {"BATCH_SIZE": 2})
    session = write("segments", 20)
    in_doubt = []

    def on_pre_push(sender, session, messages, **kwargs):
        row = ChatSession.objects.get(pk=session.pk)
        first_pending = row.messages.pending().chronological().first()
        in_doubt.append(row.inflight_through - first_pending.sequence + 1)

    signals.pre_push.connect(on_pre_push)
    try:
        assert sync.push_session(session.pk).state == SyncState.SYNCED
    finally:
        signals.pre_push.disconnect(on_pre_push)
    assert len(in_doubt) > 5 and max(in_doubt) <= 5
    assert applied_lines(server, "segments") == local(session)


def test_an_error_that_is_not_the_servers_stops_the_pass_and_keeps_what_landed(upstream, settings):
    settings.MOTORHEAD = settings.MOTORHEAD | {"BATCH_SIZE": 2}
    broken, waiting = write("broken", 6), write("waiting", 2)

    def on_pre_push(sender, session, messages, **kwargs):
        if session.pk == broken.pk and messages[0].sequence == 3:
            raise RuntimeError("a receiver's bug")

    signals.pre_push.connect(on_pre_push)
    try:
        with pytest.raises(RuntimeError, match="a receiver's bug"):
            sync.push_sessions([broken.pk, waiting.pk])
    finally:
        signals.pre_push.disconnect(on_pre_push)
    broken.refresh_from_db()
    assert list(broken.messages.pending().values_list("sequence", flat=True)) == [3, 4, 5, 6]
    assert broken.inflight_through is not None  # kept: the next run looks first
    assert lock_is_free_elsewhere(broken.pk) and lock_is_free_elsewhere(waiting.pk)
    results = sync.push_sessions([broken.pk, waiting.pk])
    assert [r.state for r in results] == [SyncState.SYNCED, SyncState.SYNCED]
    for session in (broken, waiting):
        assert applied_lines(upstream, session.session_id) == local(session)


def test_a_context_changed_during_a_long_backlog_goes_with_the_next_chunk(
    upstream_factory, monkeypatch
):
    monkeypatch.setattr(sync, "_READ_CHUNK", 4)
    server = upstream_factory(100, {"BATCH_SIZE": 2})
    session = memory.get_or_create_session("ctx-backlog")
    memory.append_messages(session, [("Human", f"m{n}") for n in range(8)], context="first")

    def on_post_push(sender, session, messages, **kwargs):
        signals.post_push.disconnect(on_post_push)
        memory.set_context(ChatSession.objects.get(pk=session.pk), "second")

    signals.post_push.connect(on_post_push)
    try:
        assert sync.push_session(session.pk).pushed == 8
    finally:
        signals.post_push.disconnect(on_post_push)
    contexts = [json.loads(r.body).get("context") for r in server.requests_for("POST")]
    assert contexts == ["first", None, "second", None]
    session.refresh_from_db()
    assert server.context("ctx-backlog") == "second" and not session.context_pending


@pytest.mark.django_db(transaction=True)
def test_a_pass_does_not_deadlock_with_a_transaction_writing_to_two_sessions(postgres, upstream):
    """A pass never waits for one session's row while holding another's."""
    first, second = write("held-a", 2), write("held-b", 2)
    holding, errors = threading.Event(), []

    def writer() -> None:
        try:
            with transaction.atomic():
                ChatSession.objects.filter(pk=second.pk).update(updated_at=timezone.now())
                holding.set()
                time.sleep(0.5)  # the pass reaches the rows meanwhile
                ChatSession.objects.filter(pk=first.pk).update(updated_at=timezone.now())
        except Exception as exc:  # PostgreSQL's deadlock detector would pick this one
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    results = sync.push_sessions([first.pk, second.pk])
    thread.join()
    assert errors == []
    assert [r.state for r in results] == [SyncState.SYNCED, SyncState.SYNCED]
    for session in (first, second):
        assert upstream.stored_messages(session.session_id) == local(session)


def test_a_pass_stopped_early_keeps_the_marks_it_has_not_settled(upstream):
    """A session whose earlier run may have sent messages keeps its mark until it is settled."""
    broken, crashed_before = write("breaks-first", 2), write("was-in-flight", 2)
    # A worker died after this session's POST landed and before it recorded it.
    upstream.preload("was-in-flight", local(crashed_before))
    ChatSession.objects.filter(pk=crashed_before.pk).update(inflight_through=2)

    def on_pre_push(sender, session, messages, **kwargs):
        if session.pk == broken.pk:
            raise RuntimeError("a receiver's bug")

    signals.pre_push.connect(on_pre_push)
    try:
        with pytest.raises(RuntimeError):
            sync.push_sessions([broken.pk, crashed_before.pk])
    finally:
        signals.pre_push.disconnect(on_pre_push)
    crashed_before.refresh_from_db()
    assert crashed_before.inflight_through == 2
    result = sync.push_session(crashed_before.pk)
    assert result.resolved == ["seq 1-2: landed"] and result.state == SyncState.SYNCED
    assert upstream.stored_messages("was-in-flight") == local(crashed_before)


# -- ambiguous writes the content cannot settle (issue 14 item 5) ----------------------------


def say_ok(session_id: str, count: int) -> ChatSession:
    """A conversation that repeats itself: every message is the same."""
    session = memory.get_or_create_session(session_id)
    memory.append_messages(session, [("AI" if n % 2 else "Human", "ok") for n in range(count)])
    return session


def server_holds_exactly_ours(server, session: ChatSession) -> bool:
    server.wait_for_compactions()
    return server.stored_messages(session.session_id) == local(session)


def test_a_repetitive_conversation_a_500_that_did_not_apply_is_sent_again(upstream):
    """The window's content fits both outcomes; its length says the batch did not land."""
    session = say_ok("oks", 4)
    sync.push_session(session.pk)
    memory.append_messages(session, [("Human", "ok"), ("AI", "ok")])
    upstream.faults.fail_next(1, mode="error", methods={"POST"})
    first = sync.push_session(session.pk)
    assert first.resolved == ["seq 5-6: not applied"] and first.state == SyncState.RETRYING
    session.refresh_from_db()
    assert session.inflight_through is None  # the request was over: nothing left to settle
    assert list(session.messages.pending().values_list("sequence", flat=True)) == [5, 6]
    assert upstream.stored_messages("oks") == local(session)[:4]  # not marked synced
    assert sync.drain([session.pk])[0].state == SyncState.SYNCED
    assert server_holds_exactly_ours(upstream, session)


@pytest.mark.parametrize("mode", ["apply_then_error", "apply_then_drop"])
def test_a_repetitive_conversation_a_write_that_applied_is_not_sent_twice(upstream, mode):
    session = say_ok("oks-landed", 4)
    sync.push_session(session.pk)
    memory.append_messages(session, [("Human", "ok"), ("AI", "ok")])
    upstream.faults.fail_next(1, mode=mode, methods={"POST"})
    result = sync.push_session(session.pk)
    assert result.resolved == ["seq 5-6: landed"] and result.state == SyncState.SYNCED
    assert server_holds_exactly_ours(upstream, session)


def test_a_repetitive_conversation_a_write_that_started_a_compaction(upstream_factory, settings):
    """The batch that fills the window landed: the compaction it started (more tokens) says so."""
    upstream = upstream_factory(window_size=6)
    session = say_ok("oks-compact", 4)
    sync.push_session(session.pk)
    memory.append_messages(session, [("Human", "ok"), ("AI", "ok"), ("Human", "ok")])
    upstream.faults.fail_next(1, mode="apply_then_error", methods={"POST"})
    result = sync.push_session(session.pk)
    assert result.resolved == ["seq 5-7: landed"]
    upstream.wait_for_compactions()
    assert upstream.tokens("oks-compact") > 0
    assert sync.push_session(session.pk).state == SyncState.SYNCED
    # Nothing sent twice.
    posted = [len(json.loads(r.body)["messages"]) for r in upstream.requests_for("POST")]
    assert sum(posted) == 7


def test_a_repetitive_conversation_a_dropped_write_is_in_doubt_then_rebuilt(upstream):
    """A dropped connection: the server may still apply it, so the next run looks again;
    with no length to compare, the content cannot tell, and the server's copy is rebuilt."""
    session = say_ok("oks-drop", 4)
    sync.push_session(session.pk)
    memory.append_messages(session, [("Human", "ok"), ("AI", "ok")])
    upstream.faults.fail_next(1, mode="drop", methods={"POST"})
    first = sync.push_session(session.pk)
    assert first.resolved == ["seq 5-6: not applied"] and first.state == SyncState.RETRYING
    session.refresh_from_db()
    assert session.inflight_through == 6
    second = sync.push_session(session.pk)
    assert second.resolved == ["seq 5-6: rebuilt on the server (2 outcomes fit the window)"]
    assert second.state == SyncState.SYNCED
    assert server_holds_exactly_ours(upstream, session)


def test_a_killed_run_in_a_repetitive_conversation_is_rebuilt_not_guessed(upstream):
    """A worker died after sending: the server holds some prefix, the content fits them all."""
    session = say_ok("oks-crash", 6)
    upstream.preload("oks-crash", local(session)[:4], context="the server's summary")
    ChatSession.objects.filter(pk=session.pk).update(inflight_through=6)
    result = sync.push_session(session.pk)
    assert result.resolved == ["seq 1-6: rebuilt on the server (2 outcomes fit the window)"]
    assert result.state == SyncState.SYNCED
    assert [r.method for r in upstream.requests] == ["GET", "DELETE", "POST"]
    assert server_holds_exactly_ours(upstream, session)
    # The rebuild keeps the server's summary (newer than ours, which we never had).
    assert upstream.context("oks-crash") == "the server's summary"


def test_an_in_doubt_session_whose_rebuild_failed_rebuilds_before_sending_more(upstream):
    session = say_ok("oks-doubt", 4)
    upstream.preload("oks-doubt", local(session)[:2])
    ChatSession.objects.filter(pk=session.pk).update(inflight_through=4)
    upstream.faults.fail_next(1, mode="error", methods={"DELETE"})
    first = sync.push_session(session.pk)
    assert first.state == SyncState.IN_DOUBT and first.retry_at is not None
    session.refresh_from_db()
    assert session.sync_state == SyncState.IN_DOUBT and session.inflight_through == 4
    assert ChatSession.objects.due(first.retry_at).filter(pk=session.pk).exists()  # swept
    memory.append_messages(session, [("Human", "ok")])
    before = len(upstream.requests)
    second = sync.push_session(session.pk)
    # No read to settle by content: rebuilt first, then the new message.
    assert [r.method for r in upstream.requests[before:]] == ["DELETE", "POST", "POST"]
    assert second.state == SyncState.SYNCED and second.pushed == 5
    assert server_holds_exactly_ours(upstream, session)


def test_a_faulty_server_and_a_repetitive_conversation_apply_every_message_once(upstream):
    """Every fault mode, many times over: after draining the server holds ours, once each."""
    upstream.faults.fail_rate = upstream.faults.apply_then_fail_rate = 0.25
    upstream.faults.methods = {"POST"}
    sessions = [say_ok(f"oks-{n}", 2) for n in range(3)]
    for _ in range(4):
        for session in sessions:
            memory.append_messages(session, [("Human", "ok"), ("AI", "ok")])
            sync.push_session(session.pk)
    upstream.faults.clear()
    for result in sync.drain([s.pk for s in sessions]):
        assert result.state == SyncState.SYNCED, result
    for session in sessions:
        assert server_holds_exactly_ours(upstream, session)


def pairs(texts: str) -> tuple[tuple[str, str], ...]:
    return tuple(("Human", text) for text in texts)


@pytest.mark.parametrize(
    "before,after,tokens_after,landed",
    [
        # One POST, the server's length and tokens known just before it.
        ((2, 0), "abcd", 0, 2),  # grew by the batch: landed
        ((2, 0), "ab", 0, 0),  # unchanged: not applied
        (None, "abcd", 0, 2),  # an earlier run: content alone, one outcome fits
        (None, "", 0, 0),  # empty: nothing landed
        ((2, 0), "", 0, None),  # the server lost the session: cannot tell
        ((2, 0), "abx", 0, 0),  # another writer, none of ours there
        (None, "cdx", 0, 2),  # another writer after our batch
        ((2, 0), "bcdx", 0, 2),  # the same, our earlier message still in view
        ((3, 0), "cd", 0, 2),  # trimmed, tokens not yet counted: the content still tells
    ],
)
def test_landed_count_distinct_messages(before, after, tokens_after, landed):
    earlier, batch = list(pairs("ab")), list(pairs("cd"))
    observed = sync.landed_count(
        None if before is None else sync.WindowState(*before),
        sync.WindowState(len(after), tokens_after, pairs(after)),
        earlier,
        batch,
        window=6,
    )
    assert observed.landed == landed, observed


def test_landed_count_after_a_compaction_our_batch_started():
    """Five on the server, our two took it past the window of 6: compacted to half + 1."""
    observed = sync.landed_count(
        sync.WindowState(5, 0),
        sync.WindowState(4, 7, pairs("defg")),
        list(pairs("abcde")),
        list(pairs("fg")),
        window=6,
    )
    assert observed == sync.Observed(2, "content and a compaction since")


@pytest.mark.parametrize(
    "before,length,tokens_after,landed",
    [
        ((2, 0), 4, 0, 2),  # the length decides
        ((2, 0), 2, 0, 0),
        ((4, 0), 6, 0, 2),  # a window + 1 list: the compaction has not ended yet
        ((4, 0), 4, 9, 2),  # compacted since: our batch took the list past the window
        ((2, 0), 3, 0, None),  # neither: another writer, or a compaction caught half-way
        ((2, 0), 0, 0, None),  # the server lost the session
        (None, 4, 0, None),  # an earlier run, content alone: every prefix fits
    ],
)
def test_landed_count_repetitive_messages(before, length, tokens_after, landed):
    """A conversation that repeats itself: the content never tells, the rest may."""
    observed = sync.landed_count(
        None if before is None else sync.WindowState(*before),
        sync.WindowState(length, tokens_after, pairs("o" * length)),
        list(pairs("oooo")),
        list(pairs("oo")),
        window=5,
    )
    assert observed.landed == landed, observed


# -- a context changed on its own (issue 14 item 6) --------------------------------------------


def test_a_context_change_alone_is_pending_until_pushed(upstream):
    session = write("ctx-only", 3)
    sync.push_session(session.pk)
    memory.set_context(session, "a summary written here")
    session.refresh_from_db()
    assert session.sync_state == SyncState.PENDING and session.context_pending
    result = sync.push_session(session.pk)
    assert result.resolved == ["rebuilt on the server (context changed)"]
    assert result.state == SyncState.SYNCED and result.pushed == 0
    assert upstream.context("ctx-only") == "a summary written here"
    assert upstream.stored_messages("ctx-only") == local(session)  # the messages, once each
    session.refresh_from_db()
    assert not session.context_pending and session.sync_state == SyncState.SYNCED


def test_a_context_change_is_scheduled_for_a_push(
    upstream, monkeypatch, django_capture_on_commit_callbacks
):
    session = write("ctx-scheduled", 1)
    sync.push_session(session.pk)
    scheduled = []
    monkeypatch.setattr(
        "motorhead_django.tasks.schedule_push", lambda pk, eta=None: scheduled.append(pk)
    )
    with django_capture_on_commit_callbacks(execute=True):
        memory.set_context(session, "new")
    assert scheduled == [session.pk]


def test_a_context_on_a_session_without_messages_waits_for_its_first(upstream):
    session = memory.get_or_create_session("ctx-empty")
    memory.set_context(session, "nothing to carry it yet")
    result = sync.push_session(session.pk)
    assert result.state == SyncState.PENDING and upstream.requests == []
    memory.append_messages(session, [("Human", "hi")])
    assert sync.push_session(session.pk).state == SyncState.SYNCED
    assert upstream.context("ctx-empty") == "nothing to carry it yet"


def test_a_context_changed_again_during_the_push_stays_pending(upstream, monkeypatch):
    session = write("ctx-race", 2)
    sync.push_session(session.pk)
    memory.set_context(session, "first")
    real = sync.send_window

    def change_meanwhile(*args, **kwargs):
        real(*args, **kwargs)
        ChatSession.objects.filter(pk=session.pk).update(context="second", context_pending=True)

    monkeypatch.setattr(sync, "send_window", change_meanwhile)
    result = sync.push_session(session.pk)
    assert result.state == SyncState.PENDING
    session.refresh_from_db()
    assert session.context_pending and session.sync_state == SyncState.PENDING


# -- a server window larger than ours; compaction that does not come (issue 15 item 7) --------


def test_a_server_window_larger_than_window_size_is_reported_at_once(
    upstream_factory, caplog, fresh_probe
):
    upstream = upstream_factory(window_size=20, motorhead={"WINDOW_SIZE": 12})
    upstream.preload("big", [("Human", f"old {n}") for n in range(16)])
    session = write("big", 4)
    started = time.monotonic()
    result = sync.push_session(session.pk)
    assert time.monotonic() - started < 1.0  # no wait for a compaction that never comes
    assert result.state == SyncState.FAILED and result.pushed == 0
    assert "the server returned 16 messages, more than WINDOW_SIZE + 1 = 13" in result.error
    assert (
        "HINT: set MOTORHEAD['WINDOW_SIZE'] to the server's MOTORHEAD_MAX_WINDOW_SIZE"
        in result.error
    )
    session.refresh_from_db()
    assert session.last_error == result.error
    assert any("larger than MOTORHEAD['WINDOW_SIZE']" in r.getMessage() for r in caplog.records)
    assert [r.method for r in upstream.requests_for()] == ["GET"]


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget the server windows probed so far (a later server may reuse a port)."""
    monkeypatch.setattr(sync, "_probed_windows", {})


def test_a_larger_server_window_on_a_fresh_session_is_found_by_a_probe(
    upstream_factory, fresh_probe
):
    """The issue's case: 40 messages, a server window of 20, WINDOW_SIZE 12 (30.7 s before)."""
    upstream = upstream_factory(window_size=20, motorhead={"WINDOW_SIZE": 12})
    session = write("fresh", 40)
    started = time.monotonic()
    result = sync.push_session(session.pk)
    assert time.monotonic() - started < 1.0
    assert result.state == SyncState.FAILED and result.pushed == 13
    assert "14 messages of a probe session, more than WINDOW_SIZE + 1 = 13" in result.error
    assert upstream.sessions() == ["fresh"]  # the probe session is gone
    # Once per process and server: the next session is told at once.
    other = write("fresh-2", 20)
    before = len(upstream.requests)
    assert sync.push_session(other.pk).state == SyncState.FAILED
    assert not any("probe" in r.path for r in upstream.requests[before:])


def test_a_matching_server_window_passes_the_probe_once(upstream_factory, fresh_probe):
    upstream = upstream_factory(window_size=12, compaction_delay=0.2)  # so the push waits
    for name in ("p1", "p2"):
        assert sync.push_session(write(name, 20).pk).state == SyncState.SYNCED
    probes = {r.path for r in upstream.requests_for("DELETE") if "window-probe" in r.path}
    assert len(probes) == 1 and sorted(upstream.sessions()) == ["p1", "p2"]


def test_a_compaction_that_never_comes_times_out_and_is_retried(upstream_factory, fresh_probe):
    upstream = upstream_factory(window_size=4, motorhead={"COMPACTION_TIMEOUT": 0.3})
    upstream.faults.summarizer_fails = True
    session = write("stuck", 8)
    result = sync.push_session(session.pk)
    assert result.pushed == 5 and result.state == SyncState.RETRYING
    assert "without compacting them" in result.error and "MOTORHEAD_MAX_WINDOW_SIZE" in result.error
    assert is_retryable(CompactionTimeout("slow"))
    assert upstream.stored_messages("stuck") == local(session)[:5]


# -- eager mode: a web request never sleeps on the server (issue 15 item 7) -------------------


@pytest.mark.slow
def test_a_push_that_may_not_wait_stops_where_it_would_and_leaves_the_rest_pending(
    upstream_factory,
):
    upstream = upstream_factory(compaction_delay=0.5)
    session = write("eager", 40)
    started = time.monotonic()
    result = sync.push_session(session.pk, wait=False)
    elapsed = time.monotonic() - started
    assert elapsed < 0.4 and result.deferred and result.pushed == 13
    session.refresh_from_db()
    assert session.sync_state == SyncState.PENDING and session.inflight_through is None
    assert session.messages.pending().count() == 27 and session.next_attempt_at is None
    # The next run that may wait finishes it, every message through the summariser.
    assert sync.push_session(session.pk).state == SyncState.SYNCED
    upstream.wait_for_compactions()
    assert upstream.dropped_lines("eager") == []


@pytest.mark.parametrize(
    "options,message",
    [
        (["--drifted-only"], "--drifted-only only goes with --rehydrate"),
        (["--verify", "--drifted-only"], "--drifted-only only goes with --rehydrate"),
        (["--rehydrate", "--drifted-only", "--session", "x"], "cannot be combined"),
        (["--pull", "--include-failed"], "--include-failed only goes with a push, not --pull"),
        (["--session", "x", "--include-failed"], "cannot be combined"),
        (["--namespace", "ns"], "--namespace only goes with --session"),
        (["--verify", "--pull"], "not allowed with argument"),
    ],
)
def test_motorhead_sync_refuses_options_that_mean_nothing_together(upstream, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("motorhead_sync", *options)
    assert upstream.requests == []


def test_motorhead_sync_verify_in_step_exits_zero(upstream, capsys):
    session = write("verified", 2)
    sync.push_session(session.pk)
    call_command("motorhead_sync", "--verify")
    assert "verified: in step" in capsys.readouterr().out


def test_motorhead_sync_pushes_sessions_in_doubt(upstream, capsys):
    session = say_ok("cmd-doubt", 2)
    ChatSession.objects.filter(pk=session.pk).update(
        sync_state=SyncState.IN_DOUBT, inflight_through=2
    )
    call_command("motorhead_sync")
    assert "Pushing 1 session(s)" in capsys.readouterr().out
    assert server_holds_exactly_ours(upstream, session)


def test_a_context_cleared_here_is_cleared_on_the_server(upstream):
    session = memory.get_or_create_session("ctx-cleared")
    memory.append_messages(session, [("Human", "hi")], context="an old summary")
    sync.push_session(session.pk)
    memory.set_context(session, None)
    result = sync.push_session(session.pk)
    assert result.state == SyncState.SYNCED
    assert upstream.context("ctx-cleared") is None and upstream.stored_messages("ctx-cleared") == [
        {"role": "Human", "content": "hi"}
    ]
    session.refresh_from_db()
    assert not session.context_pending
