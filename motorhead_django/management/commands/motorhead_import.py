"""``manage.py motorhead_import``: bring every session of a Motorhead server into Django."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import memory
from ...client import get_client
from ...conf import motorhead_settings
from ...exceptions import MotorheadError, MotorheadValidationError
from ...models import ChatSession
from ...pull import pull_session, remote_session_ids


class Command(BaseCommand):
    help = (
        "Import every session a Motorhead server lists (all pages, one or more namespaces): "
        "its window of messages, summary and tokens, as found on the server. Resumable: a "
        "session already imported is skipped, so after an interruption run it again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
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
            "--refresh",
            action="store_true",
            help="Pull sessions imported before too (their new messages and summary).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not motorhead_settings.SYNC_ENABLED:
            raise CommandError("Sync is not enabled: set MOTORHEAD['URL'] to the server to import.")
        if options["page_size"] < 1:
            raise CommandError("--page-size must be at least 1.")
        namespaces = options["namespace"] or [motorhead_settings.NAMESPACE]
        client = get_client()
        imported = skipped = 0
        for namespace in dict.fromkeys(namespaces):
            ids = self._list(client, namespace, options["page_size"])
            done = set(
                ChatSession.objects.filter(
                    namespace=namespace, session_id__in=ids, last_pulled_at__isnull=False
                ).values_list("session_id", flat=True)
            )
            label = repr(namespace) if namespace else "(none)"
            self.stdout.write(
                f"Namespace {label}: {len(ids)} session(s) listed, {len(done)} imported before"
            )
            for index, session_id in enumerate(ids, start=1):
                if session_id in done and not options["refresh"]:
                    skipped += 1
                    continue
                added = self._import(client, namespace, session_id, imported)
                imported += 1
                if options["verbosity"] >= 2:
                    self.stdout.write(f"[{index}/{len(ids)}] {session_id}: {added} message(s)")
                elif index % 100 == 0 or index == len(ids):
                    self.stdout.write(f"[{index}/{len(ids)}] ...")
        self.stdout.write(f"Done: {imported} session(s) imported, {skipped} already there.")

    def _list(self, client: Any, namespace: str, size: int) -> list[str]:
        try:
            pages = list(remote_session_ids(client, namespace or None, size=size))
        except MotorheadError as exc:
            raise CommandError(f"Could not list the sessions of {namespace!r}: {exc}") from None
        # A session written during the listing moves to the last page: count it once.
        return list(dict.fromkeys(session_id for page in pages for session_id in page))

    def _import(self, client: Any, namespace: str, session_id: str, imported: int) -> int:
        try:
            session = memory.get_or_create_session(session_id, namespace=namespace)
        except MotorheadValidationError as exc:
            self.stderr.write(f"Skipped {session_id!r}: {exc}")
            return 0
        result = pull_session(session.pk, client=client)
        if result.error or result.busy:
            why = result.error or "busy (a worker holds its lock)"
            raise CommandError(
                f"Stopped at {session_id!r} after {imported} session(s) this run: {why}. "
                "Run the command again to resume."
            )
        return result.added
