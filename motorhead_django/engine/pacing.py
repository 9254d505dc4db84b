"""Pacing the server: its window's size, rebuilding its copy, the back-off between retries.

Motorhead compacts a session once its list passes ``WINDOW_SIZE``; our batches
never take it past ``WINDOW_SIZE + 1`` and wait for the compaction, so every
message passes through its summariser. These helpers are shared by the pusher,
the rehydration and the remote delete.
"""

from __future__ import annotations

import logging
import random
import uuid

from motorhead_django.client import MotorheadClient
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadError, WindowTooLarge
from motorhead_django.models import ChatSession

from .settle import Pair

# The name operators' logging settings know, and redaction.LOGGERS filters.
logger = logging.getLogger("motorhead_django.sync")

# Server windows already probed in this process: (url, WINDOW_SIZE) -> the server's is larger.
_probed_windows: dict[tuple[str, int], bool] = {}


def check_server_window(
    client: MotorheadClient, window: int, *, session_id: str | None = None
) -> None:
    """Raise :class:`WindowTooLarge` if the server keeps more than ``window + 1`` messages.

    A list at ``window + 1`` that is not compacted means either a slow or
    failing summariser or a server window larger than ours; the session
    itself cannot tell them apart without going past ``window + 1``. So,
    once per process and server, a scratch session gets ``window + 2``
    messages: a server whose window is larger returns them all, one whose
    window is ours returns at most ``window + 1``. The scratch session is
    deleted at once (a compaction it started may leave its context and
    tokens keys behind; it is never listed). An unreachable server decides
    nothing: the wait goes on.
    """
    key = (client.url, window)
    if key not in _probed_windows:
        probe = f"motorhead-django-window-probe-{uuid.uuid4().hex}"
        try:
            client.add_memory(probe, [("Human", "window probe")] * (window + 2))
            seen = len(client.get_memory(probe).messages)
            client.delete_memory(probe)
        except MotorheadError as exc:
            logger.info("Could not probe the server's window: %s", exc)
            return
        _probed_windows[key] = seen > window + 1
        if _probed_windows[key]:
            logger.error(
                "The Motorhead server at %s keeps more than WINDOW_SIZE + 1 = %d messages",
                client.url,
                window + 1,
            )
    if _probed_windows[key]:
        raise WindowTooLarge(seen=window + 2, window=window, probe=True, session_id=session_id)


def send_window(
    client: MotorheadClient, session: ChatSession, pairs: list[Pair], context: str | None
) -> None:
    """Replace the server's copy of a session: a DELETE, then ``pairs`` with ``context``.

    ``pairs`` (oldest first, at most ``WINDOW_SIZE``) go in ``BATCH_SIZE``
    batches, the context with the first, so no compaction runs and the
    summary arrives as sent. A failure half-way is repaired by running it
    again (it starts with the DELETE). Shared by the push's rebuild of a
    session in doubt and :func:`motorhead_django.engine.rehydrate`.
    """
    namespace = session.namespace or None
    client.delete_memory(session.remote_id, namespace=namespace)
    size = motorhead_settings.BATCH_SIZE
    for start in range(0, len(pairs), size):
        client.add_memory(
            session.remote_id,
            pairs[start : start + size],
            context=context if start == 0 else None,
            namespace=namespace,
        )


def backoff_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped, full jitter."""
    ceiling = min(
        motorhead_settings.RETRY_BACKOFF_MAX, motorhead_settings.RETRY_BACKOFF * 2 ** (attempt - 1)
    )
    return random.uniform(ceiling / 2, ceiling)
