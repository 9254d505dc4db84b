"""``manage.py motorhead_export``: everything held for one user or one session."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from motorhead_django import export
from motorhead_django.management.base import progress_on_stderr

from ._subject import add_subject_arguments, subject


class Command(BaseCommand):
    help = (
        "Export a user's (or one session's) sessions, every message with its metadata, the "
        "summary timeline, sync history and erasure receipts, as JSON Lines or Markdown. "
        "Streams: memory stays flat whatever the size. Progress goes to stderr (a bar on a "
        "terminal, a line every ten seconds elsewhere; each session at -v 2, none at -v 0), so "
        "the export on stdout stays clean."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_subject_arguments(parser)
        parser.add_argument("--format", choices=export.FORMATS, default="jsonl")
        parser.add_argument("--output", metavar="PATH", help="Write here (default: stdout).")

    def handle(self, *args: Any, **options: Any) -> None:
        user, session = subject(options)
        label = f"user:{user.pk}" if user is not None else f"session:{session.pk}"  # type: ignore[union-attr]
        sessions = export.sessions_of(user, session)
        with progress_on_stderr(self, sessions.count(), options["verbosity"]) as bar:
            chunks = export.export(sessions, options["format"], subject=label, done=bar.step)
            if options["output"]:
                try:
                    with open(options["output"], "w", encoding="utf-8") as out:
                        out.writelines(chunks)
                except OSError as exc:
                    raise CommandError(f"--output {options['output']!r}: {exc.strerror}") from None
                return
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
