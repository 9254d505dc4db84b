"""Trigram indexes for the substring search (message content, session ids), on PostgreSQL only.

``content__icontains`` compiles to ``UPPER(content::text) LIKE UPPER(%s)`` there: the
indexes are on ``UPPER(column)`` with ``gin_trgm_ops``, so the planner uses it (see
docs/search.md). It is a database-only index, not in the model state: other
databases have no GIN and keep their plain scan. pg_trgm is a trusted extension
(PostgreSQL 13+): a database owner may create it without being a superuser.
"""

from django.db import migrations

# Spelled out, not imported from motorhead_django.search: a migration stays as written.
INDEXES = {
    "motorhead_message_content_trgm": ("ChatMessage", "content"),
    "motorhead_session_id_trgm": ("ChatSession", "session_id"),
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql" or not _trgm_available(schema_editor):
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for index, (model, column) in INDEXES.items():
        table = schema_editor.quote_name(apps.get_model("motorhead_django", model)._meta.db_table)
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {index} ON {table} USING gin (UPPER({column}) gin_trgm_ops)"
        )
        # Statistics of the new expression: without them the planner guesses how many rows
        # match and, on a large table, picks plans that take seconds (measured at 1M rows).
        schema_editor.execute(f"ANALYZE {table}")


def _trgm_available(schema_editor):
    # A server built without contrib (pgserver's, say) has no pg_trgm: the search stays
    # correct there, as a plain scan, rather than failing the migration.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        return cursor.fetchone() is not None


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # The extension stays: other indexes of the project may use it.
        for index in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {index}")


class Migration(migrations.Migration):
    dependencies = [
        ("motorhead_django", "0012_embedding_vector"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
