"""Temporary: the old import path of the push; nothing in the package imports it any more.

Not part of the design: every name here lives in :mod:`motorhead_django.engine`
(docs/architecture.md); the merge repoints the callers and deletes this file.
"""

from .engine.deletion import delete_on_server
from .engine.passes import PASS_SIZE, drain, due_sessions, push_session, push_sessions
from .engine.results import PushResult
from .engine.resyncing import resync_session

__all__ = [
    "PASS_SIZE",
    "PushResult",
    "delete_on_server",
    "drain",
    "due_sessions",
    "push_session",
    "push_sessions",
    "resync_session",
]
