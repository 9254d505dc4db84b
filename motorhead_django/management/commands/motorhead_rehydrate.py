"""``manage.py motorhead_rehydrate``: rebuild sessions on the server from the local record."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from motorhead_django.management import _engine
from motorhead_django.management.base import SessionsCommand


class Command(SessionsCommand):
    help = (
        "Rebuild sessions on the server from the local record (the latest summary and the "
        "newest window): --session, every session (after a server was wiped), or with "
        "--drifted-only the ones marked drifted. Exits with status 1 when one failed."
    )
    verb = "rehydrate"
    session_help = "Rebuild only this session"

    def add_options(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--drifted-only",
            action="store_true",
            help="Only the sessions marked drifted (by motorhead_verify or a pull).",
        )

    def check_options(self, options: dict[str, Any]) -> None:
        if options["drifted_only"] and options["session"] is not None:
            raise CommandError("--drifted-only and --session cannot be combined.")

    def default_sessions(self, options: dict[str, Any]) -> list[int]:
        return _engine.to_rehydrate(drifted_only=options["drifted_only"])
