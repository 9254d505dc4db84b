"""Migrations are in step with the models, whatever the host's DEFAULT_AUTO_FIELD."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from motorhead_django.models import ChatSession


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "motorhead_django", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_no_missing_migrations_with_another_auto_field(settings):
    # The app pins its own default_auto_field, so a host project's choice
    # must not produce a migration for it.
    settings.DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
    call_command("makemigrations", "motorhead_django", "--check", "--dry-run", verbosity=0)


@pytest.mark.slow  # migrates the database backwards and forwards
@pytest.mark.django_db(transaction=True)
def test_0004_gives_existing_sessions_their_id_on_the_server():
    """Sessions from before ids were scoped per owner keep the id the server knows them by,
    and the per-owner uniqueness starts to apply."""
    app = "motorhead_django"
    before, after = [(app, "0003_pull_timeline_drift_tombstone")], [(app, "0004_session_tenancy")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    User = old.get_model("auth", "User")
    ann = User.objects.create(username="ann")
    OldSession = old.get_model(app, "ChatSession")
    OldSession.objects.create(session_id="owned", owner=ann, sync_state="synced")
    OldSession.objects.create(session_id="ownerless", namespace="ns", sync_state="synced")
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps
        Session = new.get_model(app, "ChatSession")
        ids = dict(Session.objects.values_list("session_id", "remote_id"))
        assert ids == {"owned": "owned", "ownerless": "ownerless"}
        # Another user may now use "owned" (server id u<pk>:owned); ann may not twice.
        bob = new.get_model("auth", "User").objects.create(username="bob")
        Session.objects.create(session_id="owned", owner_id=bob.pk, remote_id=f"u{bob.pk}:owned")
        with pytest.raises(IntegrityError), transaction.atomic():
            Session.objects.create(session_id="owned", owner_id=ann.pk, remote_id="other")
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes(app))


@pytest.mark.slow  # migrates the database backwards and forwards
@pytest.mark.django_db(transaction=True)
def test_0006_moves_sessions_sharing_a_server_id_to_ids_of_their_own(upstream):
    """Sessions of different namespaces with one server id shared one conversation on the
    server: the oldest keeps the id, the others move to n<pk>:<id>, marked for a rebuild,
    and from then on a server id is held once."""
    app = "motorhead_django"
    before, after = [(app, "0005_sync_state_in_doubt")], [(app, "0006_remote_id_unique")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    ann = old.get_model("auth", "User").objects.create(username="ann")
    OldSession = old.get_model(app, "ChatSession")
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
        session_id="t", namespace="b", owner=ann, remote_id=f"u{ann.pk}:t", sync_state="pending"
    )
    alone = OldSession.objects.create(
        session_id="solo", namespace="b", remote_id="solo", sync_state="synced"
    )
    old.get_model(app, "ChatMessage").objects.create(
        session=moved, sequence=1, role="Human", content="b's", sync_state="synced"
    )
    OldSession.objects.filter(pk=moved.pk).update(last_sequence=1)
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps
        Session = new.get_model(app, "ChatSession")
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
        # (with today's models: the later migrations first).
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes(app))
        call_command("motorhead_sync", "--rehydrate", "--drifted-only", stdout=io.StringIO())
        rebuilt = upstream.stored_messages(f"n{moved.pk}:chat")
        assert [m["content"] for m in rebuilt] == ["b's"]
        assert ChatSession.objects.get(pk=moved.pk).sync_state == "synced"
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes(app))
