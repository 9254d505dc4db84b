"""Retrieval latency of both storage paths: pgvector's HNSW index, and the portable exact scan.

    .venv/bin/python bench/retrieval.py --pgserver      # short: 10,000 messages, 384 dims
    .venv/bin/python bench/retrieval.py --pgserver --sizes 10000,100000   # the full run
    .venv/bin/python bench/retrieval.py --sizes 1000 --dims 1536 --queries 5

``--pgserver`` starts a PostgreSQL with pgvector from the ``pgserver`` wheel (the
dev extra) in a temporary directory, so both paths are measured on one
database. Otherwise DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/test
(``sqlite://`` works too), and the pgvector path runs only where that server
has the extension. The benchmark creates and drops its own database
(test_motorhead_bench_retrieval). For each size it stores one session of that
many messages with clustered unit vectors (around 50 centres, as text
embeddings are; written directly, no embeddings API: what is measured is the
read and the search), then times
``--queries`` random queries: median and p95 of a cold search (read every
vector, then scan: ``embeddings.nearest``), of a warm one (the process's cache
of the session's matrix, checked with one COUNT/MAX query), and, for sizes up to
``--python-max``, of the pure-Python scan (no numpy); with pgvector, of the
HNSW search (``vectors.nearest``); and checks recall@10 against a brute-force
ranking (1.0 expected of the exact scan).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from urllib.parse import parse_qs, quote, urlsplit

import numpy
from _setup import own_database, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--python-max", type=int, default=10000)
    parser.add_argument("--pgserver", action="store_true", help="PostgreSQL with pgvector")
    args = parser.parse_args()
    directory = start_pgserver() if args.pgserver else None
    try:
        bench(args)
    finally:
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


def start_pgserver() -> str:
    import pgserver

    directory = tempfile.mkdtemp(prefix="motorhead-bench-pgserver-")
    server = pgserver.get_server(os.path.join(directory, "data"), cleanup_mode="delete")
    socket_dir = parse_qs(urlsplit(server.get_uri()).query)["host"][0]
    os.environ["DATABASE_URL"] = f"postgres://postgres@{quote(socket_dir, safe='')}/postgres"
    return directory


def bench(args: argparse.Namespace) -> None:
    setup_django()
    with own_database("motorhead_bench_retrieval"):
        from django.db import connection

        from motorhead_django import vectors

        print(
            f"database: {connection.vendor}, {args.dims} dimensions, {args.queries} queries, "
            f"pgvector: {'yes' if vectors.in_use() else 'no'}"
        )
        for size in (int(s) for s in args.sizes.split(",")):
            run(size, args.dims, args.queries, args.python_max)


def run(size: int, dims: int, queries: int, python_max: int) -> None:
    from django.db import connection

    from motorhead_django import embeddings, memory, vectors
    from motorhead_django.models import ChatMessage, MessageEmbedding

    draw = numpy.random.default_rng(size)
    centres = draw.standard_normal((50, dims)).astype("<f4")
    pgvector = vectors.in_use()
    session = memory.get_or_create_session(f"bench-{size}")
    started = time.perf_counter()
    for start in range(0, size, 5000):
        count = min(5000, size - start)
        rows = ChatMessage.objects.bulk_create(
            ChatMessage(session=session, sequence=start + n + 1, role="Human", content=f"m{n}")
            for n in range(count)
        )
        points = centres[draw.integers(0, 50, count)]
        points += 0.35 * draw.standard_normal((count, dims)).astype("<f4")
        points /= numpy.linalg.norm(points, axis=1, keepdims=True)
        MessageEmbedding.objects.bulk_create(
            MessageEmbedding(message=row, session=session, vector=point.tobytes(), model="bench")
            for row, point in zip(rows, points, strict=True)
        )
        if pgvector:  # what embed_pending does: the column, and its HNSW index
            vectors.store(connection, [(row.pk, p) for row, p in zip(rows, points, strict=True)])
    what = "stored and indexed" if pgvector else "stored"
    print(f"\n{size:,} messages {what} in {time.perf_counter() - started:.1f} s")
    stored = MessageEmbedding.objects.filter(session=session)
    keys = numpy.array(list(stored.values_list("message_id", flat=True)))
    matrix = numpy.frombuffer(
        b"".join(bytes(v) for v in stored.values_list("vector", flat=True)), dtype="<f4"
    ).reshape(len(keys), dims)

    def cold(query):
        return embeddings.nearest(stored, query, 10)

    def warm(query):
        return embeddings._nearest_cached(session.pk, query, 10)

    def hnsw(query):
        return vectors.nearest(connection, [session.pk], None, query, 10)

    warm(matrix[0].tolist())  # fills the cache
    paths = [("cold, numpy", embeddings.numpy, cold), ("warm, numpy", embeddings.numpy, warm)]
    if pgvector:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {vectors.TABLE}")
        paths.insert(0, ("pgvector HNSW", embeddings.numpy, hnsw))
        plan = vectors.explain(connection, [session.pk], matrix[0].tolist(), 10)
        print(f"  the search's plan uses the HNSW index: {vectors.index_name(dims) in plan}")
    if size <= python_max:
        paths.append(("pure Python", None, cold))
    for name, module, search in paths:
        embeddings.numpy = module
        timings, recalls = [], []
        for _ in range(queries):
            query = centres[draw.integers(0, 50)] + 0.35 * draw.standard_normal(dims)
            query = (query / numpy.linalg.norm(query)).astype("<f4")
            began = time.perf_counter()
            found = search(query.tolist())
            timings.append(time.perf_counter() - began)
            exact = set(keys[numpy.argsort(-(matrix @ query))[:10]].tolist())
            recalls.append(len(exact & {pk for pk, _ in found}) / 10)
        timings.sort()
        p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
        print(
            f"  {name:13} median {statistics.median(timings) * 1000:8.1f} ms   "
            f"p95 {p95 * 1000:8.1f} ms   recall@10 {statistics.mean(recalls):.2f}"
        )
    embeddings.numpy = numpy


if __name__ == "__main__":
    main()
