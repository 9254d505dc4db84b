"""The built-in summariser's high-water mark: messages through it are in the context."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("motorhead_django", "0004_session_tenancy"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatsession",
            name="summarized_through",
            field=models.PositiveBigIntegerField(
                default=0,
                editable=False,
                help_text=(
                    "Last sequence the built-in summariser folded into the context: every "
                    "message up to it is in the summary exactly once, none after it."
                ),
                verbose_name="summarised through",
            ),
        ),
    ]
