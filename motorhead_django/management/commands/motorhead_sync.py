"""``manage.py motorhead_sync``: the old all-in-one command, kept as an alias.

Deprecated: each mode is now a command of its own (``motorhead_push``,
``motorhead_pull``, ``motorhead_verify``, ``motorhead_rehydrate``); this one keeps
its options and exit statuses and runs the matching command.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

# Django's own options, passed on as they were given.
_COMMON = ("verbosity", "no_color", "force_color", "traceback")


class Command(BaseCommand):
    help = (
        "Deprecated alias: use motorhead_push, motorhead_pull, motorhead_verify or "
        "motorhead_rehydrate, which this runs (same options, same exit statuses). "
        "Push every session's pending messages to the Motorhead server, synchronously and "
        "in order, ignoring retry back-off times. Use it to drain the outbox after an outage, "
        "before a deploy, or from cron where Celery beat is not running. With --session, push "
        "one session. Exits with status 1 when a session is still failed or pending afterwards. "
        "--pull, --verify and --rehydrate do that instead of a push (see docs/pull.md); "
        "--verify exits with status 1 naming each session that drifted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--session",
            metavar="ID",
            help="Push only this session: its session id (every owner's session with that id) "
            "or its id on the server (u<owner id>:<id>).",
        )
        parser.add_argument(
            "--namespace",
            metavar="NS",
            default=None,
            help="Namespace of --session (default: MOTORHEAD['NAMESPACE']).",
        )
        parser.add_argument(
            "--include-failed",
            action="store_true",
            help="Also retry sessions marked failed (a 4xx or too many retries).",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--pull",
            action="store_true",
            help="Pull the server's window, summary and tokens into the active sessions "
            "(or --session).",
        )
        mode.add_argument(
            "--verify",
            action="store_true",
            help="Compare the active sessions (or --session) with the server; mark drift.",
        )
        mode.add_argument(
            "--rehydrate",
            action="store_true",
            help="Rebuild sessions on the server from the local record: --session, or every "
            "session (after a server was wiped); with --drifted-only, the drifted ones.",
        )
        parser.add_argument(
            "--drifted-only",
            action="store_true",
            help="With --rehydrate: only sessions marked drifted.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._check_options(options)
        mode = next((m for m in ("pull", "verify", "rehydrate") if options[m]), "push")
        mapped = {name: options[name] for name in ("session", "namespace", *_COMMON)}
        if mode == "push":
            mapped["include_failed"] = options["include_failed"]
        if mode == "rehydrate":
            mapped["drifted_only"] = options["drifted_only"]
        if options["verbosity"] >= 1:
            self.stderr.write(
                f"motorhead_sync is deprecated: run motorhead_{mode}"
                + (f" (the same options, without --{mode})." if mode != "push" else "."),
                style_func=self.style.WARNING,
            )
        # The raw streams: the progress bar writes control codes, not lines.
        call_command(
            f"motorhead_{mode}",
            stdout=self.stdout._out,
            stderr=self.stderr._out,
            **mapped,
        )

    @staticmethod
    def _check_options(options: dict[str, Any]) -> None:
        """Refuse the old modes' options with the wrong mode (the commands check the rest)."""
        if options["drifted_only"] and not options["rehydrate"]:
            raise CommandError("--drifted-only only goes with --rehydrate.")
        other = next((name for name in ("pull", "verify", "rehydrate") if options[name]), None)
        if options["include_failed"] and other:
            raise CommandError(f"--include-failed only goes with a push, not --{other}.")
