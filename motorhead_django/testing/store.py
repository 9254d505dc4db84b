"""The test server's memory: Motorhead's Redis keys and its compaction, in process.

Each structure mirrors one Redis key of the real server (docs/testing.md and
MOTORHEAD_API.md section 3): ``session:{id}`` is a list whose index 0 is the
newest ``"{role}: {content}"`` line, ``context:{id}`` and ``tokens:{id}`` are
strings, ``sessions[:{ns}]`` are sorted sets scored by the second of the last
POST. The LLM summariser is replaced by a deterministic stand-in, and the
store records which lines went through it and which were trimmed without it,
so tests can see what a real server would have lost.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .faults import Faults

# reducer.rs: 4096 - 512 (completion) - 230 (prompt) tokens per summary call.
SUMMARY_TOKEN_BUDGET = 3354
MAX_LTM_RESULTS = 10

Summarizer = Callable[[str | None, list[str]], tuple[str, int]]


def approximate_tokens(text: str) -> int:
    """A stand-in for tiktoken's p50k_base count: about four characters a token."""
    return max(1, math.ceil(len(text) / 4))


def default_summarizer(previous: str | None, lines: list[str]) -> tuple[str, int]:
    """Deterministic stand-in for the LLM's progressive summary.

    Returns the new summary and the tokens "spent" (prompt + completion). The
    text keeps the previous summary's tail and names the lines it saw, so a test
    can tell one summary version from the next.
    """
    if not lines:
        return previous or "NONE", approximate_tokens(previous or "")
    seen = "; ".join(lines)
    summary = f"{previous} | {seen}" if previous and previous != "NONE" else seen
    if len(summary) > 2000:
        summary = "…" + summary[-1999:]
    return summary, approximate_tokens((previous or "") + seen) + approximate_tokens(summary)


@dataclass
class LongTermEntry:
    session: str
    role: str
    content: str


@dataclass
class SessionTrace:
    """What happened to one session's lines on this server (for tests)."""

    summarized: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    compactions: int = 0
    summaries: list[str] = field(default_factory=list)


