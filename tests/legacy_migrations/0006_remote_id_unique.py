"""One local session per server id, across namespaces.

Motorhead's message storage is not namespaced: sessions of different namespaces
with one server id (``remote_id``) shared one conversation on the server. Before
the constraint is added, each such group keeps its oldest session on the id; every
other one moves to a server id of its own, ``n<session pk>:<session id>`` (a form
refused for new ownerless ids, like ``u<digits>:``), and is marked drifted: its
server copy is empty until ``manage.py motorhead_sync --rehydrate --drifted-only``
rebuilds it from the local history.
"""

from django.db import migrations, models
from django.db.models import Count


def separate_shared_ids(apps, schema_editor):
    ChatSession = apps.get_model("motorhead_django", "ChatSession")
    sessions = ChatSession.objects.using(schema_editor.connection.alias)
    shared = (
        sessions.values("remote_id")
        .annotate(count=Count("pk"))
        .filter(count__gt=1)
        .values_list("remote_id", flat=True)
    )
    for remote_id in list(shared):
        group = list(sessions.filter(remote_id=remote_id).order_by("created_at", "pk"))
        keeper = group[0]
        for session in group[1:]:
            moved = f"n{session.pk}:{session.session_id}"
            updates = {"remote_id": moved}
            if session.sync_state != "local" and session.delete_requested_at is None:
                updates.update(
                    sync_state="drifted",
                    next_attempt_at=None,
                    drift=(
                        f"Moved by migration 0006 from server id {remote_id!r}, which it "
                        f"shared with namespace {keeper.namespace!r} (Motorhead keeps one "
                        f"conversation per id, whatever the namespace), to {moved!r}: that "
                        "server copy is empty until `manage.py motorhead_sync --rehydrate "
                        "--drifted-only` rebuilds it from the history here."
                    ),
                )
            sessions.filter(pk=session.pk).update(**updates)


class Migration(migrations.Migration):
    dependencies = [
        ("motorhead_django", "0005_sync_state_in_doubt"),
    ]

    operations = [
        migrations.RunPython(separate_shared_ids, migrations.RunPython.noop, elidable=False),
        migrations.RemoveConstraint(
            model_name="chatsession",
            name="motorhead_session_remote_id",
        ),
        migrations.AddConstraint(
            model_name="chatsession",
            constraint=models.UniqueConstraint(
                fields=("remote_id",), name="motorhead_session_remote_id"
            ),
        ),
    ]
