"""Fault injection for the test server: failures, latency and slow compaction.

A request meets at most one fault, chosen when it arrives:

``error``             500 before anything is applied
``reject``            400 before anything is applied (a 4xx no retry can fix)
``drop``              the connection is closed before anything is applied
``apply_then_error``  the request is applied, then answered with a 500
``apply_then_drop``   the request is applied, then the connection is closed
``echo``              500 whose body echoes the request's key headers: raw, JSON-escaped,
                      URL-encoded (``quote``, ``quote_plus``), HTML-escaped and base64
                      (of the key and of ``client_id:key``), as a careless server or proxy
                      might; for tests that a client redacts every form

Queued faults (:meth:`Faults.fail_next`) come first; then ``fail_rate`` and
``apply_then_fail_rate`` draw from a seeded random generator, so a failing run
can be replayed with the same seed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MODES = ("error", "reject", "drop", "apply_then_error", "apply_then_drop", "echo")


@dataclass
class Faults:
    # Share of requests that fail before being applied, and how ("error", "drop", "mixed").
    fail_rate: float = 0.0
    fail_mode: str = "mixed"
    # Share of requests that are applied and then fail, and how ("error", "drop", "mixed").
    apply_then_fail_rate: float = 0.0
    apply_then_fail_mode: str = "mixed"
    # Seconds the server waits after doing the work and before it answers.
    latency: float = 0.0
    # Methods the faults above apply to (None: every method).
    methods: set[str] | None = None
    # Seconds a compaction waits before it reads the window (reproduces its races).
    compaction_delay: float = 0.0
    # The summariser fails: compaction writes nothing and the list keeps growing.
    summarizer_fails: bool = False
    seed: int | None = None
    # Queued faults: [mode, methods, requests to let through first].
    _queue: list[list[Any]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def fail_next(
        self,
        count: int = 1,
        *,
        mode: str = "error",
        methods: Iterable[str] | None = None,
        after: int = 0,
    ) -> None:
        """Make ``count`` matching requests fail with ``mode``, after ``after`` pass unharmed."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; use one of {MODES}")
        wanted = frozenset(method.upper() for method in methods) if methods else None
        with self._lock:
            self._queue.append([mode, wanted, after])
            self._queue.extend([mode, wanted, 0] for _ in range(count - 1))

    def clear(self) -> None:
        """Back to a healthy server (the random generator keeps its state)."""
        with self._lock:
            self._queue.clear()
            self.fail_rate = self.apply_then_fail_rate = 0.0
            self.fail_mode = self.apply_then_fail_mode = "mixed"
            self.latency = self.compaction_delay = 0.0
            self.methods = None
            self.summarizer_fails = False

    def decide(self, method: str) -> str | None:
        """The fault for one incoming request, or None."""
        with self._lock:
            for index, (mode, wanted, after) in enumerate(self._queue):
                if wanted is None or method in wanted:
                    if after:
                        self._queue[index][2] -= 1
                        return None
                    del self._queue[index]
                    return mode
            if not self.applies_to(method):
                return None
            draw = self._random.random()
            if draw < self.fail_rate:
                return self._pick(self.fail_mode, "error", "drop")
            if draw < self.fail_rate + self.apply_then_fail_rate:
                return self._pick(self.apply_then_fail_mode, "apply_then_error", "apply_then_drop")
        return None

    def applies_to(self, method: str) -> bool:
        return self.methods is None or method in {m.upper() for m in self.methods}

    def delay_for(self, method: str) -> float:
        """Seconds of added latency for a request with this method."""
        return self.latency if self.latency and self.applies_to(method) else 0.0

    def _pick(self, mode: str, error: str, drop: str) -> str:
        if mode == "mixed":
            return error if self._random.random() < 0.5 else drop
        return error if mode == "error" else drop
