"""The compatible memory routes under gunicorn: requests per second beside bare Django views,
and the latency of a window read at 10 and at 100,000 messages.

    .venv/bin/python bench/api_throughput.py            # PostgreSQL at DATABASE_URL
    .venv/bin/python bench/api_throughput.py --quick    # short rounds, for a smoke run

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/test; the benchmark
creates and drops its own database (test_motorhead_bench_api) there. It serves
bench/api_urls.py (the package's ``compat_urlpatterns`` at /motorhead/, bare
views at /bare/) with the example project's settings (bench/api_settings.py)
from gunicorn with sync workers on a free loopback port, drives it from a pool
of client threads in this process (urllib3), and prints figures measured in
this one run:

1. Requests per second of ``GET /sessions/{id}/memory`` (a full window of 13
   messages) and of ``POST /sessions/{id}/memory`` (2 messages, spread over 50
   sessions), ours beside the bare views, and the ratio. Twelve pairs of 2 s
   rounds, one of each side back to back, so the load other processes put on
   the machine weighs on both alike; medians, and the median ratio over the
   pairs. Local-only mode (no ``MOTORHEAD['URL']``): a write schedules no push.
2. The latency of ``GET /sessions/{id}/memory`` for a session of 10 and one of
   100,000 messages, one request at a time, alternating: median and p95, and
   the ratio; and the window query's plan.
3. For the reading of 1.: the same GET and POST, ours and bare, in this process
   through Django's test client (no HTTP, no server, no load client): the
   server's own time per request.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

from _setup import ROOT, own_database, setup_django  # noqa: E402

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.api_settings"
setup_django()

import urllib3  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from motorhead_django import memory  # noqa: E402
from motorhead_django.models import ApiKey, ChatMessage, ChatSession  # noqa: E402

POST_SESSIONS = 50
Request = Callable[[urllib3.HTTPConnectionPool, int], urllib3.BaseHTTPResponse]


def seed() -> str:
    """The sessions the load reads and writes; returns the raw API key."""
    user = get_user_model().objects.create_user("bench")
    _, raw = ApiKey.issue(user, "bench")
    for size in (10, 100, 100_000):
        session = memory.get_or_create_session(f"read-{size}", owner=user)
        for start in range(1, size + 1, 10_000):
            ChatMessage.objects.bulk_create(
                ChatMessage(
                    session=session,
                    sequence=n,
                    role="Human" if n % 2 else "AI",
                    content=f"message {n} of a conversation that is {size:,} messages long",
                    sync_state="synced",
                )
                for n in range(start, min(start + 10_000, size + 1))
            )
        ChatSession.objects.filter(pk=session.pk).update(last_sequence=size)
    for side in ("ours", "bare"):
        for n in range(POST_SESSIONS):
            memory.get_or_create_session(f"write-{side}-{n}", owner=user)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return raw


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """gunicorn serving bench/api_settings.py, with sync workers, on a free loopback port."""

    def __init__(self, database_url: str, workers: int) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (read and closed by stop())
        env = {**os.environ, "DATABASE_URL": database_url}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "example_project.wsgi:application",
                "--chdir",
                str(ROOT),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--worker-class",
                "sync",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        pool = urllib3.HTTPConnectionPool("127.0.0.1", self.port, retries=False, timeout=2)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited ({self.process.returncode}):\n{self.output()}")
            try:
                if pool.request("GET", "/motorhead/").status == 200:
                    return
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"gunicorn not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # graceful: workers close their connections
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def connect(port: int) -> urllib3.HTTPConnectionPool:
    return urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False, timeout=10)


def load(port: int, send: Request, count: int, clients: int, limit: float) -> tuple[float, float]:
    """Send ``count`` requests from ``clients`` threads (at most ``limit`` seconds).

    Returns requests per second, and this client's CPU time per request in ms
    (it shares the CPUs with gunicorn and PostgreSQL)."""
    numbers = itertools.count()
    done = [0] * clients
    failures: list[str] = []
    deadline = time.perf_counter() + limit

    def client(slot: int) -> None:
        pool = connect(port)
        while not failures and time.perf_counter() < deadline:
            n = next(numbers)
            if n >= count:
                break
            try:
                response = send(pool, n)
            except urllib3.exceptions.HTTPError as exc:
                failures.append(repr(exc))
                break
            if response.status != 200:
                failures.append(f"{response.status}: {response.data[:200]!r}")
            done[slot] += 1

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if failures:
        raise SystemExit(f"{len(failures)} failed requests, first: {failures[0]}")
    return sum(done) / elapsed, cpu * 1000 / sum(done)


def sessions_path(prefix: str, session_id: str) -> str:
    return f"{prefix}/sessions/{quote(session_id, safe='')}/memory"


def throughput(port: int, key: str, args: argparse.Namespace) -> None:
    headers = {"x-metal-api-key": key}
    post_headers = {**headers, "Content-Type": "application/json"}
    prefixes = {"ours": "/motorhead", "bare": "/bare"}

    def getter(side: str) -> Request:
        path = sessions_path(prefixes[side], "read-100")
        return lambda pool, n: pool.request("GET", path, headers=headers)

    def poster(side: str) -> Request:
        def send(pool: urllib3.HTTPConnectionPool, n: int) -> urllib3.BaseHTTPResponse:
            path = sessions_path(prefixes[side], f"write-{side}-{n % POST_SESSIONS}")
            body = {
                "messages": [
                    {"role": "Human", "content": f"question {n}: what did we say before?"},
                    {"role": "AI", "content": f"answer {n}: what you said, in short."},
                ]
            }
            return pool.request("POST", path, body=json.dumps(body), headers=post_headers)

        return send

    # The comparison is only fair if both sides answer the same bytes.
    pool = connect(port)
    ours, bare = (getter(side)(pool, 0).data for side in ("ours", "bare"))
    assert ours == bare and len(json.loads(ours)["messages"]) == 13, (ours, bare)

    print(
        f"\nRequests per second, {args.clients} client threads, rounds of {args.limit:g} s "
        f"(or {args.requests:,} requests), {args.rounds} of each, medians "
        f"(ratio: ours / bare, median over pairs of rounds)"
    )
    for label, make in (
        ("GET  memory (13 messages)", getter),
        ("POST memory (2 messages)", poster),
    ):
        for side in ("ours", "bare"):  # warm every worker up: imports, connections, caches
            load(port, make(side), args.requests, args.clients, args.limit)
        rates: dict[str, list[float]] = {"ours": [], "bare": []}
        client_cpu = []
        for n in range(args.rounds):
            # Short rounds in pairs, first one side then the other, so that the load
            # other processes put on the machine weighs on both alike.
            for side in ("ours", "bare") if n % 2 else ("bare", "ours"):
                rate, cpu = load(port, make(side), args.requests, args.clients, args.limit)
                rates[side].append(rate)
                client_cpu.append(cpu)
        ratios = [o / b for o, b in zip(rates["ours"], rates["bare"], strict=True)]
        ours_rps, bare_rps = (statistics.median(rates[side]) for side in ("ours", "bare"))
        print(
            f"  {label:<26} ours {ours_rps:5.0f} req/s   bare {bare_rps:5.0f} req/s   "
            f"ratio {statistics.median(ratios):.2f}\n"
            f"  {'':<26} ratios of the rounds {min(ratios):.2f} to {max(ratios):.2f}, "
            f"quartiles {' '.join(f'{q:.2f}' for q in statistics.quantiles(ratios, n=4))}; "
            f"client CPU {statistics.median(client_cpu):.2f} ms a request"
        )


def latency(port: int, key: str, samples: int) -> None:
    headers = {"x-metal-api-key": key}
    pool = connect(port)
    timings: dict[int, list[float]] = {10: [], 100_000: []}
    for n in range(samples + 20):
        for size, found in timings.items():
            started = time.perf_counter()
            response = pool.request(
                "GET", sessions_path("/motorhead", f"read-{size}"), headers=headers
            )
            elapsed = time.perf_counter() - started
            assert response.status == 200 and len(json.loads(response.data)["messages"]) == min(
                size, 13
            )
            if n >= 20:  # the first rounds warm up
                found.append(elapsed * 1000)

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    print(f"\nLatency of GET memory, one request at a time, {samples} each, alternating")
    for size, found in timings.items():
        print(
            f"  {size:>7,} messages   median {statistics.median(found):.2f} ms   "
            f"p95 {p95(found):.2f} ms"
        )
    small, large = timings[10], timings[100_000]
    print(
        f"  ratio 100,000 / 10:  median {statistics.median(large) / statistics.median(small):.2f}"
        f"   p95 {p95(large) / p95(small):.2f}"
    )
    session = ChatSession.objects.get(session_id="read-100000")
    plan = session.messages.order_by("-sequence")[:13].explain()
    print(f"  window query plan (100,000 messages): {plan.splitlines()[1].strip(' ->')}")


def in_process(key: str, samples: int) -> None:
    """The same requests through Django's test client: the server's time, without HTTP."""
    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_METAL_API_KEY=key)
    prefixes = {"ours": "/motorhead", "bare": "/bare"}
    body = json.dumps(
        {"messages": [{"role": "Human", "content": "q"}, {"role": "AI", "content": "a"}]}
    )
    print(f"\nIn process (Django's test client, no HTTP, no gunicorn), median of {samples}")
    for method in ("GET", "POST"):
        timings: dict[str, list[float]] = {"ours": [], "bare": []}
        for n in range(samples + 20):
            for side, found in timings.items():
                started = time.perf_counter()
                if method == "GET":
                    response = client.get(sessions_path(prefixes[side], "read-100"))
                else:
                    path = sessions_path(prefixes[side], f"write-{side}-{n % POST_SESSIONS}")
                    response = client.post(path, body, content_type="application/json")
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.content
                if n >= 20:
                    found.append(elapsed * 1000)
        ours, bare = (statistics.median(timings[side]) for side in ("ours", "bare"))
        print(
            f"  {method:<4} memory   ours {ours:.2f} ms   bare {bare:.2f} ms   "
            f"ratio (bare / ours) {bare / ours:.2f}"
        )


def database_url(name: str) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short rounds, for a smoke run")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    args = parser.parse_args()
    # Rounds are bounded in time and in count, whatever the rate.
    args.limit, args.requests, args.rounds, samples = (
        (1.0, 1000, 4, 100) if args.quick else (2.0, 2000, 12, 500)
    )

    if connection.vendor != "postgresql":
        raise SystemExit("Needs PostgreSQL: set DATABASE_URL=postgres://...")
    with own_database("motorhead_bench_api", serialize=False) as name:
        started = time.perf_counter()
        key = seed()
        print(
            f"motorhead-django API benchmark: gunicorn, {args.workers} sync workers, "
            f"{connection.vendor} ({name}), {os.cpu_count()} CPUs, "
            f"local-only (no sync); seeded in {time.perf_counter() - started:.1f} s; "
            f"load average before the run {os.getloadavg()[0]:.1f}"
        )
        connection.close()  # the server's workers get their own connections
        server = Gunicorn(database_url(name), args.workers)
        try:
            server.wait_ready()
            throughput(server.port, key, args)
            latency(server.port, key, samples)
            in_process(key, samples)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
