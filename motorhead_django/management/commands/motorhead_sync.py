"""``manage.py motorhead_sync``: push pending work to Motorhead now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import motorhead_settings
from ...models import ChatSession, SyncState
from ...sync import PushResult, drain


class Command(BaseCommand):
    help = (
        "Push every session's pending messages to the Motorhead server, synchronously and "
        "in order, ignoring retry back-off times. Use it to drain the outbox after an outage, "
        "before a deploy, or from cron where Celery beat is not running. With --session, push "
        "one session. Exits with status 1 when a session is still failed or pending afterwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--session",
            metavar="ID",
            help="Push only this session (its Motorhead session id).",
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

    def handle(self, *args: Any, **options: Any) -> None:
        if not motorhead_settings.SYNC_ENABLED:
            raise CommandError(
                "Sync is not enabled: set MOTORHEAD['URL'] (and leave SYNC_ENABLED unset or True)."
            )
        sessions = ChatSession.objects.all()
        if options["session"] is not None:
            namespace = options["namespace"]
            if namespace is None:
                namespace = motorhead_settings.NAMESPACE
            sessions = sessions.filter(session_id=options["session"], namespace=namespace)
            if not sessions.exists():
                raise CommandError(f"No session {options['session']!r} in namespace {namespace!r}.")
        else:
            states = [SyncState.PENDING, SyncState.RETRYING]
            if options["include_failed"]:
                states.append(SyncState.FAILED)
            sessions = sessions.filter(sync_state__in=states)
        keys = list(sessions.order_by("pk").values_list("pk", flat=True))
        self.stdout.write(f"Pushing {len(keys)} session(s) to {motorhead_settings.URL}")
        results = drain(keys, progress=self._progress)
        pushed = sum(result.pushed for result in results)
        left = [r for r in results if r.error or r.busy or r.state == SyncState.PENDING]
        self.stdout.write(
            f"Done: {pushed} message(s) pushed, {len(results) - len(left)} session(s) synced, "
            f"{len(left)} not."
        )
        if left:
            raise CommandError(f"{len(left)} session(s) still not synced; see the errors above.")

    def _progress(self, index: int, total: int, result: PushResult) -> None:
        session = ChatSession.objects.filter(pk=result.session_pk).first()
        name = str(session) if session else f"#{result.session_pk}"
        if result.busy:
            outcome = "busy (another worker is pushing it)"
        elif result.error:
            outcome = f"{result.state}: {result.error}"
        else:
            outcome = f"{result.pushed} message(s) in {result.batches} batch(es)"
        self.stdout.write(f"[{index}/{total}] {name}: {outcome}")
