"""The check that stops a database which applied only part of the pre-0.1.0 migration chain.

Before 0.1.0 the app's migrations were a chain 0001-0015; they are squashed into one
``0001_initial`` with the same name as the chain's first. A database that applied the
whole chain has exactly the squashed schema and ``0001_initial`` recorded, so Django
runs nothing and all is well. One that applied only part of it also has
``0001_initial`` recorded, so Django would run nothing either, and the app would meet
a schema without the later tables and columns: these checks say so instead (E100,
E101), on ``migrate`` and ``check --database``. See docs/models.md#migrations.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, Tags, register
from django.db import DatabaseError, connections, router
from django.db.migrations.recorder import MigrationRecorder

APP = "motorhead_django"

#: The chain squashed into 0001_initial, as django_migrations recorded it.
OLD_CHAIN = (
    "0001_initial",
    "0002_apikey",
    "0003_pull_timeline_drift_tombstone",
    "0004_session_tenancy",
    "0005_sync_state_in_doubt",
    "0006_remote_id_unique",
    "0007_langgraph_checkpoints",
    "0008_summariser",
    "0009_message_item",
    "0010_governance",
    "0011_checkpoint_owner",
    "0012_embedding_vector",
    "0013_search_indexes",
    "0014_state_samples",
    "0015_admin_jobs",
)

_HINT = (
    "Install the motorhead-django revision that still has migrations 0001-0015 and run "
    "'manage.py migrate motorhead_django 0015_admin_jobs', then upgrade again; "
    "see docs/models.md#migrations."
)


@register(Tags.database)
def check_old_migration_chain(
    databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for alias in databases or ():
        if router.allow_migrate(alias, APP):
            messages.extend(_check_database(alias))
    return messages


def _check_database(alias: str) -> list[CheckMessage]:
    connection = connections[alias]
    recorder = MigrationRecorder(connection)
    try:
        if not recorder.has_table():
            return []  # a new database: migrate creates everything
        applied = {name for app, name in recorder.applied_migrations() if app == APP}
        tables = set(connection.introspection.table_names())
    except DatabaseError:
        return []  # unreachable database: Django's own checks report it
    old = applied & set(OLD_CHAIN[1:])
    if old:
        missing = [name for name in OLD_CHAIN if name not in applied]
        if missing:
            return [
                Error(
                    f"Database {alias!r} applied part of motorhead_django's pre-0.1.0 "
                    f"migration chain: {', '.join(missing)} never ran, and the squashed "
                    "0001_initial will not run them.",
                    hint=_HINT,
                    id=f"{APP}.E100",
                )
            ]
        return []
    if "0001_initial" not in applied:
        return []
    absent = sorted(
        model._meta.db_table
        for model in apps.get_app_config(APP).get_models()
        if model._meta.managed and model._meta.db_table not in tables
    )
    if absent:
        return [
            Error(
                f"Database {alias!r} has motorhead_django's 0001_initial recorded but not its "
                f"tables {', '.join(absent)}: it applied only the first migration of the "
                "pre-0.1.0 chain.",
                hint=_HINT,
                id=f"{APP}.E101",
            )
        ]
    return []
