"""``manage.py motorhead_push``: push pending work to Motorhead now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from motorhead_django.conf import motorhead_settings
from motorhead_django.management import _engine
from motorhead_django.management._engine import Outcome
from motorhead_django.management.base import SessionsCommand


class Command(SessionsCommand):
    help = (
        "Push every pending, retrying or in-doubt session's messages to the Motorhead server, "
        "synchronously and in order, ignoring retry back-off times. Use it to drain the outbox "
        "after an outage, before a deploy, or from cron where Celery beat is not running. "
        "Exits with status 1 when a session is still failed or pending afterwards."
    )
    verb = "push"
    session_help = "Push only this session (whatever its state)"

    def add_options(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--include-failed",
            action="store_true",
            help="Also retry sessions marked failed (a 4xx or too many retries).",
        )

    def check_options(self, options: dict[str, Any]) -> None:
        if options["include_failed"] and options["session"] is not None:
            raise CommandError("--include-failed and --session cannot be combined.")

    def default_sessions(self, options: dict[str, Any]) -> list[int]:
        return _engine.to_push(include_failed=options["include_failed"])

    def started(self, keys: list[int]) -> None:
        self.stdout.write(f"Pushing {len(keys)} session(s) to {motorhead_settings.URL}")

    def report(self, outcomes: list[Outcome]) -> None:
        pushed = sum(outcome.pushed for outcome in outcomes)
        left = sum(outcome.left for outcome in outcomes)
        self.stdout.write(
            f"Done: {pushed} message(s) pushed, {len(outcomes) - left} session(s) synced, "
            f"{left} not."
        )
        if left:
            raise CommandError(f"{left} session(s) still not synced; see the errors above.")