class MotorheadStore:
    """The Redis state of one Motorhead server, guarded by one lock."""

    def __init__(
        self,
        *,
        window_size: int = 12,
        long_term_memory: bool = False,
        summarizer: Summarizer = default_summarizer,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
    ) -> None:
        self.window_size = window_size
        self.long_term_memory = long_term_memory
        self.summarizer = summarizer
        self.clock = clock
        self.lock = threading.RLock()
        self.lists: dict[str, list[str]] = {}
        self.contexts: dict[str, str] = {}
        self.tokens: dict[str, int] = {}
        self.sorted_sets: dict[str, dict[str, int]] = {}
        self.ltm: list[LongTermEntry] = []
        self.traces: dict[str, SessionTrace] = {}
        # The server's in-process "compaction running" flags, and their threads.
        self._compacting: set[str] = set()
        self._threads: list[threading.Thread] = []
        # Compaction delay and summariser failures come from here.
        self.faults = faults or Faults()

    # -- routes' effects --------------------------------------------------------

    def read_memory(self, session_id: str) -> tuple[list[str], str | None, int]:
        """LRANGE 0 window (inclusive: window + 1 lines) + MGET context tokens."""
        with self.lock:
            lines = list(self.lists.get(session_id, [])[: self.window_size + 1])
            return lines, self.contexts.get(session_id), self.tokens.get(session_id, 0)

    def set_context(self, session_id: str, context: str) -> None:
        with self.lock:
            self.contexts[session_id] = context

    def touch_session(self, session_id: str, namespace: str | None) -> None:
        """ZADD sessions[:ns] now id."""
        with self.lock:
            key = f"sessions:{namespace}" if namespace is not None else "sessions"
            self.sorted_sets.setdefault(key, {})[session_id] = int(self.clock())

    def push_lines(self, session_id: str, lines: list[str]) -> int:
        """LPUSH: the batch goes in front, reversed. Returns the new length."""
        with self.lock:
            current = self.lists.setdefault(session_id, [])
            current[:0] = reversed(lines)
            self.traces.setdefault(session_id, SessionTrace())
            return len(current)

    def index_long_term(self, session_id: str, pairs: list[tuple[str, str]]) -> None:
        with self.lock:
            self.ltm.extend(LongTermEntry(session_id, role, content) for role, content in pairs)

    def delete(self, session_id: str, namespace: str | None) -> None:
        with self.lock:
            key = f"sessions:{namespace}" if namespace is not None else "sessions"
            self.sorted_sets.get(key, {}).pop(session_id, None)
            self.lists.pop(session_id, None)
            self.contexts.pop(session_id, None)
            self.tokens.pop(session_id, None)

    def list_sessions(self, namespace: str | None, start: int, end: int) -> list[str]:
        """ZRANGE key start end: ascending score, ties by id bytes, Redis index rules."""
        with self.lock:
            key = f"sessions:{namespace}" if namespace is not None else "sessions"
            members = self.sorted_sets.get(key, {})
            ordered = sorted(members, key=lambda m: (members[m], m.encode()))
        return _redis_range(ordered, start, end)

    def search(self, session_id: str, text: str) -> list[tuple[str, str, float]]:
        """A stand-in for the RediSearch KNN query: bag-of-words cosine distance."""
        with self.lock:
            # TAG matching ignores case (MOTORHEAD_API.md section 5).
            entries = [e for e in self.ltm if e.session.lower() == session_id.lower()]
        query = _bag(text)
        scored = [
            (e.role, e.content, round(_cosine_distance(query, _bag(e.content)), 6)) for e in entries
        ]
        scored.sort(key=lambda item: item[2])
        return scored[:MAX_LTM_RESULTS]

    # -- compaction -------------------------------------------------------------

    def maybe_compact(self, session_id: str, length: int) -> None:
        """After a POST: start a compaction when the list outgrew the window."""
        with self.lock:
            if length <= self.window_size or session_id in self._compacting:
                return
            self._compacting.add(session_id)
            thread = threading.Thread(
                target=self._compact, args=(session_id,), name=f"compact-{session_id}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def _compact(self, session_id: str) -> None:
        try:
            if self.faults.compaction_delay:
                time.sleep(self.faults.compaction_delay)
            half = self.window_size // 2
            with self.lock:
                # LRANGE half window + GET context, newest first.
                read = self.lists.get(session_id, [])
                batch, read_length = list(read[half : self.window_size + 1]), len(read)
                previous = self.contexts.get(session_id)
            if self.faults.summarizer_fails:
                return  # an OpenAI error: nothing is trimmed or written
            summary, spent = previous, 0
            for group in _token_batches(batch):
                summary, used = self.summarizer(summary, list(reversed(group)))
                spent += used
            with self.lock:
                current = self.lists.get(session_id, [])
                trace = self.traces.setdefault(session_id, SessionTrace())
                trace.summarized.extend(reversed(batch))
                # Only LPUSH can touch the same list meanwhile, so the batch now starts
                # that many places further down. By position, since lines can repeat.
                start = len(current) - read_length + half if current is read else None
                trace.dropped.extend(
                    current[index]
                    for index in range(len(current) - 1, half, -1)
                    if start is None or not start <= index < start + len(batch)
                )
                trace.compactions += 1
                trace.summaries.append(summary or "")
                # LTRIM 0 half, SET context, INCRBY tokens.
                if session_id in self.lists:
                    del current[half + 1 :]
                self.contexts[session_id] = summary if summary is not None else "NONE"
                self.tokens[session_id] = self.tokens.get(session_id, 0) + spent
        finally:
            with self.lock:
                self._compacting.discard(session_id)

    def wait_for_compactions(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                threads = [t for t in self._threads if t.is_alive()]
                self._threads = threads
            if not threads:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"compactions still running after {timeout}s")
            threads[0].join(remaining)

    def wipe(self) -> None:
        """FLUSHALL: what a lost Redis does to a Motorhead server."""
        with self.lock:
            self.lists.clear()
            self.contexts.clear()
            self.tokens.clear()
            self.sorted_sets.clear()
            self.ltm.clear()


def split_line(line: str) -> tuple[str, str] | None:
    """A stored line back into (role, content), split at the first ": "; None if it has none."""
    role, sep, content = line.partition(": ")
    return (role, content) if sep else None


def _token_batches(newest_first: list[str]) -> list[list[str]]:
    """reducer.rs batching: accumulate newest first while within the token budget."""
    batches: list[list[str]] = []
    current: list[str] = []
    total = 0
    for line in newest_first:
        size = approximate_tokens(line)
        if total + size > SUMMARY_TOKEN_BUDGET:
            # An oversized single line still makes a call with an empty batch first.
            batches.append(current)
            current, total = [], 0
        current.append(line)
        total += size
    if current:
        batches.append(current)
    return batches or [[]]


def _redis_range(items: list[str], start: int, end: int) -> list[str]:
    length = len(items)
    if start < 0:
        start = max(0, length + start)
    if end < 0:
        end = length + end
    end = min(end, length - 1)
    return items[start : end + 1] if start <= end else []


_WORD = re.compile(r"\w+", re.UNICODE)


def _bag(text: str) -> Counter[str]:
    return Counter(word.lower() for word in _WORD.findall(text))


def _cosine_distance(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(a[word] * b[word] for word in a.keys() & b.keys())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return 1.0 - dot / norm if norm else 1.0
