"""``manage.py motorhead_import``: bring every session of a Motorhead server into Django."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from motorhead_django import engine, memory
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadError, MotorheadValidationError
from motorhead_django.progress import Progress


class Command(BaseCommand):
    help = (
        "Import every session a Motorhead server lists (all pages, one or more namespaces): "
        "its window of messages, summary and tokens, as found on the server. Resumable: a "
        "session already imported is skipped, so after an interruption run it again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from-export",
            metavar="PATH",
            help="Instead of the server: restore a motorhead_export JSON Lines file.",
        )
        parser.add_argument(
            "--namespace",
            action="append",
            metavar="NS",
            help="A namespace to import (repeat for several; '' is the un-namespaced listing). "
            "Default: MOTORHEAD['NAMESPACE'].",
        )
        parser.add_argument(
            "--page-size",
            type=int,
            default=1000,
            help="Sessions per listing page (the server serves at most 100 pages).",
        )
        parser.add_argument(
            "--owner",
            metavar="USERNAME",
            help="The user the imported sessions belong to, so that user's API keys reach "
            "them (ids of the form u<user id>:… name their owner themselves). Default: none.",
        )
        parser.add_argument(
            "--refresh",
            action="store_true",
            help="Pull sessions imported before too (their new messages and summary).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("from_export"):
            self._from_export(options["from_export"])
            return
        if not motorhead_settings.SYNC_ENABLED:
            raise CommandError("Sync is not enabled: set MOTORHEAD['URL'] to the server to import.")
        if options["page_size"] < 1:
            raise CommandError("--page-size must be at least 1.")
        owner = None
        if options["owner"] is not None:
            if "\x00" in options["owner"]:
                raise CommandError("--owner: no NUL characters.")
            users = get_user_model()
            lookup = {users.USERNAME_FIELD: options["owner"]}
            owner = users._default_manager.filter(**lookup).first()
            if owner is None:
                raise CommandError(f"--owner {options['owner']!r}: no such user.")
        namespaces = options["namespace"] or [motorhead_settings.NAMESPACE]
        for namespace in namespaces:
            try:
                memory.validate_namespace(namespace)
            except MotorheadValidationError as exc:
                why = exc.errors["namespace"]
                raise CommandError(f"--namespace {namespace!r}: {why}") from None
        verbosity = options["verbosity"]
        bars: dict[str, Progress] = {}

        def progress(namespace: str, index: int, total: int, session_id: str, added: int) -> None:
            if index == 1 and verbosity >= 1:
                label = repr(namespace) if namespace else "(none)"
                self.stdout.write(f"Namespace {label}: {total} session(s) listed")
            if namespace not in bars:
                for other in bars.values():
                    other.close()
                # Per-session lines at -v 2 (the listing may hold 100,000 sessions).
                bars[namespace] = Progress(
                    self.stdout, total, verbosity=verbosity, item_verbosity=2, start=index - 1
                )
            bars[namespace].step(f"[{index}/{total}] {session_id}: {added} message(s)")
            if index >= total:
                bars[namespace].close()

        try:
            result = engine.import_sessions(
                namespaces,
                page_size=options["page_size"],
                refresh=options["refresh"],
                owner=owner,
                progress=progress,
            )
        except MotorheadError as exc:
            raise CommandError(f"Could not list the server's sessions: {exc}") from None
        finally:
            for bar in bars.values():
                bar.close()
        for refused in result.notes:
            self.stderr.write(f"Skipped {refused}")
        if result.error:
            raise CommandError(
                f"Stopped after {result.sessions} session(s) this run, {result.error}. "
                "Run the command again to resume."
            )
        self.stdout.write(
            f"Done: {result.sessions} session(s) imported, {result.skipped} already there."
        )

    def _from_export(self, path: str) -> None:
        from motorhead_django.export import ExportFormatError, import_export

        try:
            with open(path, encoding="utf-8") as lines:
                result = import_export(lines)
        except OSError as exc:
            raise CommandError(f"--from-export {path!r}: {exc.strerror}") from None
        except ExportFormatError as exc:
            raise CommandError(f"--from-export {path!r}: {exc}") from None
        for skipped in result.skipped:
            self.stderr.write(f"Skipped {skipped}: a session with this id exists")
        self.stdout.write(
            f"Restored {result.sessions} session(s), {result.messages} message(s), "
            f"{result.summaries} summary version(s)."
        )
