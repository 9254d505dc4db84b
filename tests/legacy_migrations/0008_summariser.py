"""The built-in summariser's high-water mark, and the messages' embeddings for retrieval."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("motorhead_django", "0007_langgraph_checkpoints"),
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
        migrations.CreateModel(
            name="MessageEmbedding",
            fields=[
                (
                    "message",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="embedding",
                        serialize=False,
                        to="motorhead_django.chatmessage",
                        verbose_name="message",
                    ),
                ),
                (
                    "vector",
                    models.BinaryField(
                        help_text="Little-endian float32, unit length.", verbose_name="vector"
                    ),
                ),
                ("model", models.CharField(max_length=200, verbose_name="model")),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created")),
                (
                    "session",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="embeddings",
                        to="motorhead_django.chatsession",
                        verbose_name="session",
                    ),
                ),
            ],
            options={
                "verbose_name": "message embedding",
                "verbose_name_plural": "message embeddings",
                "ordering": ("message",),
                "indexes": [models.Index(fields=["session"], name="motorhead_embedding_session")],
            },
        ),
    ]
