"""Push throughput of the sync engine beside a plain requests loop, and the cost of an idle sweep.

    .venv/bin/python bench/sync_throughput.py            # PostgreSQL at DATABASE_URL
    .venv/bin/python bench/sync_throughput.py --quick    # smaller numbers, for a smoke run

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/test; the benchmark
creates and drops its own database (test_motorhead_bench) there. It starts the
package's Motorhead test server as a separate process on loopback and prints
figures measured in this one run:

1. A backlog (default 10,000 messages across 500 sessions, written through the
   memory core) pushed by the engine, once in one thread and once with 4
   worker threads (as 4 Celery worker processes would), and the very same
   batches (recorded from the engine's ``pre_push`` signal) POSTed by a plain
   ``requests`` loop: messages per second and ratios. Twice: with a window
   wide enough that no pacing is needed, and with Motorhead's default window
   of 12, where the engine also reads the window to wait for compactions;
   then with the default window and 2 ms of server latency per answer, closer
   to a real Motorhead (Redis round trips, a network hop) than a loopback
   thread is. Each figure is the best of 3 rounds (1 with --quick), the
   three sides taking turns within a round, so a busy spell on a shared
   machine weighs on all of them.
2. An idle sweep (``engine.due_pushes``) over 100,000 synced sessions: its
   time and its query count, and whether it used the partial index.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from _setup import own_database, setup_django  # noqa: E402

setup_django()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from motorhead_django import engine, memory, signals  # noqa: E402
from motorhead_django.models import ChatMessage, ChatSession, SyncState  # noqa: E402

BATCH_SIZE = 6
Batches = list[tuple[str, list[dict[str, str]]]]


class ServerProcess:
    """``python -m motorhead_django.testing`` on a free port."""

    def __init__(self, window: int, latency: float) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "motorhead_django.testing",
                "--port",
                "0",
                "--window-size",
                str(window),
                "--latency",
                str(latency),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().split()[-1]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def write_backlog(sessions: int, per_session: int) -> list[int]:
    ChatSession.objects.all().delete()
    keys = []
    for n in range(sessions):
        session = memory.get_or_create_session(f"bench-{n:05d}")
        messages = [
            ("Human" if k % 2 else "AI", f"session {n} message {k}") for k in range(per_session)
        ]
        memory.append_messages(session, messages)
        keys.append(session.pk)
    return keys


def engine_run(window: int, latency: float, keys: list[int], threads: int) -> tuple[float, Batches]:
    """Push every pending session; returns the seconds taken and the batches sent, in order."""
    server = ServerProcess(window, latency)
    settings.MOTORHEAD = {"URL": server.url, "WINDOW_SIZE": window, "BATCH_SIZE": BATCH_SIZE}
    batches: Batches = []

    def record(sender, session, messages, **kwargs):
        batches.append(
            (session.session_id, [{"role": m.role, "content": m.content} for m in messages])
        )

    def push(keys: list[int]) -> None:
        try:
            for result in engine.drain(keys):
                if result.error:
                    raise SystemExit(f"push failed: {result.error}")
        finally:
            connections.close_all()

    signals.pre_push.connect(record)
    try:
        started = time.perf_counter()
        if threads == 1:
            push(keys)
        else:
            # Each worker takes passes of its own, as the sweep's push_sessions tasks do.
            passes = [keys[n : n + engine.PASS_SIZE] for n in range(0, len(keys), engine.PASS_SIZE)]
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(push, passes))
        elapsed = time.perf_counter() - started
    finally:
        signals.pre_push.disconnect(record)
        server.stop()
    return elapsed, batches


def plain_run(window: int, latency: float, batches: Batches) -> float:
    server = ServerProcess(window, latency)
    http = requests.Session()
    try:
        started = time.perf_counter()
        for session_id, messages in batches:
            url = f"{server.url}/sessions/{quote(session_id, safe='')}/memory"
            http.post(url, json={"messages": messages}, timeout=10)
        return time.perf_counter() - started
    finally:
        server.stop()


def throughput(
    label: str, window: int, sessions: int, per_session: int, rounds: int, latency: float = 0
) -> None:
    """Each side's best of ``rounds``; the sides take turns, so a busy spell weighs on all."""
    total = sessions * per_session
    settings.MOTORHEAD = {"URL": "http://127.0.0.1:9", "WINDOW_SIZE": window}
    keys = write_backlog(sessions, per_session)
    best = {"plain": float("inf"), 1: float("inf"), 4: float("inf")}
    for _ in range(rounds):
        for threads in (1, 4):
            ChatMessage.objects.update(sync_state="pending")
            ChatSession.objects.update(sync_state=SyncState.PENDING)
            seconds, batches = engine_run(window, latency, keys, threads=threads)
            assert sum(len(m) for _, m in batches) == total
            assert not ChatMessage.objects.pending().exists()
            best[threads] = min(best[threads], seconds)
            if threads == 1:
                in_order = batches  # one thread: the order a plain loop would send them in
        best["plain"] = min(best["plain"], plain_run(window, latency, in_order))
    plain = best["plain"]
    print(
        f"\n{label}: WINDOW_SIZE={window}, server latency {latency * 1000:g} ms, "
        f"{sessions} sessions x {per_session} messages, "
        f"{len(in_order)} POSTs of at most {BATCH_SIZE}, best of {rounds} rounds"
    )
    print(f"  plain requests loop      {total / plain:8.0f} msg/s  ({plain:6.2f} s)")
    for name, seconds in (("engine, 1 thread", best[1]), ("engine, 4 workers", best[4])):
        print(
            f"  {name:<24} {total / seconds:8.0f} msg/s  ({seconds:6.2f} s)  "
            f"ratio to plain: {plain / seconds:.2f}"
        )


def idle_sweep(count: int) -> None:
    ChatSession.objects.all().delete()
    for start in range(0, count, 10_000):
        ChatSession.objects.bulk_create(
            ChatSession(session_id=f"idle-{n}", remote_id=f"idle-{n}", sync_state=SyncState.SYNCED)
            for n in range(start, min(start + 10_000, count))
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE motorhead_django_chatsession")
    engine.due_pushes(1000)  # warm the cache
    timings = []
    for _ in range(5):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            due = engine.due_pushes(1000)
            timings.append(time.perf_counter() - started)
    assert due == []
    uses_index = "motorhead_session_due" in ChatSession.objects.due().explain()
    print(
        f"\nIdle sweep over {count:,} synced sessions: {min(timings) * 1000:.2f} ms (best of 5), "
        f"{len(queries)} query, partial index used: {uses_index}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 messages, 10,000 idle sessions")
    args = parser.parse_args()
    sessions, per_session, idle = (50, 20, 10_000) if args.quick else (500, 20, 100_000)
    rounds = 1 if args.quick else 3

    with own_database("motorhead_bench"):
        print(
            f"motorhead-django sync benchmark, {connection.vendor} "
            f"({connection.settings_dict['NAME']}), {os.cpu_count()} CPUs"
        )
        throughput("No pacing needed", 100_000, sessions, per_session, rounds)
        throughput("Motorhead's default window", 12, sessions, per_session, rounds)
        throughput("A server across a network", 12, sessions, per_session, rounds, latency=0.002)
        idle_sweep(idle)


if __name__ == "__main__":
    main()
