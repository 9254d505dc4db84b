"""Migrations are in step with the models, and the squashed 0001_initial takes over a database
that applied the pre-0.1.0 chain (kept, for these tests only, in tests/legacy_migrations)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks import Error
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.test.utils import override_settings

from motorhead_django.job_models import AdminJob
from motorhead_django.migration_checks import OLD_CHAIN, check_old_migration_chain
from motorhead_django.models import ApiKey, ChatMessage, ChatSession, MessageEmbedding

APP = "motorhead_django"
LEGACY = {"MIGRATION_MODULES": {APP: "tests.legacy_migrations"}}


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", APP, "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_no_missing_migrations_with_another_auto_field(settings):
    # The app pins its own default_auto_field, so a host project's choice
    # must not produce a migration for it.
    settings.DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
    call_command("makemigrations", APP, "--check", "--dry-run", verbosity=0)


def test_no_shipped_migration_reuses_a_name_of_the_old_chain():
    # An upgraded database still records 0002_apikey … 0015_admin_jobs (until --prune):
    # a new migration of one of those names would be taken as applied and never run.
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    shipped = {name for app, name in loader.disk_migrations if app == APP}
    assert "0001_initial" in shipped
    assert not shipped & set(OLD_CHAIN[1:])


def schema() -> dict[str, Any]:
    """The app's tables as the database describes them: columns and every constraint or index."""
    introspection = connection.introspection
    with connection.cursor() as cursor:
        tables = sorted(t for t in introspection.table_names(cursor) if t.startswith(APP))
        described: dict[str, Any] = {}
        for table in tables:
            columns = {
                column.name: (column.type_code, column.null_ok, column.default)
                for column in introspection.get_table_description(cursor, table)
            }
            constraints = introspection.get_constraints(cursor, table)
            described[table] = {
                "columns": columns,
                # Keyed by what they are: names Django derives may differ with history
                # (SQLite's unnamed foreign keys, say), the structure may not.
                "constraints": sorted(
                    (
                        tuple(c["columns"] or ()),
                        bool(c["primary_key"]),
                        bool(c["unique"]),
                        str(c["foreign_key"]),
                        bool(c["check"]),
                        bool(c["index"]),
                        str(c.get("type")),
                        str(c.get("orders")),
                    )
                    for c in constraints.values()
                ),
                "names": sorted(name for name in constraints if name.startswith("motorhead_")),
            }
    return described


def trigram_available() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        return cursor.fetchone() is not None


