"""Long-term memory: message embeddings and exact cosine retrieval (``MOTORHEAD["EMBEDDINGS"]``).

After a write commits, a task embeds the session's messages that have no
embedding yet (``BATCH_SIZE`` texts a call to an OpenAI-compatible
``/embeddings``), oldest first; the one-to-one row makes it idempotent, so a
retried or duplicated task stores nothing twice. A failed call stores nothing
and is retried with back-off; the next write picks up what is left.

Retrieval is the portable path: the session's vectors (float32, unit length)
are read and scored by exact cosine, so recall is 1.0 and the cost grows with
the session (see docs/memory.md#retrieval for figures). ``dist`` is
``1 - cosine``, RediSearch's COSINE distance that Motorhead reports.
"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import QuerySet

from . import llm
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
    stored = 0
    while True:
        rows = list(
            ChatMessage.objects.filter(session_id=session_pk, embedding__isnull=True)
            .order_by("sequence")
            .values_list("pk", "role", "content")[: config.BATCH_SIZE]
        )
        if not rows:
            return stored
        texts = [outgoing_text(role, content) or " " for _, role, content in rows]
        vectors, _tokens = llm.embed(config, texts)
        MessageEmbedding.objects.bulk_create(
            (
                MessageEmbedding(
                    message_id=pk, session_id=session_pk, vector=pack(vector), model=config.MODEL
                )
                for (pk, _, _), vector in zip(rows, vectors, strict=True)
            ),
            ignore_conflicts=True,  # a concurrent task embedded them first
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
    pairs = embeddings.values_list("message_id", "vector").iterator(chunk_size=2000)
    return top(pairs, query, limit)


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
    found = nearest(MessageEmbedding.objects.filter(session=session), query_vector(text), limit)
    return _with_messages(found)


def search_sessions(
    sessions: QuerySet[ChatSession], text: str, *, limit: int = 10
) -> list[tuple[ChatMessage, float]]:
    """The nearest messages across several sessions (an owner's), nearest first."""
    embeddings = MessageEmbedding.objects.filter(session__in=sessions)
    return _with_messages(nearest(embeddings, query_vector(text), limit))


def retrieve(session: ChatSession, text: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """Motorhead's retrieval shape: ``[{"role", "content", "dist"}]``."""
    return [
        {"role": m.role, "content": m.content, "dist": dist}
        for m, dist in search(session, text, limit=limit)
    ]


def _with_messages(found: list[tuple[int, float]]) -> list[tuple[ChatMessage, float]]:
    messages = ChatMessage.objects.select_related("session").in_bulk([pk for pk, _ in found])
    return [(messages[pk], dist) for pk, dist in found if pk in messages]
