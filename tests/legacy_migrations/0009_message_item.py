from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("motorhead_django", "0008_summariser"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatmessage",
            name="item",
            field=models.JSONField(
                blank=True,
                help_text=(
                    "The message exactly as an agent framework gave it (an Agents SDK item, a "
                    "serialized LangChain message), read back unchanged; content is its readable "
                    "text, the one shown and pushed to Motorhead. Empty for plain messages."
                ),
                null=True,
                verbose_name="item",
            ),
        ),
    ]