def migrate_to(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.fixture
def legacy_database() -> Iterator[None]:
    """The test's database without the app's tables, for the legacy chain to build them.

    Afterwards it is as a fresh install leaves it: whatever part of the old chain the test
    applied is completed and its rows pruned, which the upgrade test shows is that schema.
    """
    migrate_to([(APP, None)])
    try:
        yield
    finally:
        back_to_a_fresh_install()


def back_to_a_fresh_install() -> None:
    if check_old_migration_chain(databases=["default"]):
        with override_settings(**LEGACY):
            migrate_to([(APP, OLD_CHAIN[-1])])
    MigrationRecorder.Migration.objects.filter(app=APP, name__in=OLD_CHAIN[1:]).delete()
    migrate_to([(APP, "0001_initial")])  # a no-op unless the test left the app at zero


@pytest.mark.slow  # builds the schema three times
@pytest.mark.django_db(transaction=True)
def test_a_database_that_applied_the_old_chain_is_taken_over_as_it_is(legacy_database):
    migrate_to([(APP, "0001_initial")])  # the shipped one again: what a fresh install has
    fresh = schema()
    assert {AdminJob._meta.db_table, ChatMessage._meta.db_table} <= set(fresh)
    if trigram_available():  # the database-only step of 0001_initial ran, and is compared
        assert "motorhead_message_content_trgm" in fresh[ChatMessage._meta.db_table]["names"]
    migrate_to([(APP, None)])
    assert not any(t.startswith(APP) for t in connection.introspection.table_names())

    with override_settings(**LEGACY):
        old = migrate_to([(APP, OLD_CHAIN[-1])]).loader.project_state((APP, OLD_CHAIN[-1])).apps
        User = old.get_model("auth", "User")
        ann = User.objects.create(username="ann")
        Session = old.get_model(APP, "ChatSession")
        session = Session.objects.create(
            session_id="chat", owner=ann, remote_id=f"u{ann.pk}:chat", last_sequence=1
        )
        old.get_model(APP, "ChatMessage").objects.create(
            session=session, sequence=1, role="Human", content="hello", item={"k": 1}
        )
        old.get_model(APP, "AdminJob").objects.create(kind="push", description="one")

    # Back to the shipped migrations: nothing to do, and the checks migrate runs pass.
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes(APP)) == []
    assert check_old_migration_chain(databases=["default"]) == []
    out = io.StringIO()
    call_command("migrate", APP, skip_checks=False, stdout=out)
    assert "No migrations to apply." in out.getvalue()
    assert schema() == fresh

    # The old rows in django_migrations name files that no longer exist: Django ignores
    # them, and the documented `migrate --prune` removes them.
    recorded = set(
        MigrationRecorder.Migration.objects.filter(app=APP).values_list("name", flat=True)
    )
    assert recorded == set(OLD_CHAIN)
    call_command("migrate", APP, prune=True, skip_checks=False, stdout=io.StringIO())
    assert list(
        MigrationRecorder.Migration.objects.filter(app=APP).values_list("name", flat=True)
    ) == ["0001_initial"]
    assert check_old_migration_chain(databases=["default"]) == []

    # The rows read and write through today's models, constraints included.
    row = ChatSession.objects.get(session_id="chat")
    assert row.owner.username == "ann" and row.remote_id == f"u{ann.pk}:chat"
    assert [(m.content, m.item) for m in ChatMessage.objects.filter(session=row)] == [
        ("hello", {"k": 1})
    ]
    assert AdminJob.objects.get().description == "one"
    with pytest.raises(IntegrityError), transaction.atomic():
        ChatMessage.objects.create(session=row, sequence=1, role="AI", content="again")
    key, raw = ApiKey.issue(row.owner, "after the upgrade")
    assert ApiKey.find(raw) == key


@pytest.mark.slow  # builds the schema twice
def test_with_pgvector_the_old_chain_also_gives_a_fresh_install_s_schema(
    pgserver_database, django_db_blocker
):
    """On a PostgreSQL with pgvector both chains add the vector column, the same way."""
    from tests.conftest import _default_database

    with _default_database(pgserver_database), django_db_blocker.unblock():
        fresh = schema()
        assert "embedding" in fresh[MessageEmbedding._meta.db_table]["columns"]
        migrate_to([(APP, None)])
        try:
            with override_settings(**LEGACY):
                migrate_to([(APP, OLD_CHAIN[-1])])
            assert check_old_migration_chain(databases=["default"]) == []
            assert schema() == fresh
        finally:
            back_to_a_fresh_install()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("last_applied", "code"),
    [
        ("0007_langgraph_checkpoints", "E100"),
        ("0014_state_samples", "E100"),
        ("0001_initial", "E101"),
    ],
)
def test_a_database_that_applied_part_of_the_old_chain_is_stopped(
    legacy_database, last_applied, code
):
    with override_settings(**LEGACY):
        migrate_to([(APP, last_applied)])
    [error] = check_old_migration_chain(databases=["default"])
    assert isinstance(error, Error) and error.id == f"{APP}.{code}"
    assert "0015_admin_jobs" in error.hint
    if code == "E100":
        assert "0015_admin_jobs" in error.msg and last_applied not in error.msg
    # migrate runs the database checks: it stops instead of leaving the schema short.
    with pytest.raises(SystemCheckError, match=code):
        call_command("migrate", APP, skip_checks=False, stdout=io.StringIO())


# The data migrations of the old chain: not part of a fresh install any more, tested on
# the legacy chain while a database of it may still be upgraded.


