"""Prometheus metrics: the scrape, in one process and across real worker processes."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from motorhead_django import engine, memory
from motorhead_django.checks import check_metrics
from motorhead_django.models import ChatSession

from .test_tasks import Rig, rig_factory, worker_test  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one GET /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_off_by_default(client):
    assert client.get("/metrics").status_code == 404


def test_a_missing_prometheus_client_is_a_check_error(settings, monkeypatch):
    settings.MOTORHEAD = {"METRICS": True}
    assert check_metrics() == []
    monkeypatch.setattr("motorhead_django.metrics.available", lambda: False)
    assert [e.id for e in check_metrics()] == ["motorhead_django.E023"]


def test_state_gauges_come_from_the_database(client, settings, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings.MOTORHEAD = {"METRICS": True}
    for n in range(3):
        memory.append_messages(memory.get_or_create_session(f"g{n}"), [("Human", "hi")])
    samples = scrape(client)
    assert value(samples, "motorhead_sessions", state="local") == 3
    assert value(samples, "motorhead_sessions", state="failed") == 0
    # Local-only: nothing waits for a server.
    assert value(samples, "motorhead_messages_pending") == 0
    assert value(samples, "motorhead_sync_lag_seconds") == 0


def test_push_counters_move_in_one_process(client, upstream_factory, settings, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = upstream_factory(motorhead={"METRICS": True, "MAX_RETRIES": 5})
    session = memory.get_or_create_session("one")
    memory.append_messages(session, [("Human", f"m{k}") for k in range(3)])
    before = scrape(client)
    assert value(before, "motorhead_messages_pending") == 3
    assert value(before, "motorhead_sync_lag_seconds") > 0
    server.faults.fail_next(1, methods={"POST"})
    engine.push(session.pk)  # fails, schedules a retry
    ChatSession.objects.filter(pk=session.pk).update(next_attempt_at=None)
    engine.push(session.pk)
    after = scrape(client)
    assert (
        value(after, "motorhead_messages_pushed_total")
        - value(before, "motorhead_messages_pushed_total")
        == 3
    )
    assert (
        value(after, "motorhead_pushes_total", outcome="retry")
        - value(before, "motorhead_pushes_total", outcome="retry")
        == 1
    )
    assert value(after, "motorhead_push_retries_total") > value(
        before, "motorhead_push_retries_total"
    )
    errors = {k[1]: v for k, v in after.items() if k[0] == "motorhead_upstream_errors_total"}
    assert sum(errors.values()) >= 1
    assert value(after, "motorhead_messages_pending") == 0
    assert value(after, "motorhead_sessions", state="synced") == 1


@worker_test
def test_counters_move_while_real_workers_push(
    client,
    rig_factory,  # noqa: F811
    redis_url,
    settings,
    tmp_path,
    monkeypatch,  # noqa: F811
):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    # Inherited by the worker processes: each writes its values there, the scrape sums them.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    rig: Rig = rig_factory(redis_url)
    rig.server.faults.latency = 0.02
    rig.motorhead["METRICS"] = True
    settings.MOTORHEAD = rig.motorhead
    rig.start_worker("metrics", concurrency=2)
    before = scrape(client)
    assert value(before, "motorhead_messages_pushed_total") == 0
    sessions = rig.write(sessions=20, messages=8)
    seen_during = []

    def pushed_some() -> bool:
        samples = scrape(client)
        pushed = value(samples, "motorhead_messages_pushed_total")
        seen_during.append((pushed, value(samples, "motorhead_messages_pending")))
        return pushed > 0

    rig.wait_until(pushed_some, timeout=60, between=rig.sweep)
    rig.drain()
    rig.assert_mirrored(sessions)
    after = scrape(client)
    assert value(after, "motorhead_messages_pushed_total") == 160
    assert value(after, "motorhead_pushes_total", outcome="ok") >= 20
    assert value(after, "motorhead_sessions", state="synced") == 20
    assert value(after, "motorhead_messages_pending") == 0
    assert value(after, "motorhead_sync_lag_seconds") == 0
    durations = [
        v
        for (name, labels), v in after.items()
        if name == "motorhead_task_duration_seconds_count" and ("outcome", "ok") in labels
    ]
    assert sum(durations) >= 1
    # Several worker processes wrote their own files; the scrape summed them.
    assert len(list(directory.glob("*.db"))) >= 1
    # The first scrape that saw pushes saw them part-way, with messages still pending.
    pushed, pending = seen_during[-1]
    assert 0 < pushed < 160 and pending > 0, seen_during


def test_llm_calls_and_tokens_move_with_the_summariser_and_embeddings(
    client, motorhead_server_factory, settings, monkeypatch
):
    """Issue 20: the built-in summariser's calls by outcome, and the tokens the API reported."""
    from motorhead_django import embeddings, summaries

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    llm = motorhead_server_factory(seed=5)
    endpoint = {"BASE_URL": llm.openai_url, "MODEL": "m"}
    settings.MOTORHEAD = {
        "METRICS": True,
        "WINDOW_SIZE": 2,
        "SUMMARIZER": endpoint,
        "EMBEDDINGS": endpoint,
    }
    session = memory.get_or_create_session("summarised")
    memory.append_messages(session, [("Human", f"line {n}") for n in range(8)])
    before = scrape(client)
    llm.llm_faults.fail_next(1)
    with pytest.raises(Exception, match="500"):
        summaries.summarize_pending(session.pk)
    summaries.summarize_pending(session.pk)
    embeddings.embed_pending(session.pk)
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("motorhead_llm_calls_total", use="summary", outcome="error") == 1
    assert moved("motorhead_llm_calls_total", use="summary", outcome="ok") >= 1
    assert moved("motorhead_llm_tokens_total", use="summary") == llm.openai.total_tokens("chat")
    assert moved("motorhead_llm_calls_total", use="embedding", outcome="ok") >= 1
    assert moved("motorhead_llm_tokens_total", use="embedding") > 0
    session.refresh_from_db()
    assert session.tokens == moved("motorhead_llm_tokens_total", use="summary") > 0
