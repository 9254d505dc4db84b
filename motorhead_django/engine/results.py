"""What the engine's operations return: one public result type, and the push run's own record."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Scope(enum.Enum):
    """Which copy of a session :func:`motorhead_django.engine.delete` removes."""

    LOCAL = "local"  # ours only: the server keeps its copy
    REMOTE = "remote"  # the server's only: ours stays, marked drifted
    BOTH = "both"  # the server's, then ours (a tombstone until the server confirmed)


@dataclass(frozen=True)
class Result:
    """What one engine operation did for one session (or, for an import, for its namespaces).

    ``done`` says whether the operation did what it was asked (sent, pulled,
    rebuilt, deleted); ``outcome`` says it in words. ``pending`` counts the
    messages still waiting for a push afterwards; ``error`` is the server's
    failure (redacted), "" when there was none.
    """

    action: str  # "push", "pull", "resync", "verify", "rehydrate", "delete", "import"
    session_pk: int  # 0 for an import, which is about namespaces, not one session
    done: bool = False
    outcome: str = ""
    pushed: int = 0  # messages the server confirmed
    pulled: int = 0  # messages brought in from the server
    sessions: int = 0  # an import: sessions imported
    pending: int = 0
    state: str = ""  # the session's sync state afterwards, when the operation read it
    error: str = ""
    busy: bool = False  # another worker held the session's lock: nothing was done
    retry_at: datetime | None = None  # when the failed step is due again
    more: bool = False  # a push: messages arrived while it held the lock, push again
    deferred: bool = False  # a push that may not wait met a compaction: the rest is left
    drift: str = ""  # a pull or verify: what differs on the server
    notes: tuple[str, ...] = ()  # how ambiguous writes were settled, ids an import refused
    batches: int = 0  # a push: the POSTs it took
    summary: bool = False  # a pull: a new summary version came; a rehydrate: the summary went
    skipped: int = 0  # an import: sessions an earlier run imported (not pulled again)


@dataclass
class PushResult:
    """What one push run did for one session."""

    session_pk: int
    pushed: int = 0
    batches: int = 0
    busy: bool = False  # another worker holds the session's push lock
    state: str = ""
    error: str = ""
    retry_at: datetime | None = None
    resolved: list[str] = field(default_factory=list)  # how ambiguous batches were settled
    more: bool = False  # pending messages arrived while the lock was held: push again
    # wait=False, and the server was compacting: the rest is left pending, unsent.
    deferred: bool = False