@pytest.mark.slow  # migrates the database backwards and forwards
@pytest.mark.django_db(transaction=True)
def test_0004_gives_existing_sessions_their_id_on_the_server(legacy_database):
    """Sessions from before ids were scoped per owner keep the id the server knows them by,
    and the per-owner uniqueness starts to apply."""
    before, after = [(APP, "0003_pull_timeline_drift_tombstone")], [(APP, "0004_session_tenancy")]
    with override_settings(**LEGACY):
        old = migrate_to(before).loader.project_state(before).apps
        User = old.get_model("auth", "User")
        ann = User.objects.create(username="ann")
        OldSession = old.get_model(APP, "ChatSession")
        OldSession.objects.create(session_id="owned", owner=ann, sync_state="synced")
        OldSession.objects.create(session_id="ownerless", namespace="ns", sync_state="synced")
        new = migrate_to(after).loader.project_state(after).apps
        Session = new.get_model(APP, "ChatSession")
        ids = dict(Session.objects.values_list("session_id", "remote_id"))
        assert ids == {"owned": "owned", "ownerless": "ownerless"}
        # Another user may now use "owned" (server id u<pk>:owned); ann may not twice.
        bob = new.get_model("auth", "User").objects.create(username="bob")
        Session.objects.create(session_id="owned", owner_id=bob.pk, remote_id=f"u{bob.pk}:owned")
        with pytest.raises(IntegrityError), transaction.atomic():
            Session.objects.create(session_id="owned", owner_id=ann.pk, remote_id="other")


@pytest.mark.slow  # migrates the database backwards and forwards
@pytest.mark.django_db(transaction=True)
def test_0006_moves_sessions_sharing_a_server_id_to_ids_of_their_own(legacy_database, upstream):
    """Sessions of different namespaces with one server id shared one conversation on the
    server: the oldest keeps the id, the others move to n<pk>:<id>, marked for a rebuild,
    and from then on a server id is held once."""
    before, after = [(APP, "0005_sync_state_in_doubt")], [(APP, "0006_remote_id_unique")]
    with override_settings(**LEGACY):
        old = migrate_to(before).loader.project_state(before).apps
        ann = old.get_model("auth", "User").objects.create(username="ann")
        OldSession = old.get_model(APP, "ChatSession")
        kept = OldSession.objects.create(
            session_id="chat", namespace="a", remote_id="chat", sync_state="synced"
        )
        moved = OldSession.objects.create(
            session_id="chat", namespace="b", remote_id="chat", sync_state="synced"
        )
        local = OldSession.objects.create(
            session_id="chat", namespace="c", remote_id="chat", sync_state="local"
        )
        owned = OldSession.objects.create(
            session_id="t", namespace="a", owner=ann, remote_id=f"u{ann.pk}:t", sync_state="synced"
        )
        owned_too = OldSession.objects.create(
            session_id="t",
            namespace="b",
            owner=ann,
            remote_id=f"u{ann.pk}:t",
            sync_state="pending",
        )
        alone = OldSession.objects.create(
            session_id="solo", namespace="b", remote_id="solo", sync_state="synced"
        )
        old.get_model(APP, "ChatMessage").objects.create(
            session=moved, sequence=1, role="Human", content="b's", sync_state="synced"
        )
        OldSession.objects.filter(pk=moved.pk).update(last_sequence=1)
        new = migrate_to(after).loader.project_state(after).apps
        Session = new.get_model(APP, "ChatSession")
        rows = {s.pk: s for s in Session.objects.all()}
        assert (rows[kept.pk].remote_id, rows[kept.pk].sync_state) == ("chat", "synced")
        assert rows[alone.pk].remote_id == "solo" and rows[alone.pk].drift == ""
        assert rows[owned.pk].remote_id == f"u{ann.pk}:t"
        for session in (moved, owned_too):
            row = rows[session.pk]
            assert row.remote_id == f"n{session.pk}:{session.session_id}"
            assert row.sync_state == "drifted"
            assert "motorhead_sync --rehydrate --drifted-only" in row.drift
            assert "migration 0006" in row.drift
        # Never synced: a new id, nothing to rebuild.
        assert (rows[local.pk].remote_id, rows[local.pk].sync_state) == (
            f"n{local.pk}:chat",
            "local",
        )
        with pytest.raises(IntegrityError), transaction.atomic():
            Session.objects.create(session_id="solo", namespace="z", remote_id="solo")
        # What the drift text says rebuilds the moved session's copy under its new id
        # (with today's models: the rest of the old chain first).
        migrate_to([(APP, OLD_CHAIN[-1])])
    call_command("motorhead_sync", "--rehydrate", "--drifted-only", stdout=io.StringIO())
    rebuilt = upstream.stored_messages(f"n{moved.pk}:chat")
    assert [m["content"] for m in rebuilt] == ["b's"]
    assert ChatSession.objects.get(pk=moved.pk).sync_state == "synced"
