"""Errors raised by the client, the memory core and the sync engine.

The hierarchy answers the two questions the sync engine asks of a failure:

* **may it have been applied?** (:func:`may_have_applied`) A timeout, a dropped
  connection, a 5xx or an unreadable answer can follow a write the server
  already made: the engine reads the server's window before sending again.
  A refused connection or a 4xx cannot.
* **can a retry fix it?** (:func:`is_retryable`) Only what is transient. The
  answer is "no" for anything not listed, so an unknown error never loops.

Transport errors are also the matching ``requests`` exception, so existing
``except requests.ConnectionError`` handlers still catch them. Configuration
errors are ``ImproperlyConfigured`` and sit outside :class:`MotorheadError`, so
no retry path swallows them. No text here ever contains the API key: the client
never passes it in, and redacts response bodies (:mod:`motorhead_django.redaction`,
every encoding) before it builds an error.
"""

from __future__ import annotations

from typing import Any

import requests
from django.core.exceptions import ImproperlyConfigured

# Statuses that a later retry can fix although they are 4xx.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})


class MotorheadError(Exception):
    """Root of every error about talking to Motorhead or writing memory."""

    def __init__(
        self,
        message: str,
        *,
        session_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.session_id = session_id
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        return f"{where}{self.message}"


class MotorheadValidationError(MotorheadError, ValueError):
    """Input we refuse before anything is written or sent.

    ``errors`` maps a field (``"messages"``, ``"messages[2].role"``,
    ``"session_id"``) to its message, ready for a 400 response.
    """

    def __init__(self, errors: dict[str, str], **kwargs: Any) -> None:
        self.errors = dict(errors)
        text = "; ".join(f"{field}: {message}" for field, message in self.errors.items())
        super().__init__(text, **kwargs)


class MotorheadSessionExistsError(MotorheadValidationError):
    """:func:`memory.create_session` lost to an existing session with this id in this scope
    (the database's unique constraint decided; the existing session is untouched)."""

    def __init__(self, message: str = "A session with this id already exists.", **kwargs: Any):
        super().__init__({"session_id": message}, **kwargs)


class MotorheadSessionDeletingError(MotorheadValidationError):
    """A write to a session id whose delete is still pending on the server (a tombstone).

    ``retry_after``: seconds until the next delete attempt is due (a hint)."""

    message = "This session is being deleted on the server; retry after it is gone."

    def __init__(self, retry_after: int = 5, **kwargs: Any) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__({"session_id": self.message}, **kwargs)


class MotorheadLegalHoldError(MotorheadError):
    """A delete refused because the session, or its owner, is under a legal hold."""


class MotorheadConfigurationError(ImproperlyConfigured):
    """The ``MOTORHEAD`` setting does not allow this (for example, no URL)."""


class MotorheadTransientError(MotorheadError):
    """A failure a later retry can fix."""


class MotorheadConnectError(MotorheadTransientError, requests.ConnectionError):
    """No connection could be made: nothing was sent, nothing was applied."""


class MotorheadAmbiguousError(MotorheadTransientError):
    """The request went out and no clear answer came back: a write may have been applied."""


class MotorheadTimeoutError(MotorheadAmbiguousError, requests.Timeout):
    """No answer within the read timeout."""


class MotorheadDisconnectedError(MotorheadAmbiguousError, requests.ConnectionError):
    """The connection dropped after the request was sent."""


class MotorheadResponseError(MotorheadAmbiguousError):
    """The server answered, but not with what the contract says (not JSON, wrong shape)."""


class MotorheadAPIError(MotorheadError):
    """The server answered with an error status; ``status`` and ``body`` say which."""

    def __init__(self, message: str, *, status: int, body: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status
        self.body = body


class MotorheadClientError(MotorheadAPIError):
    """A 4xx: the server refused the request (bad input, bad credentials)."""


class MotorheadServerError(MotorheadAPIError, MotorheadAmbiguousError):
    """A 5xx. Motorhead can fail a POST after writing part of it, so it may have applied."""


class CompactionTimeout(MotorheadTransientError):
    """The server did not summarise its full window in time; pushing more would lose messages.

    Retryable: a slow summariser catches up, and the next run reads the window
    again before it sends anything.
    """


class WindowTooLarge(MotorheadError):
    """The server returned more than ``WINDOW_SIZE + 1`` messages: its window is larger than ours.

    No compaction would come at our ``WINDOW_SIZE``, so waiting for one is
    pointless; a retry cannot fix it either (closed: not retryable). The text
    names both sizes and the setting to change.
    """

    def __init__(self, *, seen: int, window: int, probe: bool = False, **kwargs: Any) -> None:
        self.seen = seen
        self.window = window
        where = " of a probe session" if probe else ""
        super().__init__(
            f"the server returned {seen} messages{where}, more than WINDOW_SIZE + 1 = "
            f"{window + 1}: "
            f"its window (MOTORHEAD_MAX_WINDOW_SIZE) is larger than MOTORHEAD['WINDOW_SIZE'] "
            f"= {window}. HINT: set MOTORHEAD['WINDOW_SIZE'] to the server's "
            "MOTORHEAD_MAX_WINDOW_SIZE (12 unless it was changed), then push again",
            **kwargs,
        )


class SessionDrifted(MotorheadError):
    """A verify found sessions whose server window disagrees with ours; ``drifted`` names them."""

    def __init__(self, drifted: dict[str, str]) -> None:
        self.drifted = dict(drifted)
        names = "; ".join(f"{name}: {drift}" for name, drift in self.drifted.items())
        super().__init__(f"{len(self.drifted)} session(s) drifted: {names}")


def may_have_applied(exc: BaseException) -> bool:
    """Whether a write that failed with ``exc`` may still have reached the server's store."""
    return isinstance(exc, MotorheadAmbiguousError)


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying later can succeed. Closed by default: unknown errors are final."""
    if isinstance(exc, MotorheadClientError):
        return exc.status in _RETRYABLE_CLIENT_STATUSES
    return isinstance(exc, MotorheadTransientError)
