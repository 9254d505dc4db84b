"""Prometheus metrics (the ``metrics`` extra: ``pip install motorhead-django[metrics]``).

Off unless ``MOTORHEAD['METRICS']`` is true. Two kinds, for two reasons:

* **State** (sessions by sync state, pending messages, sync lag) is computed
  from the database by :class:`DatabaseCollector` at scrape time. The database
  is the one place that knows it, so the figure is right however many web and
  worker processes run, and whichever of them is scraped; a gauge kept in
  memory would only know what its own process had seen.
* **Events** (pushes and pulls by outcome, task latency, messages pushed,
  retries, upstream errors by status, LLM calls and tokens) happen in whichever process does the
  work, mostly Celery workers. They are counters and histograms fed by the
  signals in :mod:`motorhead_django.signals` and Celery's task signals. With
  several processes, set ``PROMETHEUS_MULTIPROC_DIR`` (a directory shared by
  the web and worker processes of a host, emptied at deploy) before they
  start: prometheus_client then writes every process's values there and the
  scrape sums them (its multiprocess mode). Without it each process exposes
  only its own events.

The instruments are registered in no global registry: each scrape builds a
registry of its own, so importing this module changes nothing elsewhere.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.cache import never_cache

from .conf import motorhead_settings

# Tasks whose duration is observed (the sync work; not sweeps or imports).
TIMED_TASKS = frozenset(
    {
        "motorhead_django.push_session",
        "motorhead_django.push_sessions",
        "motorhead_django.pull_session",
        "motorhead_django.resync_session",
        "motorhead_django.verify_session",
        "motorhead_django.delete_on_server",
    }
)
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_started: dict[str, float] = {}
_started_lock = threading.Lock()


def available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def instruments() -> dict[str, Any]:
    """The counters and histograms, created once per process on first use."""
    from prometheus_client import Counter, Histogram

    return {
        "pushes": Counter(
            "motorhead_pushes",
            "Push steps by outcome: ok (messages confirmed), retry (failed, will retry), "
            "failed (gave up).",
            ["outcome"],
            registry=None,
        ),
        "messages_pushed": Counter(
            "motorhead_messages_pushed", "Messages the server confirmed.", registry=None
        ),
        "retries": Counter(
            "motorhead_push_retries", "Failed push steps that scheduled a retry.", registry=None
        ),
        "upstream_errors": Counter(
            "motorhead_upstream_errors",
            "Failed calls to the upstream server by HTTP status (or 'transport').",
            ["status"],
            registry=None,
        ),
        "pulls": Counter(
            "motorhead_pulls",
            "Pull tasks by outcome: ok, busy, skipped, failed.",
            ["outcome"],
            registry=None,
        ),
        "llm_calls": Counter(
            "motorhead_llm_calls",
            "Calls to the OpenAI-compatible API by use (summary: the built-in summariser, "
            "embedding) and outcome: ok, error (a retry may fix it), failed (it will not).",
            ["use", "outcome"],
            registry=None,
        ),
        "llm_tokens": Counter(
            "motorhead_llm_tokens",
            "Tokens the API reported spent (usage.total_tokens), by use.",
            ["use"],
            registry=None,
        ),
        "task_seconds": Histogram(
            "motorhead_task_duration_seconds",
            "Duration of the sync tasks (push, pull, resync, verify, remote delete).",
            ["task", "outcome"],
            buckets=_BUCKETS,
            registry=None,
        ),
    }


def _on() -> bool:
    return motorhead_settings.METRICS and available()


# -- receivers (connected by the AppConfig; each does nothing while metrics are off) ----------


def on_post_push(sender: Any, session: Any, messages: list[Any], **kwargs: Any) -> None:
    if _on():
        metrics = instruments()
        metrics["pushes"].labels("ok").inc()
        metrics["messages_pushed"].inc(len(messages))


def on_push_failed(sender: Any, session: Any, error: Any, will_retry: bool, **kwargs: Any) -> None:
    if not _on():
        return
    metrics = instruments()
    metrics["pushes"].labels("retry" if will_retry else "failed").inc()
    if will_retry:
        metrics["retries"].inc()
    status = getattr(error, "status", None)
    metrics["upstream_errors"].labels(str(status) if status else "transport").inc()


def observe_llm(use: str, outcome: str, tokens: int = 0) -> None:
    """One call to the LLM or embeddings API (called by :mod:`motorhead_django.llm`)."""
    if not _on():
        return
    metrics = instruments()
    metrics["llm_calls"].labels(use, outcome).inc()
    if tokens:
        metrics["llm_tokens"].labels(use).inc(tokens)


def on_task_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if task_id and getattr(task, "name", None) in TIMED_TASKS and _on():
        with _started_lock:
            _started[task_id] = time.monotonic()


def on_task_postrun(
    task_id: str | None = None,
    task: Any = None,
    retval: Any = None,
    state: str | None = None,
    **kwargs: Any,
) -> None:
    with _started_lock:
        started = _started.pop(task_id or "", None)
    if started is None or not _on():
        return
    name = task.name
    metrics = instruments()
    outcome = "ok" if state == "SUCCESS" else "error"
    if name == "motorhead_django.pull_session":
        pull = _pull_outcome(retval) if outcome == "ok" else "failed"
        metrics["pulls"].labels(pull).inc()
    short = name.removeprefix("motorhead_django.")
    metrics["task_seconds"].labels(short, outcome).observe(time.monotonic() - started)


def _pull_outcome(result: Any) -> str:
    if not isinstance(result, dict):
        return "ok"
    if result.get("error"):
        return "failed"
    if result.get("busy"):
        return "busy"
    return "skipped" if result.get("skipped") else "ok"


# -- the scrape -------------------------------------------------------------------------------


class DatabaseCollector:
    """Sessions by state, pending messages and sync lag, read from the database per scrape."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from .models import SyncState
        from .status import snapshot

        status = snapshot()
        sessions = GaugeMetricFamily(
            "motorhead_sessions", "Sessions by sync state.", labels=["state"]
        )
        for state in SyncState.values:
            sessions.add_metric([state], status.counts[state])
        yield sessions
        yield GaugeMetricFamily(
            "motorhead_messages_pending",
            "Messages written here that the server has not confirmed.",
            value=status.pending_messages,
        )
        yield GaugeMetricFamily(
            "motorhead_sync_lag_seconds",
            "Age of the oldest pending message (0 when nothing is pending).",
            value=status.lag.total_seconds(),
        )
        yield GaugeMetricFamily(
            "motorhead_sessions_due",
            "Pending sessions whose next attempt time has come.",
            value=status.due,
        )


def registry() -> Any:
    """A registry for one scrape: the database figures plus every process's events."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    scrape = CollectorRegistry(auto_describe=True)
    scrape.register(DatabaseCollector())
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        MultiProcessCollector(scrape, path=directory)
    else:
        for instrument in instruments().values():
            scrape.register(instrument)
    return scrape


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format; 404 while ``MOTORHEAD['METRICS']`` is off."""
    if not _on():
        raise Http404("metrics are off")
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


metrics_urlpatterns = [path("", metrics_view, name="motorhead-metrics")]
