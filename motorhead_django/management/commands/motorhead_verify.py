"""``manage.py motorhead_verify``: compare the sessions with the server; mark drift."""

from __future__ import annotations

from typing import Any

from motorhead_django.management import _engine
from motorhead_django.management.base import SessionsCommand


class Command(SessionsCommand):
    help = (
        "Compare the active sessions (or --session) with the server, read-only, and mark "
        "each one that differs as drifted. Exits with status 1 naming each session that "
        "drifted or could not be read; motorhead_rehydrate --drifted-only rebuilds them."
    )
    verb = "verify"
    session_help = "Verify only this session"

    def default_sessions(self, options: dict[str, Any]) -> list[int]:
        return _engine.to_pull()
