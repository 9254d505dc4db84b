"""Sessions by sync state over time: beat's sampling task, its pruning, and the period read."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from celery import Celery
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from motorhead_django import history
from motorhead_django.models import ChatSession, SyncState, SyncStateSample

from .celery_app import app as default_app
from .workers import Worker

pytestmark = pytest.mark.django_db


def make_sessions(**states: int) -> None:
    ChatSession.objects.bulk_create(
        ChatSession(session_id=f"{state}-{n}", remote_id=f"{state}-{n}", sync_state=state)
        for state, count in states.items()
        for n in range(count)
    )


def test_the_task_counts_every_state_in_one_group_by_and_stores_one_row():
    make_sessions(synced=3, failed=2, pending=1)
    with CaptureQueriesContext(connection) as queries:
        pk = history.sample_states.delay().get()
    sample = SyncStateSample.objects.get()
    assert sample.pk == pk
    assert sample.counts == {
        **dict.fromkeys(SyncState.values, 0),
        "synced": 3,
        "failed": 2,
        "pending": 1,
    }
    reads = [
        q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")
    ]
    assert len(reads) == 1 and "GROUP BY" in reads[0].upper()
    # The count, the insert and the prune: nothing per session or per state.
    assert len(queries.captured_queries) == 3


def test_no_sessions_is_a_sample_of_zeros_not_a_missing_one():
    sample = history.record_sample()
    assert set(sample.counts) == set(SyncState.values) and not any(sample.counts.values())


def test_samples_past_their_days_are_pruned_and_younger_ones_kept(settings):
    settings.MOTORHEAD = {"STATE_SAMPLE_DAYS": 2}
    now = timezone.now()
    old = SyncStateSample.objects.create(taken_at=now - timedelta(days=2, seconds=1))
    kept = SyncStateSample.objects.create(taken_at=now - timedelta(days=2) + timedelta(seconds=1))
    new = history.record_sample(now)
    assert set(SyncStateSample.objects.values_list("pk", flat=True)) == {kept.pk, new.pk}
    assert not SyncStateSample.objects.filter(pk=old.pk).exists()


def test_a_period_is_read_in_one_query_and_thinned_to_the_last_sample_of_each_slice():
    now = timezone.now()
    SyncStateSample.objects.bulk_create(
        SyncStateSample(taken_at=now - timedelta(minutes=minutes), counts={"synced": minutes})
        for minutes in range(0, 2 * 24 * 60, 5)  # two days, one every 5 minutes
    )
    with CaptureQueriesContext(connection) as queries:
        points = history.samples(now - timedelta(days=1), now, points=24)
    assert len(queries.captured_queries) == 1
    assert len(points) == 24
    assert [p.at for p in points] == sorted(p.at for p in points)
    # The newest sample of each hour-long slice (the samples' counts are their age in minutes);
    # the one taken at the period's very end belongs to the last slice.
    ages = [point.counts["synced"] for point in points]
    assert ages == [1385 - 60 * k for k in range(23)] + [0]


def test_the_period_read_is_a_range_scan_of_the_taken_at_index(postgres):
    now = timezone.now()
    SyncStateSample.objects.bulk_create(
        SyncStateSample(taken_at=now - timedelta(minutes=m), counts={}) for m in range(2000)
    )
    with CaptureQueriesContext(connection) as queries:
        history.samples(now - timedelta(hours=1), now)
    (read,) = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE motorhead_django_syncstatesample")
        cursor.execute(f"EXPLAIN {read['sql']}")  # the SQL as sent, parameters inlined
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "motorhead_state_sample_taken" in plan, plan


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (300, "5 minutes"),
        (60, "1 minute"),
        (90, "90 seconds"),
        (7200, "2 hours"),
        (0.2, "1 second"),
    ],
)
def test_the_interval_in_words(seconds, words):
    assert history.every(seconds) == words


def test_an_empty_history_says_when_beat_records_one(settings):
    settings.MOTORHEAD = {"STATE_SAMPLE_INTERVAL": 120}
    assert history.overview(None).empty == (
        "No samples yet; the beat task records one every 2 minutes."
    )
    SyncStateSample.objects.create(taken_at=timezone.now() - timedelta(days=3))
    stale = history.overview("1d")
    assert stale.chart is None and "is celery beat running?" in stale.empty
    assert "3\xa0days" in stale.empty


def test_an_unknown_period_is_the_default_one():
    assert history.overview("<script>").period == history.DEFAULT_PERIOD
    assert history.overview("7d").period == "7d"


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_knows_the_beat_task_and_samples_the_shared_database(
    postgres, redis_url, tmp_path
):
    """The worker imports only tasks.py itself: the app's ready() must register the task."""
    make_sessions(synced=2, retrying=1)
    queue = f"motorhead-test-{uuid.uuid4().hex[:10]}"
    worker = Worker(
        tmp_path,
        "sampler",
        broker_url=redis_url,
        database=connection.settings_dict["NAME"],
        motorhead={"STATE_SAMPLE_DAYS": 1},
        queue=queue,
        concurrency=1,
    )
    producer = Celery("motorhead_tests_producer")
    producer.conf.update(broker_url=redis_url, task_always_eager=False)
    old = SyncStateSample.objects.create(taken_at=timezone.now() - timedelta(days=2))
    try:
        worker.start()
        producer.send_task("motorhead_django.sample_states", queue=queue)
        deadline = time.monotonic() + 60
        while not SyncStateSample.objects.exclude(pk=old.pk).exists():
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
    finally:
        worker.stop()
        default_app.set_current()
        with producer.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
        producer.close()
    (sample,) = SyncStateSample.objects.all()
    assert (sample.counts["synced"], sample.counts["retrying"], sample.counts["failed"]) == (
        2,
        1,
        0,
    )
