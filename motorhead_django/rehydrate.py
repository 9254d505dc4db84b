"""Temporary: the old import path of remote deletes, until governance uses the engine.

Not part of the design: every name here lives in :mod:`motorhead_django.engine`
(docs/architecture.md); the merge repoints the callers and deletes this file.
"""

from .engine.deletion import delete_remote
from .engine.rehydration import rehydrate_session

__all__ = ["delete_remote", "rehydrate_session"]
