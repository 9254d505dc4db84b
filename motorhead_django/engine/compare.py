"""Lining the server's window up with our history (the server has no message ids).

The window is matched with our synced history by content; docs/pull.md says
what this can and cannot decide. Pure functions: used by the pull and the verify.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from motorhead_django import redact
from motorhead_django.models import ChatMessage

from .settle import Pair


@dataclass
class Comparison:
    """How the server's window lines up with our synced history."""

    # Messages only the server has, each with the local sequence it follows.
    extras: list[tuple[int, Pair]] = field(default_factory=list)
    missing: int = 0  # our synced messages the window should show and does not
    wiped: bool = False  # the server has nothing, and we have synced messages
    overlap: bool = True  # False: nothing in the window matches our history
    through: int = 0  # newest local sequence matched in the window

    def describe(self, *, with_extras: bool) -> str:
        parts = []
        if self.wiped:
            parts.append("the server has no messages (wiped, flushed or deleted)")
        if self.missing:
            parts.append(f"{self.missing} local message(s) missing from the server's window")
        if not self.overlap:
            parts.append("nothing in the server's window is in the local history")
        if with_extras and self.extras:
            parts.append(f"{len(self.extras)} message(s) on the server not in the local history")
        return "; ".join(parts)


def compare(window: list[Pair], synced: list[ChatMessage]) -> Comparison:
    """Line up the server's window (oldest first) with our synced history's tail.

    The longest common subsequence of the two, matched as late as possible,
    says which window entries are ours; the others were written by other
    clients and are placed after the nearest earlier match (or before the
    nearest later one).
    """
    result = Comparison()
    if not window:
        result.wiped = bool(synced)
        return result
    tail = synced[-(len(window) + 1) :]
    pairs = redact.pairs(tail)  # as they were sent
    matches = _match(window, pairs)
    if not matches:
        result.overlap = not tail
        after = tail[-1].sequence if tail else 0
        result.extras = [(after, entry) for entry in window]
        return result
    matched = dict(matches)  # window index -> tail index
    first_tail = matches[0][1]
    result.missing = sum(1 for j in range(first_tail, len(tail)) if j not in matched.values())
    result.through = tail[matches[-1][1]].sequence
    anchor = tail[first_tail].sequence - 1  # extras before the first match go before it
    for index, entry in enumerate(window):
        if index in matched:
            anchor = tail[matched[index]].sequence
        else:
            result.extras.append((anchor, entry))
    return result


def _match(window: list[Pair], tail: list[Pair]) -> list[tuple[int, int]]:
    """LCS of two short lists, as (window index, tail index), preferring late matches."""
    rows, cols = len(window), len(tail)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows):
        for j in range(cols):
            if window[i] == tail[j]:
                table[i + 1][j + 1] = table[i][j] + 1
            else:
                table[i + 1][j + 1] = max(table[i][j + 1], table[i + 1][j])
    matches, i, j = [], rows, cols
    while i and j:
        if window[i - 1] == tail[j - 1] and table[i][j] == table[i - 1][j - 1] + 1:
            matches.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i - 1][j] >= table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return matches[::-1]
