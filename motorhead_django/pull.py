"""Temporary: the old import path of the pull; nothing in the package imports it any more.

Not part of the design: every name here lives in :mod:`motorhead_django.engine`
(docs/architecture.md); the merge repoints the callers and deletes this file.
"""

from .engine.imports import import_sessions
from .engine.pulling import active_sessions, pull_session
from .engine.verifying import verify_session

__all__ = ["active_sessions", "import_sessions", "pull_session", "verify_session"]
