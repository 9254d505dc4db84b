"""The pgvector storage of embeddings: an HNSW index where PostgreSQL has the ``vector`` extension.

The portable float32 blob (``MessageEmbedding.vector``) stays the record on
every database. Where the extension is installed, the initial migration adds a
``vector`` column beside it on the same row (so a deleted message or session
takes both, and an erasure counts one row), and this module fills it and
searches it with ``<=>`` (cosine distance). Models differ in dimensions, so the
column has none of its own; each dimension count gets a partial HNSW index on
``embedding::vector(N)`` (pgvector's documented way to index mixed
dimensions), made by the migration for the vectors already stored and here
when a new count first appears. Which path a search takes is
``EMBEDDINGS["STORAGE"]``: ``"auto"`` (pgvector when the column is there and
the ``pgvector`` package is installed), ``"pgvector"`` or ``"portable"``.

HNSW is approximate and, before pgvector 0.8, filters after the index scan:
a session's search reads ``EF_SEARCH`` candidates from the whole table and
keeps the session's. PostgreSQL's planner takes the session's rows by their
index instead when they are few, which is exact. See docs/memory.md#retrieval.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .conf import motorhead_settings

logger = logging.getLogger(__name__)

TABLE = "motorhead_django_messageembedding"
COLUMN = "embedding"
# pgvector's HNSW indexes a vector of at most 2,000 dimensions; larger ones are scanned.
MAX_INDEXED_DIMENSIONS = 2000
BACKFILL_BATCH = 500


def package_available() -> bool:
    try:
        import pgvector  # noqa: F401
    except ImportError:
        return False
    return True


def extension_available(connection: BaseDatabaseWrapper) -> bool:
    """Whether the server can install (or has) the ``vector`` extension."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        return cursor.fetchone() is not None


def has_column(connection: BaseDatabaseWrapper) -> bool:
    """Whether the initial migration added the ``vector`` column (PostgreSQL with the extension)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = %s "
            "AND column_name = %s AND udt_name = 'vector' AND table_schema = current_schema()",
            [TABLE, COLUMN],
        )
        return cursor.fetchone() is not None


def in_use(using: str = "default") -> bool:
    """Whether searches of the database ``using`` go through pgvector (``STORAGE``)."""
    config = motorhead_settings.EMBEDDINGS
    storage = config.STORAGE if config is not None else "auto"
    if storage == "portable":
        return False
    connection = connections[using]
    if storage == "pgvector":
        return True  # the system check E052 says when it cannot be
    return package_available() and has_column(connection)


def install(connection: BaseDatabaseWrapper) -> bool:
    """Add the column, its indexes and the vectors already stored; False where it cannot.

    Run by the initial migration, a no-op on other databases and on a PostgreSQL without
    the extension. Where the extension was installed after the initial migration ran, call it
    once: ``vectors.install(django.db.connection)``. Idempotent.
    """
    if not extension_available(connection):
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        if cursor.fetchone() is None:
            try:
                with transaction.atomic(using=connection.alias):
                    cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except Exception as exc:  # no privilege: an administrator must create it
                logger.warning("pgvector not enabled: CREATE EXTENSION vector failed: %s", exc)
                return False
        _ddl(cursor, f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {COLUMN} vector")
        # What is still to be copied into the column (see backfill), found by index.
        _ddl(
            cursor,
            f"CREATE INDEX IF NOT EXISTS motorhead_embedding_unfilled ON {TABLE} (session_id) "
            f"WHERE {COLUMN} IS NULL",
        )
        cursor.execute(f"SELECT DISTINCT session_id FROM {TABLE} WHERE {COLUMN} IS NULL")
        sessions = [row[0] for row in cursor.fetchall()]
    for session_pk in sessions:
        backfill(connection, session_pk)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT octet_length(vector) / 4 FROM {TABLE}")
        dimensions = [row[0] for row in cursor.fetchall()]
    for count in dimensions:
        ensure_index(connection, count)
    return True


def uninstall(connection: BaseDatabaseWrapper) -> None:
    """Drop the column (and with it its indexes); the extension stays (others may use it)."""
    if has_column(connection):
        with connection.cursor() as cursor:
            _ddl(cursor, f"ALTER TABLE {TABLE} DROP COLUMN {COLUMN}")


def index_name(dimensions: int) -> str:
    return f"motorhead_embedding_hnsw_{dimensions}"


def ensure_index(connection: BaseDatabaseWrapper, dimensions: int) -> None:
    """The HNSW index (cosine) of the vectors with ``dimensions`` floats, made if missing."""
    dimensions = int(dimensions)
    if not 0 < dimensions <= MAX_INDEXED_DIMENSIONS:
        return
    name = index_name(dimensions)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
        if cursor.fetchone() is not None:
            return
        # Locks the table's writes while it builds: at first use that is a moment.
        _ddl(
            cursor,
            f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} USING hnsw "
            f"(({COLUMN}::vector({dimensions})) vector_cosine_ops) "
            f"WHERE vector_dims({COLUMN}) = {dimensions}",
        )


def _ddl(cursor: Any, sql: str) -> None:
    # PostgreSQL refuses to alter a table with deferred checks pending (rows written in
    # this transaction: Django's foreign keys are deferred): run them first.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(sql)
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys, as they were


def store(connection: BaseDatabaseWrapper, rows: Sequence[tuple[int, Sequence[float]]]) -> None:
    """Fill the column of these ``(message pk, unit vector)`` rows (already saved)."""
    if not rows:
        return
    from pgvector import Vector

    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} AS e SET {COLUMN} = d.v::vector "
            "FROM unnest(%s::bigint[], %s::text[]) AS d(pk, v) WHERE e.message_id = d.pk",
            [[pk for pk, _ in rows], [Vector(list(vector)).to_text() for _, vector in rows]],
        )
    for dimensions in {len(vector) for _, vector in rows}:
        ensure_index(connection, dimensions)


def backfill(connection: BaseDatabaseWrapper, session_pk: int) -> int:
    """Copy a session's blobs into the column where it is empty (stored before pgvector)."""
    from .embeddings import unpack

    filled = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT message_id, vector FROM {TABLE} WHERE session_id = %s "
                f"AND {COLUMN} IS NULL LIMIT {BACKFILL_BATCH}",
                [session_pk],
            )
            rows = [(pk, unpack(blob)) for pk, blob in cursor.fetchall()]
        if not rows:
            return filled
        store(connection, rows)
        filled += len(rows)


