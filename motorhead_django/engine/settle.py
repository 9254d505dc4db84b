"""Settling an ambiguous write: what the server's window says landed.

A POST that timed out, lost its connection or got a 5xx may have been
applied. Before anything more is sent the pusher reads the server's window,
and these pure functions decide from it, when exactly one outcome fits, how
many of the in-flight messages landed (the rule table is in docs/sync.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from motorhead_django.exceptions import MotorheadAPIError, MotorheadError, MotorheadResponseError

Pair = tuple[str, str]


@dataclass(frozen=True)
class WindowState:
    """What the server showed of a session: its list's length, its tokens, its messages.

    ``length`` is what GET returned (it returns at most ``WINDOW_SIZE + 1``,
    and our pacing never takes the list further); ``messages`` are oldest
    first. ``tokens`` only grow, and only when a compaction ends.
    """

    length: int
    tokens: int
    messages: tuple[Pair, ...] = ()


@dataclass(frozen=True)
class Observed:
    """How many in-flight messages a window read shows as applied; None: it cannot tell."""

    landed: int | None
    why: str


def _is_over(exc: MotorheadError) -> bool:
    """Whether the failed request is over on the server: what it applied, it has applied.

    The server answered (a 5xx, an unreadable body) once its handler ended;
    a timeout, a dropped connection or a gateway's 504 may leave it running.
    Motorhead's own 500 comes from a failed Redis command before the LPUSH
    or of it (MOTORHEAD_API.md section 2.4), so it usually means "not
    applied", but not always (a Redis connection lost after the LPUSH went
    out, a proxy in between): the window still decides.
    """
    if isinstance(exc, MotorheadAPIError):
        return exc.status != 504
    return isinstance(exc, MotorheadResponseError)


def landed_count(
    before: WindowState | None,
    after: WindowState,
    earlier: list[Pair],
    inflight: list[Pair],
    *,
    window: int,
) -> Observed:
    """What a window read after an ambiguous write says about the in-flight messages.

    ``before`` is the server just before the one POST that carried them all
    (one LPUSH: all of them landed or none), or None when an earlier run sent
    them, maybe in several POSTs (any prefix may have landed). ``earlier`` is
    our history just before them. Each possible outcome is checked against
    everything the server shows, and the write is settled only when exactly
    one fits (the rule table is in docs/sync.md):

    * content: the window is the newest part of the server's list, so it is a
      tail of ``earlier + inflight[:k]`` (an empty window: nothing landed);
    * length, when ``before`` is known: with no compaction since (the same
      tokens) the list grew by exactly ``k``; a compaction that ended since
      (more tokens) can only have been started by our batch, so the list
      then went past the window (``before.length + k > window``).

    When the length rules out every outcome the content allows, the content
    alone decides if it allows exactly one (a compaction caught half-way),
    unless the window is empty where it was not: the server lost the
    session (cannot tell). When no outcome fits at all,
    another client wrote meanwhile: the longest prefix whose end the window
    holds decides, unless those messages repeat our earlier ones.
    Several outcomes fitting, as in a conversation that repeats itself
    ("ok" / "ok"), is "cannot tell" (``landed=None``): never a guess.
    """
    candidates = [0, len(inflight)] if before is not None else list(range(len(inflight) + 1))
    messages = list(after.messages)
    # An empty window: whatever landed would show (a compaction keeps half the window).
    by_content = [
        k for k in candidates if (messages or not k) and _is_tail(messages, earlier + inflight[:k])
    ]
    fits, why = by_content, "content"
    if before is not None:
        if after.tokens != before.tokens:
            fits = [k for k in fits if before.length + k > window]
            why = "content and a compaction since"
        else:
            fits = [k for k in fits if after.length == before.length + k]
            why = "content and the window's length"
    if len(fits) == 1:
        return Observed(fits[0], why)
    if len(fits) > 1:
        return Observed(None, f"{len(fits)} outcomes fit the window")
    if before is not None and before.length and not messages:
        return Observed(None, "the server lost the session")
    if len(by_content) == 1:
        # The length moved otherwise (a compaction caught half-way): the content still tells.
        return Observed(by_content[0], "content alone")
    if by_content:
        return Observed(None, f"{len(by_content)} outcomes fit the window")
    matches = [k for k in candidates if k and _ends_in(messages, inflight[:k])]
    if not matches:
        return Observed(0, "another writer: none of our messages is in the window")
    if set(inflight[: max(matches)]) & set(earlier):
        # Our earlier messages say the same: what the window holds may be theirs.
        return Observed(None, "another writer, and our messages repeat")
    return Observed(max(matches), "another writer: our messages' end is in the window")


def _ends_in(window: list[Pair], prefix: list[Pair]) -> bool:
    """Whether the window holds ``prefix``'s end, matched back to its start or the window's."""
    k = len(prefix)
    for end in range(len(window) - 1, -1, -1):
        span = min(end + 1, k)
        if window[end - span + 1 : end + 1] == prefix[k - span : k]:
            return True
    return False


def landed_prefix(
    window: list[tuple[str, str]],
    earlier: list[tuple[str, str]],
    inflight: list[tuple[str, str]],
) -> int:
    """How many of the in-flight messages the server's window (oldest first) shows as applied.

    ``earlier`` is our history just before them. They were sent in order, so
    what landed is a prefix: the longest ``k`` for which the window is a tail
    of ``earlier + inflight[:k]`` (the window is always the newest part of the
    server's list, compaction or not). Preferring the longest prefix means a
    conversation that repeats itself exactly is counted as landed: no duplicate
    on the server rather than a resend. When no prefix fits (another client
    wrote meanwhile, the server was wiped), a prefix counts as landed if the
    window holds its end, matching backwards up to the window's start or over
    the whole prefix (what follows it there is the other writer's).
    """
    if not window:
        return 0  # whatever landed would show: an empty list means nothing did
    for k in range(len(inflight), -1, -1):
        if _is_tail(window, earlier + inflight[:k]):
            return k
    for k in range(len(inflight), 0, -1):
        for end in range(len(window) - 1, -1, -1):
            span = min(end + 1, k)  # back to the window's start, or the whole prefix
            if window[end - span + 1 : end + 1] == inflight[k - span : k]:
                return k
    return 0


def _is_tail(window: list[tuple[str, str]], history: list[tuple[str, str]]) -> bool:
    return len(window) <= len(history) and history[len(history) - len(window) :] == window
