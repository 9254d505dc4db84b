"""Retrieval latency of the portable path (exact cosine over a session's float32 vectors).

    .venv/bin/python bench/retrieval.py          # 10,000 and 100,000 messages, 384 dims
    .venv/bin/python bench/retrieval.py --sizes 1000 --dims 1536 --queries 5

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/test (``sqlite://``
works too); the benchmark creates and drops its own database
(test_motorhead_bench_retrieval). For each size it stores one session of that
many messages with random unit vectors (written directly, no embeddings API:
what is measured is the read and the scan), then times
``--queries`` random queries: median and p95 of a cold search (read every
vector, then scan: ``embeddings.nearest``), of a warm one (the process's cache
of the session's matrix, checked with one COUNT/MAX query), and, for sizes up to
``--python-max``, of the pure-Python scan (no numpy); and checks recall@10
against a brute-force ranking (1.0 expected: the scan is exact).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy
from _setup import own_database, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--python-max", type=int, default=10000)
    args = parser.parse_args()
    setup_django()
    with own_database("motorhead_bench_retrieval"):
        from django.db import connection

        print(f"database: {connection.vendor}, {args.dims} dimensions, {args.queries} queries")
        for size in (int(s) for s in args.sizes.split(",")):
            run(size, args.dims, args.queries, args.python_max)


def run(size: int, dims: int, queries: int, python_max: int) -> None:
    from motorhead_django import embeddings, memory
    from motorhead_django.models import ChatMessage, MessageEmbedding

    draw = numpy.random.default_rng(size)
    session = memory.get_or_create_session(f"bench-{size}")
    started = time.perf_counter()
    for start in range(0, size, 5000):
        count = min(5000, size - start)
        rows = ChatMessage.objects.bulk_create(
            ChatMessage(session=session, sequence=start + n + 1, role="Human", content=f"m{n}")
            for n in range(count)
        )
        vectors = draw.standard_normal((count, dims)).astype("<f4")
        vectors /= numpy.linalg.norm(vectors, axis=1, keepdims=True)
        MessageEmbedding.objects.bulk_create(
            MessageEmbedding(message=row, session=session, vector=vector.tobytes(), model="bench")
            for row, vector in zip(rows, vectors, strict=True)
        )
    print(f"\n{size:,} messages stored in {time.perf_counter() - started:.1f} s")
    stored = MessageEmbedding.objects.filter(session=session)
    keys = numpy.array(list(stored.values_list("message_id", flat=True)))
    matrix = numpy.frombuffer(
        b"".join(bytes(v) for v in stored.values_list("vector", flat=True)), dtype="<f4"
    ).reshape(len(keys), dims)

    def cold(query):
        return embeddings.nearest(stored, query, 10)

    def warm(query):
        return embeddings._nearest_cached(session.pk, query, 10)

    warm(matrix[0].tolist())  # fills the cache
    paths = [("cold, numpy", embeddings.numpy, cold), ("warm, numpy", embeddings.numpy, warm)]
    if size <= python_max:
        paths.append(("pure Python", None, cold))
    for name, module, search in paths:
        embeddings.numpy = module
        timings, recalls = [], []
        for _ in range(queries):
            query = draw.standard_normal(dims).astype("<f4")
            query /= numpy.linalg.norm(query)
            began = time.perf_counter()
            found = search(query.tolist())
            timings.append(time.perf_counter() - began)
            exact = set(keys[numpy.argsort(-(matrix @ query))[:10]].tolist())
            recalls.append(len(exact & {pk for pk, _ in found}) / 10)
        timings.sort()
        p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
        print(
            f"  {name:12} median {statistics.median(timings) * 1000:8.1f} ms   "
            f"p95 {p95 * 1000:8.1f} ms   recall@10 {statistics.mean(recalls):.2f}"
        )
    embeddings.numpy = numpy


if __name__ == "__main__":
    main()
