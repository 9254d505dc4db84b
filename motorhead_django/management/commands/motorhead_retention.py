"""``manage.py motorhead_retention``: apply the retention policies now (or show what would go)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from motorhead_django import governance
from motorhead_django.management.base import progress_on_stderr


class Command(BaseCommand):
    help = (
        "Delete the sessions (and trim the messages) that MOTORHEAD['RETENTION'] and the "
        "sessions' own retention say are past their time, here and on the server; held "
        "sessions stay. One batch of RETENTION_BATCH sessions per run. Progress goes to "
        "stderr (a bar on a terminal, a line every ten seconds elsewhere; each session at "
        "-v 2, none at -v 0)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            help="For this run only, instead of the policies: delete sessions whose last "
            "activity is older than this many days.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"]
        if days is not None and days < 0:
            raise CommandError("--days must be 0 or more.")
        if options["dry_run"]:
            plan = governance.plan_retention(days=days)
            for session in plan.sessions:
                self.stdout.write(
                    f"would delete session {session.pk} ({session}), "
                    f"last activity {session.updated_at.isoformat()}"
                )
            for session, keep in plan.trims:
                self.stdout.write(
                    f"would trim session {session.pk} ({session}) to its newest {keep} messages"
                )
            self.stdout.write(
                f"Dry run: {len(plan.sessions)} session(s) to delete, {len(plan.trims)} to trim, "
                f"{plan.held} held." + (" More after this batch." if plan.more else "")
            )
            return
        plan = governance.plan_retention(days=days)
        with progress_on_stderr(
            self, len(plan.sessions) + len(plan.trims), options["verbosity"]
        ) as bar:
            result = governance.apply_retention(plan=plan, done=bar.step)
        receipt = result.receipt
        self.stdout.write(
            f"Deleted {result.deleted} session(s), trimmed {result.trimmed_messages} "
            f"message(s), {result.plan.held} held"
            + (f"; receipt {receipt.pk}" if receipt is not None else "")
            + (f"; {result.audit_purged} audit entries purged" if result.audit_purged else "")
            + ("; more after this batch." if result.plan.more else ".")
        )
