"""The push through real Celery workers: real broker, real PostgreSQL, the test server over HTTP.

Each test starts worker processes (``celery -A tests.celery_app worker``) on a
queue of its own, writes through the memory core in this process (so pushes
are enqueued on commit, as in a web request), and waits until the sweep has
drained everything. The server must then hold exactly the local history of
every session: in order, nothing lost, nothing twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from celery import Celery
from django.db import connection

from motorhead_django import engine, memory, tasks
from motorhead_django.engine import passes
from motorhead_django.exceptions import SessionDrifted
from motorhead_django.models import ChatMessage, ChatSession, SyncState

from .celery_app import app as default_app
from .conftest import REDIS_URL, require_service
from .workers import RedisServer, Worker

# Workers read what this process commits: real transactions, on PostgreSQL.


def worker_test(test: Callable[..., None]) -> Callable[..., None]:
    """A test with real worker processes: a transactional database, marked ``workers``."""
    return pytest.mark.workers(pytest.mark.django_db(transaction=True)(test))


AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
# Large enough that 20 messages never compact: the server then keeps them all to compare.
WINDOW = 64


class Rig:
    """One Motorhead test server, a task queue of our own, and the workers that serve it."""

    def __init__(self, server, broker_url: str, log_dir, settings) -> None:
        self.server = server
        self.broker_url = broker_url
        self.log_dir = log_dir
        self.queue = f"motorhead-test-{uuid.uuid4().hex[:10]}"
        self.motorhead = {
            "URL": server.url,
            "WINDOW_SIZE": WINDOW,
            "BATCH_SIZE": 4,
            "CONNECT_TIMEOUT": 1.0,
            "READ_TIMEOUT": 2.0,
            "RETRY_BACKOFF": 0.05,
            "RETRY_BACKOFF_MAX": 0.5,
            "MAX_RETRIES": 10_000,
            "SWEEP_INTERVAL": 1.0,
            "TASK_QUEUE": self.queue,
        }
        settings.MOTORHEAD = self.motorhead
        self.workers: list[Worker] = []
        self.producer = Celery("motorhead_tests_producer", include=["motorhead_django.tasks"])
        self.producer.conf.update(
            broker_url=broker_url,
            task_always_eager=False,
            broker_connection_timeout=2,
            broker_transport_options={"visibility_timeout": 10},
        )
        self.producer.set_current()

    def start_worker(self, name: str = "w1", concurrency: int = 3) -> Worker:
        worker = Worker(
            self.log_dir,
            name,
            broker_url=self.broker_url,
            database=connection.settings_dict["NAME"],
            motorhead=self.motorhead,
            queue=self.queue,
            concurrency=concurrency,
        )
        self.workers.append(worker)
        return worker.start()

    def write(self, sessions: int, messages: int, per_write: int = 4) -> list[ChatSession]:
        """Interleaved writes: each round appends ``per_write`` messages to every session."""
        rows = [memory.get_or_create_session(f"s{n:03d}") for n in range(sessions)]
        for start in range(0, messages, per_write):
            for session in rows:
                memory.append_messages(
                    session,
                    [
                        ("Human" if k % 2 == 0 else "AI", f"{session.session_id} m{k}")
                        for k in range(start, min(start + per_write, messages))
                    ],
                )
        return rows

    def sweep(self) -> None:
        tasks.sweep.apply_async(queue=self.queue, retry=False)

    def drain(self, timeout: float = 300.0) -> None:
        """Sweep every second until no session and no message is pending."""
        deadline = time.monotonic() + timeout
        while True:
            pending_sessions = ChatSession.objects.with_work().count()
            pending_messages = ChatMessage.objects.pending().count()
            if pending_sessions == 0 and pending_messages == 0:
                return
            if time.monotonic() > deadline:
                states = Counter(ChatSession.objects.values_list("sync_state", flat=True))
                logs = "\n\n".join(f"{w.name}:\n{w.log_tail(30)}" for w in self.workers)
                pytest.fail(
                    f"not drained after {timeout}s: {pending_sessions} sessions and "
                    f"{pending_messages} messages pending ({states});\n{logs}"
                )
            self.sweep()
            time.sleep(1.0)

    def wait_until(
        self, condition, *, timeout: float = 60.0, interval: float = 0.2, between=None
    ) -> None:
        """Poll ``condition`` (calling ``between`` after each miss); fail with the worker logs."""
        deadline = time.monotonic() + timeout
        while not condition():
            logs = "\n\n".join(f"{w.name}:\n{w.log_tail(30)}" for w in self.workers)
            assert time.monotonic() < deadline, f"still waiting after {timeout}s;\n{logs}"
            if between is not None:
                between()
            time.sleep(interval)

    def assert_mirrored(self, sessions: list[ChatSession]) -> None:
        assert ChatSession.objects.filter(sync_state=SyncState.FAILED).count() == 0
        for session in sessions:
            local = [{"role": m.role, "content": m.content} for m in memory.history(session)]
            remote = self.server.stored_messages(session.session_id)
            assert remote == local, f"{session.session_id}: server differs from the local record"

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        default_app.set_current()
        try:
            with self.producer.connection_for_write() as conn:
                conn.default_channel.queue_delete(self.queue)
        except Exception:  # the broker may be the one a test stopped
            pass
        self.producer.close()


@pytest.fixture
def rig_factory(postgres, motorhead_server_factory, settings, tmp_path) -> Iterator:
    rigs: list[Rig] = []

    def make(broker_url: str, **server_options) -> Rig:
        server = motorhead_server_factory(window_size=WINDOW, **server_options)
        rig = Rig(server, broker_url, tmp_path, settings)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def any_broker(request) -> str:
    if request.param == "redis":
        require_service("Redis", REDIS_URL, 6379)
        return REDIS_URL
    require_service("RabbitMQ", AMQP_URL, 5672)
    return AMQP_URL


@pytest.fixture
def redis_broker(redis_url) -> str:
    return redis_url


@worker_test
def test_a_faulty_server_ends_up_with_exactly_the_local_records(rig_factory, any_broker):
    """200 sessions x 20 messages while 30% of requests fail and 10% fail after applying."""
    rig = rig_factory(any_broker, seed=20261124)
    rig.server.faults.fail_rate = 0.3
    rig.server.faults.apply_then_fail_rate = 0.1
    rig.start_worker(concurrency=4)
    sessions = rig.write(sessions=200, messages=20)
    rig.drain()
    rig.assert_mirrored(sessions)
    faults = [r.fault for r in rig.server.requests if r.fault]
    # The faults really happened, of every kind, on the writes themselves.
    assert {"error", "drop", "apply_then_error", "apply_then_drop"} <= set(faults)
    assert sum(1 for r in rig.server.requests if r.method == "POST" and r.fault) > 100


@worker_test
def test_two_workers_pushing_the_same_sessions_do_not_duplicate(rig_factory, redis_broker):
    rig = rig_factory(redis_broker, seed=7)
    rig.server.faults.apply_then_fail_rate = 0.1
    rig.server.faults.latency = 0.005
    rig.start_worker("w1", concurrency=3)
    rig.start_worker("w2", concurrency=3)
    sessions = rig.write(sessions=40, messages=20, per_write=2)
    # Every session is pushed again at once, on top of the pushes its writes enqueued.
    for session in sessions:
        tasks.schedule_push(session.pk)
        tasks.schedule_push(session.pk)
    rig.drain()
    rig.assert_mirrored(sessions)
    served_by = {w.name for w in rig.workers if "push_session" in w.log_path.read_text()}
    assert served_by == {"w1", "w2"}


@worker_test
def test_a_worker_killed_mid_push_loses_and_duplicates_nothing(rig_factory, redis_broker):
    rig = rig_factory(redis_broker)
    # Each POST is applied, then answered late: a kill lands between the two.
    rig.server.faults.latency = 0.5
    rig.server.faults.methods = {"POST"}
    worker = rig.start_worker("doomed", concurrency=2)
    sessions = rig.write(sessions=10, messages=20)
    deadline = time.monotonic() + 60
    # Wait for a mark set since the previous look (so at most ~0.05 s old): a mark
    # seen first may be nearly 0.5 s old already, and its POST answered before the kill.
    marked = ChatSession.objects.filter(inflight_through__isnull=False)
    previous = None
    while True:
        current = set(marked.values_list("pk", "inflight_through"))
        if previous is not None and current - previous:
            break
        assert time.monotonic() < deadline, worker.log_tail()
        previous = current
        time.sleep(0.05)
    time.sleep(0.2)  # the in-flight POST reaches the server and is applied
    worker.kill()
    in_flight = ChatSession.objects.filter(inflight_through__isnull=False).count()
    assert in_flight >= 1  # the kill did land in the middle of a push
    rig.server.faults.clear()
    rig.start_worker("successor", concurrency=2)
    rig.drain()
    rig.assert_mirrored(sessions)


@worker_test
def test_writes_while_the_broker_is_down_are_pushed_when_it_is_back(rig_factory, caplog, redis_url):
    broker = RedisServer()
    broker.start()
    try:
        rig = rig_factory(broker.url)
        worker = rig.start_worker("patient", concurrency=2)
        broker.stop()
        caplog.set_level(logging.WARNING, logger="motorhead_django.tasks")
        sessions = rig.write(sessions=10, messages=8)
        # The writes succeeded; the enqueue did not, and said so.
        assert ChatMessage.objects.pending().count() == 80
        assert "the sweep will pick it up" in caplog.text
        assert rig.server.requests_for("POST") == []
        broker.start()
        rig.drain()
        rig.assert_mirrored(sessions)
        assert worker.process is not None and worker.process.poll() is None
    finally:
        broker.stop()


@pytest.mark.django_db
def test_a_dead_broker_is_tried_once_per_interval_and_writes_go_on(caplog, settings):
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    producer = Celery("motorhead_tests_dead_broker")
    producer.conf.update(broker_url=dead, task_always_eager=False)
    producer.set_current()
    caplog.set_level(logging.DEBUG, logger="motorhead_django.tasks")
    try:
        tasks.schedule_push(1)
        tasks.schedule_push(2)
    finally:
        default_app.set_current()
        producer.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Could not enqueue the push of session 1; the sweep will pick it up."]
    assert "not enqueuing the push of session 2" in caplog.text


@worker_test
def test_messages_other_clients_wrote_are_pulled_in_order_once(rig_factory, redis_broker):
    """Pushes through a worker pull afterwards: foreign messages land between ours, once each."""
    rig = rig_factory(redis_broker)
    rig.start_worker(concurrency=3)
    sessions = rig.write(sessions=10, messages=4)
    rig.drain()
    for session in sessions:  # another client writes directly, between our writes
        rig.server.preload(session.session_id, [("AI", f"{session.session_id} from elsewhere")])
    for session in sessions:
        memory.append_messages(session, [("Human", f"{session.session_id} later")])
    rig.drain()

    def mirrored() -> bool:
        return all(
            [{"role": m.role, "content": m.content} for m in memory.history(s)]
            == rig.server.stored_messages(s.session_id)
            for s in sessions
        )

    rig.wait_until(  # the foreign messages come in with the scheduled pulls
        mirrored,
        interval=1.0,
        between=lambda: tasks.pull_active.apply_async(queue=rig.queue, retry=False),
    )
    remote = ChatMessage.objects.filter(origin="remote")
    assert remote.count() == 10
    assert all(m.sequence == 5 and m.sync_state == "synced" for m in remote)
    assert ChatSession.objects.filter(sync_state=SyncState.SYNCED).count() == 10


@worker_test
def test_deletes_while_the_server_is_down_complete_when_it_is_back(rig_factory, redis_broker):
    rig = rig_factory(redis_broker)
    rig.start_worker(concurrency=2)
    sessions = rig.write(sessions=5, messages=4)
    rig.drain()
    rig.server.stop()
    for session in sessions:
        memory.delete_session(session)
    # The worker tried, failed to connect, and left the tombstones to retry.
    rig.wait_until(lambda: not ChatSession.objects.filter(last_error="").exists(), timeout=30)
    assert ChatSession.objects.filter(sync_state=SyncState.DELETING).count() == 5
    assert ChatMessage.objects.count() == 20
    rig.server.start()
    rig.wait_until(lambda: not ChatSession.objects.exists(), interval=0.5, between=rig.sweep)
    assert not ChatMessage.objects.exists()
    assert rig.server.sessions() == []
    assert all(rig.server.stored_messages(s.session_id) == [] for s in sessions)


@worker_test
def test_a_wiped_server_is_found_by_the_scheduled_verify_and_rehydrated(rig_factory, redis_broker):
    from django.core.management import call_command

    rig = rig_factory(redis_broker)
    rig.start_worker(concurrency=2)
    sessions = rig.write(sessions=5, messages=8)
    rig.drain()
    rig.server.wipe()
    tasks.verify_active.apply_async(queue=rig.queue, retry=False)
    rig.wait_until(lambda: ChatSession.objects.filter(sync_state=SyncState.DRIFTED).count() == 5)
    assert all("wiped" in s.drift for s in ChatSession.objects.all())
    call_command("motorhead_sync", "--rehydrate", "--drifted-only")
    for session in sessions:
        local = [{"role": m.role, "content": m.content} for m in memory.history(session)]
        assert rig.server.stored_messages(session.session_id) == local  # 8 < WINDOW
    assert ChatSession.objects.filter(sync_state=SyncState.SYNCED).count() == 5


@pytest.mark.django_db
@pytest.mark.parametrize("pull_after_push", [True, False])
def test_the_push_task_pulls_afterwards_unless_told_not_to(
    motorhead_server, settings, no_autopush, pull_after_push
):
    settings.MOTORHEAD = {"URL": motorhead_server.url, "PULL_AFTER_PUSH": pull_after_push}
    session = memory.get_or_create_session("then-pull")
    memory.append_messages(session, [("Human", "ours")])
    motorhead_server.preload("then-pull", [("AI", "theirs")])
    tasks.push_session(session.pk)
    contents = [m.content for m in memory.history(session)]
    assert contents == (["theirs", "ours"] if pull_after_push else ["ours"])


@pytest.mark.django_db
def test_the_sweep_pushes_in_passes(motorhead_server, settings, monkeypatch, no_autopush):
    """Due sessions go out in push_sessions tasks of at most PASS_SIZE (inline here: eager mode)."""
    settings.MOTORHEAD = {"URL": motorhead_server.url, "PULL_AFTER_PUSH": False}
    sessions = [memory.get_or_create_session(f"swept-{n}") for n in range(3)]
    for session in sessions:
        memory.append_messages(session, [("Human", f"hello from {session.session_id}")])
    seen: list[list[int]] = []
    push_sessions = passes.push_sessions

    def spy(keys, **kwargs):
        seen.append(list(keys))
        return push_sessions(keys, **kwargs)

    monkeypatch.setattr(engine, "PASS_SIZE", 2)
    monkeypatch.setattr(passes, "push_sessions", spy)
    assert tasks.sweep() == {"pushes": 3, "deletes": 0}
    assert seen == [[sessions[0].pk, sessions[1].pk], [sessions[2].pk]]
    for session in sessions:
        assert motorhead_server.stored_messages(session.session_id) == [
            {"role": "Human", "content": f"hello from {session.session_id}"}
        ]
    assert ChatSession.objects.filter(sync_state=SyncState.SYNCED).count() == 3


@pytest.mark.django_db
def test_push_task_results_say_what_was_sent_and_what_is_still_pending(
    motorhead_server, settings, no_autopush
):
    settings.MOTORHEAD = {
        "URL": motorhead_server.url,
        "PULL_AFTER_PUSH": False,
        "RETRY_BACKOFF": 0.01,
        "CONNECT_TIMEOUT": 0.5,
        "READ_TIMEOUT": 0.5,
    }
    session = memory.get_or_create_session("results")
    memory.append_messages(session, [("Human", "one"), ("AI", "two")])
    result = tasks.push_session(session.pk)
    assert result["session"] == session.pk
    assert (result["pushed"], result["pending"], result["error"]) == (2, 0, "")
    assert result["state"] == "synced"

    motorhead_server.faults.fail_rate = 1.0  # every request fails now
    memory.append_messages(session, [("Human", "three")])
    passed = tasks.push_sessions([session.pk])
    assert (passed["sessions"], passed["sessions_pushed"], passed["pushed"]) == (1, 0, 0)
    assert passed["pending"] == 1 and passed["errors"] == 1
    (only,) = passed["results"]
    assert only["error"] and only["retry_at"] is not None


@pytest.mark.django_db
def test_a_push_task_in_a_process_without_a_url_fails_loudly(settings, caplog):
    settings.MOTORHEAD = {}
    with caplog.at_level(logging.ERROR, logger="motorhead_django.tasks"):
        with pytest.raises(tasks.SyncNotConfigured, match=r'no MOTORHEAD\["URL"\]'):
            tasks.push_session(41)
        with pytest.raises(tasks.SyncNotConfigured, match="Cannot push sessions 1, 2"):
            tasks.push_sessions([1, 2])
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
    assert "the messages stay pending" in caplog.records[0].getMessage()


@worker_test
def test_a_worker_without_a_url_fails_the_push_it_receives(rig_factory, redis_broker):
    """The web process syncs, the worker was started without MOTORHEAD["URL"]: a visible failure."""
    rig = rig_factory(redis_broker)
    rig.motorhead = {"TASK_QUEUE": rig.queue}  # the worker's settings: no URL
    worker = rig.start_worker("nourl", concurrency=1)
    session = memory.get_or_create_session("no-url-worker")
    memory.append_messages(session, [("Human", "stays pending")])

    def failed() -> bool:
        return "raised unexpected: SyncNotConfigured" in worker.log_path.read_text(errors="replace")

    rig.wait_until(failed)
    log = worker.log_path.read_text(errors="replace")
    assert f"Cannot push session {session.pk}: this process has no MOTORHEAD" in log
    assert "succeeded" not in log
    assert ChatMessage.objects.get(session=session).sync_state == "pending"
    assert rig.server.requests_for("POST") == []


def eager_write(server, session_id: str, count: int) -> tuple[ChatSession, float]:
    """Write like a web request in eager mode: the push runs inline, on commit."""
    session = memory.get_or_create_session(session_id)
    started = time.monotonic()
    for n in range(0, count, 2):
        memory.append_messages(session, [("Human", f"q{n}"), ("AI", f"a{n}")])
    return session, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_in_eager_mode_a_write_never_waits_for_the_servers_compaction(
    motorhead_server_factory, settings, monkeypatch, postgres
):
    """Issue 15 item 7: the push a write triggers stops rather than sleep; a thread finishes it.

    PostgreSQL: the request's writes and the hand-off thread's push run at once, which
    the shared in-memory SQLite test database refuses ("database table is locked")."""
    server = motorhead_server_factory(window_size=12, compaction_delay=0.3)
    settings.MOTORHEAD = {"URL": server.url, "WINDOW_SIZE": 12, "PULL_AFTER_PUSH": False}
    assert tasks.runs_inline()
    threads = []
    hand_off = tasks.hand_off
    monkeypatch.setattr(tasks, "hand_off", lambda keys: threads.append(hand_off(keys)))
    session, elapsed = eager_write(server, "web", 40)
    # 20 writes; a waiting push would sleep at least 0.3 s per compaction.
    assert elapsed < 1.0, elapsed
    assert threads, "a deferred push was handed off"
    for thread in threads:
        thread.join(30)
    deadline = time.monotonic() + 30
    while session.messages.pending().exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # a hand-off that found another holding the lock leaves it to that one
    server.wait_for_compactions()
    session.refresh_from_db()
    assert session.sync_state == SyncState.SYNCED and not session.messages.pending().exists()
    # Paced as ever: every message went through the summariser, none was dropped.
    assert server.dropped_lines("web") == []


@pytest.mark.django_db
def test_the_push_task_on_a_worker_may_wait(motorhead_server, settings, monkeypatch, no_autopush):
    settings.MOTORHEAD = {"URL": motorhead_server.url, "PULL_AFTER_PUSH": False}
    monkeypatch.setattr(tasks, "runs_inline", lambda: False)
    seen = []
    push = passes.push_sessions
    monkeypatch.setattr(
        passes, "push_sessions", lambda keys, **kw: seen.append(kw) or push(keys, **kw)
    )
    session = memory.get_or_create_session("worker")
    memory.append_messages(session, [("Human", "hi")])
    assert tasks.push_session(session.pk)["state"] == SyncState.SYNCED
    assert seen == [{"client": None, "wait": True}]


@pytest.mark.django_db
def test_the_periodic_verify_names_each_drifted_session(upstream):
    sessions = {}
    for name in ("left", "right", "kept"):
        sessions[name] = memory.get_or_create_session(name)
        memory.append_messages(sessions[name], [("Human", f"{name} here")])
        passes.push_session(sessions[name].pk)
    upstream.store.delete("left", None)
    upstream.store.delete("right", None)
    with pytest.raises(SessionDrifted) as caught:
        tasks.verify_active()
    assert sorted(caught.value.drifted) == ["left", "right"]
    text = str(caught.value)
    assert text.startswith("2 session(s) drifted: ") and "right: the server has no messages" in text
    with pytest.raises(SessionDrifted, match="1 session\\(s\\) drifted: left"):
        tasks.verify_session(sessions["left"].pk)
    assert tasks.verify_session(sessions["kept"].pk) == ""


@pytest.mark.slow
@pytest.mark.llm_hand_off
@pytest.mark.django_db(transaction=True)
def test_in_eager_mode_a_write_never_waits_for_the_llm(
    motorhead_server_factory, settings, monkeypatch, postgres
):
    """Issue 17: the built-in summariser's and the embeddings' calls leave the request.

    PostgreSQL, as above: the request's writes and the threads' run at once."""
    from motorhead_django.models import MessageEmbedding

    llm = motorhead_server_factory(seed=9)
    # Every call to the model takes five seconds: far longer than five writes take on a
    # loaded machine, so a write that waited for the model would find its call done.
    llm.llm_faults.latency = 5.0
    endpoint = {"BASE_URL": llm.openai_url, "MODEL": "m"}
    settings.MOTORHEAD = {"WINDOW_SIZE": 2, "SUMMARIZER": endpoint, "EMBEDDINGS": endpoint}
    assert tasks.runs_inline()
    threads = []
    hand_off = tasks.hand_off_llm
    monkeypatch.setattr(tasks, "hand_off_llm", lambda task, pk: threads.append(hand_off(task, pk)))
    session = memory.get_or_create_session("slow-llm")
    for n in range(0, 10, 2):
        memory.append_messages(session, [("Human", f"q{n}"), ("AI", f"a{n}")])
    started = [thread for thread in threads if thread is not None]
    # One thread per task and session: the writes during a call ask it to go again.
    assert sorted(thread.name for thread in started) == ["motorhead-llm", "motorhead-llm"]
    # Every write has returned while both first calls to the model are still unanswered.
    assert all(thread.is_alive() for thread in started)
    session.refresh_from_db()
    assert session.summarized_through == 0 and session.messages.count() == 10
    for thread in started:
        thread.join(60)
        assert not thread.is_alive()
    session.refresh_from_db()
    assert session.summarized_through == 10 - 3  # all but the window + 1
    assert session.context and session.tokens > 0
    assert MessageEmbedding.objects.filter(session=session).count() == 10
