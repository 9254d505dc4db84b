"""pgvector where the database has it: a ``vector`` column beside each embedding, HNSW-indexed.

A no-op on SQLite and on a PostgreSQL without the ``vector`` extension (the
portable float32 blob serves there); see motorhead_django/vectors.py. No model
state changes: the column is not a model field, so the models and the
migration graph are the same on every database.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    from motorhead_django import vectors

    vectors.install(schema_editor.connection)


def backwards(apps, schema_editor):
    from motorhead_django import vectors

    vectors.uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("motorhead_django", "0011_checkpoint_owner")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
