"""Migrations are in step with the models, whatever the host's DEFAULT_AUTO_FIELD."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "motorhead_django", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_no_missing_migrations_with_another_auto_field(settings):
    # The app pins its own default_auto_field, so a host project's choice
    # must not produce a migration for it.
    settings.DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
    call_command("makemigrations", "motorhead_django", "--check", "--dry-run", verbosity=0)


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
