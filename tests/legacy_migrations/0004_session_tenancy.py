"""Session ids scoped per owner; the id on the server becomes its own field.

Existing sessions keep the id the server knows them by (``remote_id`` is filled
with ``session_id``), so the sync and the pull go on working on them unchanged.
"""

from django.db import migrations, models
from django.db.models import F


def fill_remote_ids(apps, schema_editor):
    ChatSession = apps.get_model("motorhead_django", "ChatSession")
    ChatSession.objects.using(schema_editor.connection.alias).update(remote_id=F("session_id"))


class Migration(migrations.Migration):
    dependencies = [
        ("motorhead_django", "0003_pull_timeline_drift_tombstone"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatsession",
            name="remote_id",
            field=models.CharField(
                default="",
                editable=False,
                help_text=(
                    "The id the Motorhead server knows this session by: u<owner id>:<session "
                    "id> for a session created by a user, the session id itself for one without "
                    "an owner (and for sessions imported or created before ids were scoped per "
                    "owner)."
                ),
                max_length=300,
                verbose_name="server id",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(fill_remote_ids, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="chatsession",
            name="session_id",
            field=models.CharField(
                help_text="The id its owner's clients use; unique per owner and namespace.",
                max_length=255,
                verbose_name="session id",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="chatsession",
            name="motorhead_session_id_per_namespace",
        ),
        migrations.AddConstraint(
            model_name="chatsession",
            constraint=models.UniqueConstraint(
                condition=models.Q(("owner__isnull", False)),
                fields=("owner", "namespace", "session_id"),
                name="motorhead_session_id_per_owner",
            ),
        ),
        migrations.AddConstraint(
            model_name="chatsession",
            constraint=models.UniqueConstraint(
                fields=("namespace", "remote_id"), name="motorhead_session_remote_id"
            ),
        ),
    ]
