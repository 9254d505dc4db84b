"""Long-term memory: message embeddings and exact cosine retrieval (``MOTORHEAD["EMBEDDINGS"]``).

After a write commits, a task embeds the session's messages that have no
embedding yet (``BATCH_SIZE`` texts a call to an OpenAI-compatible
``/embeddings``), oldest first; the one-to-one row makes it idempotent, so a
retried or duplicated task stores nothing twice. A failed call stores nothing
and is retried with back-off; the next write picks up what is left.

Retrieval takes one of two paths. Where PostgreSQL has pgvector (see
:mod:`motorhead_django.vectors`), an HNSW index answers. Elsewhere, the
portable path: the session's vectors (float32, unit length) are read and scored
by exact cosine, so recall is 1.0 and the cost grows with the session (see
docs/memory.md#retrieval for figures). ``dist`` is
``1 - cosine``, RediSearch's COSINE distance that Motorhead reports.
"""

from __future__ import annotations

import array
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, connections, transaction
from django.db.models import Count, Max, QuerySet

from . import llm, vectors
from .conf import motorhead_settings
from .models import ChatMessage, ChatSession, MessageEmbedding
from .summaries import outgoing_text

try:  # numpy is optional: it makes the scan ~50x faster.
    import numpy
except ImportError:  # pragma: no cover - exercised where numpy is absent
    numpy = None  # type: ignore[assignment]


def pack(vector: Sequence[float]) -> bytes:
    """A vector as unit-length little-endian float32 bytes."""
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    values = array.array("f", (x / norm for x in vector))
    if sys.byteorder != "little":  # pragma: no cover
        values.byteswap()
    return values.tobytes()


def unpack(data: bytes) -> array.array[float]:
    values = array.array("f")
    values.frombytes(bytes(data))
    if sys.byteorder != "little":  # pragma: no cover
        values.byteswap()
    return values


def embed_pending(session_pk: int) -> int:
    """Embed every message of the session that has none yet; returns how many were stored."""
    config = motorhead_settings.EMBEDDINGS
    if config is None:
        return 0
    if ChatSession.objects.filter(pk=session_pk, delete_requested_at__isnull=False).exists():
        return 0  # a tombstone: its vectors were erased, none is made again
    stored = 0
    pgvector = vectors.in_use()
    if pgvector:  # vectors stored before pgvector was there, or with STORAGE "portable"
        vectors.backfill(connection, session_pk)
    while True:
        rows = list(
            ChatMessage.objects.filter(session_id=session_pk, embedding__isnull=True)
            .order_by("sequence")
            .values_list("pk", "role", "content")[: config.BATCH_SIZE]
        )
        if not rows:
            return stored
        texts = [outgoing_text(role, content) or " " for _, role, content in rows]
        found, _tokens = llm.embed(config, texts)
        packed = [pack(vector) for vector in found]
        with transaction.atomic():
            MessageEmbedding.objects.bulk_create(
                (
                    MessageEmbedding(
                        message_id=pk, session_id=session_pk, vector=blob, model=config.MODEL
                    )
                    for (pk, _, _), blob in zip(rows, packed, strict=True)
                ),
                ignore_conflicts=True,  # a concurrent task embedded them first
            )
            if pgvector:
                vectors.store(
                    connection,
                    [(pk, unpack(blob)) for (pk, _, _), blob in zip(rows, packed, strict=True)],
                )
        stored += len(rows)


def query_vector(text: str) -> array.array[float]:
    config = motorhead_settings.EMBEDDINGS
    assert config is not None
    vectors, _tokens = llm.embed(config, [text])
    return unpack(pack(vectors[0]))


def nearest(
    embeddings: QuerySet[MessageEmbedding], query: Sequence[float], limit: int
) -> list[tuple[int, float]]:
    """``(message pk, dist)`` of the ``limit`` nearest, nearest first (exact scan)."""
    return top(_rows(embeddings), query, limit)


def top(
    pairs: Iterable[tuple[int, Any]], query: Sequence[float], limit: int
) -> list[tuple[int, float]]:
    if numpy is not None:
        keys: list[int] = []
        blobs: list[bytes] = []
        for key, blob in pairs:
            keys.append(key)
            blobs.append(bytes(blob))
        if not keys:
            return []
        matrix = numpy.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(keys), -1)
        scores = matrix @ numpy.asarray(query, dtype="<f4")
        count = min(limit, len(keys))
        best = numpy.argpartition(-scores, count - 1)[:count]
        ranked = sorted(best.tolist(), key=lambda i: (-float(scores[i]), -keys[i]))
        return [(keys[i], _dist(float(scores[i]))) for i in ranked]
    scored = []
    for key, blob in pairs:
        vector = unpack(blob)
        scored.append((key, sum(a * b for a, b in zip(vector, query, strict=False))))
    scored.sort(key=lambda pair: (-pair[1], -pair[0]))
    return [(key, _dist(score)) for key, score in scored[:limit]]


