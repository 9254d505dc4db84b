"""``manage.py motorhead_sync``: push pending work to Motorhead now; pull, verify, rehydrate."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from ...conf import motorhead_settings
from ...exceptions import MotorheadError
from ...models import ChatSession, SyncState
from ...progress import Progress
from ...pull import active_sessions, pull_session, verify_session
from ...rehydrate import rehydrate_session
from ...sync import PushResult, drain


class Command(BaseCommand):
    help = (
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
        if not motorhead_settings.SYNC_ENABLED:
            raise CommandError(
                "Sync is not enabled: set MOTORHEAD['URL'] (and leave SYNC_ENABLED unset or True)."
            )
        sessions = ChatSession.objects.all()
        if options["pull"] or options["verify"] or options["rehydrate"]:
            self._other_mode(options)
            return
        if options["session"] is not None:
            namespace = options["namespace"]
            if namespace is None:
                namespace = motorhead_settings.NAMESPACE
            sessions = sessions.filter(_named(options["session"]), namespace=namespace)
            if not sessions.exists():
                raise CommandError(f"No session {options['session']!r} in namespace {namespace!r}.")
        else:
            states = [SyncState.PENDING, SyncState.RETRYING, SyncState.IN_DOUBT]
            if options["include_failed"]:
                states.append(SyncState.FAILED)
            sessions = sessions.filter(sync_state__in=states)
        keys = list(sessions.order_by("pk").values_list("pk", flat=True))
        self.stdout.write(f"Pushing {len(keys)} session(s) to {motorhead_settings.URL}")
        with Progress(self.stdout, len(keys), verbosity=options["verbosity"]) as self._bar:
            results = drain(keys, progress=self._progress)
        pushed = sum(result.pushed for result in results)
        left = [r for r in results if r.error or r.busy or r.state == SyncState.PENDING]
        self.stdout.write(
            f"Done: {pushed} message(s) pushed, {len(results) - len(left)} session(s) synced, "
            f"{len(left)} not."
        )
        if left:
            raise CommandError(f"{len(left)} session(s) still not synced; see the errors above.")

    @staticmethod
    def _check_options(options: dict[str, Any]) -> None:
        """Refuse options that mean nothing together, rather than ignore one of them."""
        if options["drifted_only"] and not options["rehydrate"]:
            raise CommandError("--drifted-only only goes with --rehydrate.")
        if options["drifted_only"] and options["session"] is not None:
            raise CommandError("--drifted-only and --session cannot be combined.")
        if options["include_failed"]:
            other = next((name for name in ("pull", "verify", "rehydrate") if options[name]), None)
            if other:
                raise CommandError(f"--include-failed only goes with a push, not --{other}.")
            if options["session"] is not None:
                raise CommandError("--include-failed and --session cannot be combined.")
        if options["namespace"] is not None and options["session"] is None:
            raise CommandError("--namespace only goes with --session.")

    def _one(self, options: dict[str, Any]) -> list[int]:
        namespace = options["namespace"]
        if namespace is None:
            namespace = motorhead_settings.NAMESPACE
        keys = list(
            ChatSession.objects.filter(_named(options["session"]), namespace=namespace)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not keys:
            raise CommandError(f"No session {options['session']!r} in namespace {namespace!r}.")
        return keys

    def _other_mode(self, options: dict[str, Any]) -> None:
        if options["session"] is not None:
            keys = self._one(options)
        elif options["rehydrate"]:
            query = ChatSession.objects.filter(delete_requested_at__isnull=True).exclude(
                sync_state=SyncState.LOCAL
            )
            if options["drifted_only"]:
                query = query.filter(sync_state=SyncState.DRIFTED)
            keys = list(query.order_by("pk").values_list("pk", flat=True))
        else:
            keys = active_sessions()
        failed = 0
        drifted: list[str] = []
        with Progress(self.stdout, len(keys), verbosity=options["verbosity"]) as bar:
            failed = self._each(keys, options, bar, drifted)
        self.stdout.write(f"Done: {len(keys) - failed} session(s), {failed} failed.")
        problems = []
        if failed:
            problems.append(f"{failed} session(s) failed; see the errors above")
        if drifted:
            problems.append(f"{len(drifted)} session(s) drifted: {', '.join(drifted)}")
        if problems:
            raise CommandError("; ".join(problems) + ".")

    def _each(
        self, keys: list[int], options: dict[str, Any], bar: Progress, drifted: list[str]
    ) -> int:
        """Pull, verify or rebuild each session; returns how many failed (``drifted`` fills up)."""
        failed = 0
        for index, pk in enumerate(keys, start=1):
            name = str(ChatSession.objects.get(pk=pk))
            if options["pull"]:
                result = pull_session(pk)
                error = result.error or ("busy" if result.busy else "")
                outcome = error or f"{result.added} new message(s)" + (
                    f"; drift: {result.drift}" if result.drift else ""
                )
            elif options["verify"]:
                try:
                    drift = verify_session(pk)
                    error, outcome = "", f"drifted: {drift}" if drift else "in step"
                except MotorheadError as exc:
                    error = outcome = str(exc)
                    drift = ""
                if drift:
                    drifted.append(name)
            else:
                rebuilt = rehydrate_session(pk)
                error = rebuilt.error or ("busy" if rebuilt.busy else "")
                outcome = error or (
                    f"{rebuilt.sent} message(s)"
                    + (" and the summary" if rebuilt.context_sent else "")
                )
            failed += bool(error)
            bar.step(f"[{index}/{len(keys)}] {name}: {outcome}", failed=bool(error))
        return failed

    def _progress(self, index: int, total: int, result: PushResult) -> None:
        session = ChatSession.objects.filter(pk=result.session_pk).first()
        name = str(session) if session else f"#{result.session_pk}"
        if result.busy:
            outcome = "busy (another worker is pushing it)"
        elif result.error:
            outcome = f"{result.state}: {result.error}"
        else:
            outcome = f"{result.pushed} message(s) in {result.batches} batch(es)"
        failed = bool(result.busy or result.error)
        self._bar.step(f"[{index}/{total}] {name}: {outcome}", failed=failed)


def _named(session: str) -> Q:
    # Ids are per owner, so one id may name several users' sessions; the server id names one.
    return Q(session_id=session) | Q(remote_id=session)
