"""``manage.py motorhead_summarize``: catch up the built-in summariser and the embeddings now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from motorhead_django import embeddings, memory, summaries
from motorhead_django.conf import motorhead_settings
from motorhead_django.llm import LLMError
from motorhead_django.models import ChatSession


class Command(BaseCommand):
    help = (
        "Summarise every message that left its session's window and is not in the summary yet, "
        "and embed every message without an embedding (MOTORHEAD['SUMMARIZER'] / ['EMBEDDINGS'] "
        "dicts), in this process. With --adopt, first take each session's current context (a "
        "Motorhead server's summary) as covering what already left the window."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--session", action="append", type=int, metavar="PK", help="A session's primary key."
        )
        parser.add_argument(
            "--adopt",
            action="store_true",
            help="Mark what left the window as summarised where a context exists and nothing "
            "is marked yet (switching from a Motorhead server), then catch up.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        summarising = motorhead_settings.SUMMARIZES_LOCALLY
        embedding = motorhead_settings.EMBEDDINGS is not None
        if not (summarising or embedding):
            raise CommandError(
                "Nothing to do: set MOTORHEAD['SUMMARIZER'] (a dict; with a URL, also "
                "CONTEXT_OWNER='local') or MOTORHEAD['EMBEDDINGS']."
            )
        sessions = ChatSession.objects.order_by("pk")
        if options["session"]:
            sessions = sessions.filter(pk__in=options["session"])
        if options["adopt"]:
            adopted = memory.adopt_contexts(sessions)
            self.stdout.write(f"{adopted} session(s) adopted their context.")
        calls = summarised = embedded = failed = 0
        for pk in sessions.values_list("pk", flat=True).iterator():
            try:
                if summarising:
                    result = summaries.summarize_pending(pk)
                    calls, summarised = calls + result.calls, summarised + result.summarized
                if embedding:
                    embedded += embeddings.embed_pending(pk)
            except LLMError as exc:
                failed += 1
                self.stderr.write(f"session {pk}: {exc}")
        self.stdout.write(
            f"{summarised} message(s) summarised in {calls} call(s), {embedded} embedded, "
            f"{failed} session(s) failed."
        )
        if failed:
            raise CommandError(f"{failed} session(s) failed; run it again to resume.")