def _dist(score: float) -> float:
    return round(max(0.0, 1.0 - score), 6)


def search(session: ChatSession, text: str, *, limit: int = 10) -> list[tuple[ChatMessage, float]]:
    """The session's messages nearest to ``text`` by cosine, as ``(message, dist)``."""
    query = query_vector(text)
    if vectors.in_use():
        found = vectors.nearest(connection, [session.pk], None, query, limit)
    elif numpy is None:
        found = nearest(MessageEmbedding.objects.filter(session=session), query, limit)
    else:
        found = _nearest_cached(session.pk, query, limit)
    return _with_messages(found)


# A process's most recently searched sessions' matrices: reading the vectors costs
# ~20x the scan, and a session only grows. Checked on every search with one
# indexed COUNT/MAX; new embeddings are read incrementally, anything else reloads.
CACHE_SESSIONS = 16
_cache: OrderedDict[tuple[str, int], tuple[Any, Any, int, int]] = OrderedDict()
_cache_lock = threading.Lock()


def _nearest_cached(session_pk: int, query: Sequence[float], limit: int) -> list[tuple[int, float]]:
    stored = MessageEmbedding.objects.filter(session_id=session_pk)
    stats = stored.aggregate(count=Count("pk"), last=Max("pk"))
    count, last = stats["count"], stats["last"] or 0
    if not count:
        return []
    key = (stored.db, session_pk)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None and (cached[2], cached[3]) != (count, last):
        keys, matrix, cached_count, cached_last = cached
        fresh = _rows(stored.filter(pk__gt=cached_last))
        if fresh and cached_count + len(fresh) == count:
            new_keys, new_matrix = _matrix(fresh)
            cached = (
                numpy.concatenate([keys, new_keys]),
                numpy.concatenate([matrix, new_matrix]),
                count,
                last,
            )
        else:
            cached = None  # deletions, or embeddings older than the cached ones
    if cached is None:
        rows = _rows(stored)
        cached = (*_matrix(rows), len(rows), max(pk for pk, _ in rows))
    with _cache_lock:
        _cache[key] = cached
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SESSIONS:
            _cache.popitem(last=False)
    keys, matrix = cached[0], cached[1]
    scores = matrix @ numpy.asarray(query, dtype="<f4")
    count = min(limit, len(keys))
    best = numpy.argpartition(-scores, count - 1)[:count]
    ranked = sorted(best.tolist(), key=lambda i: (-float(scores[i]), -int(keys[i])))
    return [(int(keys[i]), _dist(float(scores[i]))) for i in ranked]


def _rows(embeddings: QuerySet[MessageEmbedding]) -> list[tuple[int, Any]]:
    # Raw rows: the ORM's per-row conversions cost more than the scan itself.
    sql, params = embeddings.values_list("message_id", "vector").query.sql_with_params()
    with connections[embeddings.db].cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _matrix(rows: list[tuple[int, Any]]) -> tuple[Any, Any]:
    keys = numpy.array([pk for pk, _ in rows], dtype=numpy.int64)
    data = b"".join(bytes(blob) for _, blob in rows)
    return keys, numpy.frombuffer(data, dtype="<f4").reshape(len(rows), -1).copy()


def search_sessions(
    sessions: QuerySet[ChatSession], text: str, *, limit: int = 10
) -> list[tuple[ChatMessage, float]]:
    """The nearest messages across several sessions (an owner's), nearest first."""
    query = query_vector(text)
    if vectors.in_use():
        sessions_sql = sessions.values("pk").query.sql_with_params()
        return _with_messages(vectors.nearest(connection, None, sessions_sql, query, limit))
    embeddings = MessageEmbedding.objects.filter(session__in=sessions)
    return _with_messages(nearest(embeddings, query, limit))


def retrieve(session: ChatSession, text: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """Motorhead's retrieval shape: ``[{"role", "content", "dist"}]``."""
    return [
        {"role": m.role, "content": m.content, "dist": dist}
        for m, dist in search(session, text, limit=limit)
    ]


def _with_messages(found: list[tuple[int, float]]) -> list[tuple[ChatMessage, float]]:
    messages = ChatMessage.objects.select_related("session").in_bulk([pk for pk, _ in found])
    return [(messages[pk], dist) for pk, dist in found if pk in messages]
