"""``manage.py motorhead_pull``: bring the server's window, summary and tokens in now."""

from __future__ import annotations

from typing import Any

from motorhead_django.management import _engine
from motorhead_django.management.base import SessionsCommand


class Command(SessionsCommand):
    help = (
        "Pull the server's window, summary and tokens into the active sessions (written "
        "within MOTORHEAD['ACTIVE_PERIOD'], least recently pulled first), or --session. "
        "Exits with status 1 when a session could not be pulled. See docs/pull.md."
    )
    verb = "pull"
    session_help = "Pull only this session"

    def default_sessions(self, options: dict[str, Any]) -> list[int]:
        return _engine.to_pull()