def nearest(
    connection: BaseDatabaseWrapper,
    session_pks: Sequence[int] | None,
    sessions_sql: tuple[str, Sequence[Any]] | None,
    query: Sequence[float],
    limit: int,
) -> list[tuple[int, float]]:
    """``(message pk, dist)`` of the ``limit`` nearest by cosine, in some sessions.

    ``session_pks``: the sessions (one for a session's retrieval); or
    ``sessions_sql``: SQL selecting session primary keys, with its parameters.
    """
    found = _run(connection, _select(session_pks, sessions_sql, query, limit))
    return [(int(pk), round(max(0.0, float(dist)), 6)) for pk, dist in found]


def explain(
    connection: BaseDatabaseWrapper, session_pks: Sequence[int], query: Sequence[float], limit: int
) -> str:
    """PostgreSQL's plan of a session's search (which index answers it)."""
    sql, params = _select(session_pks, None, query, limit)
    return "\n".join(row[0] for row in _run(connection, ("EXPLAIN " + sql, params)))


def _select(
    session_pks: Sequence[int] | None,
    sessions_sql: tuple[str, Sequence[Any]] | None,
    query: Sequence[float],
    limit: int,
) -> tuple[str, list[Any]]:
    from pgvector import Vector

    dimensions = len(query)
    vector = f"{COLUMN}::vector({dimensions})"
    text = Vector([float(x) for x in query]).to_text()
    if sessions_sql is not None:
        where, params = f"session_id IN ({sessions_sql[0]})", list(sessions_sql[1])
    else:
        where, params = "session_id = ANY(%s)", [list(session_pks or ())]
    sql = (
        # The dimension test is the partial index's predicate, written as it is.
        f"SELECT message_id, {vector} <=> %s::vector({dimensions}) AS dist FROM {TABLE} "
        f"WHERE vector_dims({COLUMN}) = {dimensions} AND {where} "
        f"ORDER BY {vector} <=> %s::vector({dimensions}) LIMIT {int(limit)}"
    )
    return sql, [text, *params, text]


def _run(connection: BaseDatabaseWrapper, statement: tuple[str, list[Any]]) -> list[Any]:
    config = motorhead_settings.EMBEDDINGS
    ef_search = max(config.EF_SEARCH if config is not None else 200, 10)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        # SET LOCAL: for this transaction only, so a pooled connection keeps its own.
        cursor.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
        cursor.execute(*statement)
        return list(cursor.fetchall())
