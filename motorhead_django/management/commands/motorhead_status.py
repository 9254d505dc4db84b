"""``manage.py motorhead_status``: the sync on one screen (states, lag, last errors, health)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils.timesince import timesince

from motorhead_django import health, redaction, status
from motorhead_django.conf import motorhead_settings


class Command(BaseCommand):
    help = (
        "Show where the sync stands: sessions by state, pending messages, the sync lag, the "
        "last errors and the health of the database, broker and upstream server. Exits with "
        "status 1 when a health check fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--errors", type=int, default=5, metavar="N", help="Show the last N errors (5)."
        )
        parser.add_argument("--json", action="store_true", help="One JSON object, for scripts.")
        parser.add_argument(
            "--no-health", action="store_true", help="Skip the database/broker/upstream checks."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        now = status.snapshot()
        errors = status.last_errors(max(0, options["errors"]))
        checks = {} if options["no_health"] else health.run_checks()
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(now, errors, checks), indent=2))
        else:
            self._screen(now, errors, checks)
        if any(not result["ok"] for result in checks.values()):
            raise SystemExit(1)

    def _screen(self, now: status.SyncStatus, errors: list[Any], checks: dict[str, Any]) -> None:
        out = self.stdout.write
        upstream = motorhead_settings.URL if motorhead_settings.SYNC_ENABLED else None
        shown = redaction.redact(health.without_credentials(upstream)) if upstream else ""
        out(f"Upstream: {shown or 'none (local-only)'}")
        out("Sessions by state:")
        for state, count in now.counts.items():
            if count or self.verbosity >= 2:
                out(f"  {state:<10} {count:>8}")
        out(f"Pending messages: {now.pending_messages} in {now.due} session(s) due now")
        if now.oldest_pending:
            out(f"Sync lag: {timesince(now.oldest_pending)} (oldest pending message)")
        else:
            out("Sync lag: none (nothing pending)")
        if errors:
            out(f"Last errors ({len(errors)}):")
            for session in errors:
                when = timesince(session.updated_at)
                text = " ".join(session.last_error.split())[:160]
                out(f"  {session} [{session.sync_state}, {when} ago]: {text}")
        elif self.verbosity >= 1:
            out("Last errors: none")
        if checks:
            out("Health:")
            for name, result in checks.items():
                verdict = "ok" if result["ok"] else f"FAILED: {result['error']}"
                out(f"  {name:<10} {verdict} ({result['ms']} ms)")


def _as_json(now: status.SyncStatus, errors: list[Any], checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessions": now.counts,
        "pending_messages": now.pending_messages,
        "due": now.due,
        "lag_seconds": round(now.lag.total_seconds(), 3),
        "last_errors": [
            {
                "session_id": s.session_id,
                "namespace": s.namespace,
                "state": s.sync_state,
                "updated_at": s.updated_at.isoformat(),
                "error": s.last_error,
            }
            for s in errors
        ],
        "health": checks,
    }
