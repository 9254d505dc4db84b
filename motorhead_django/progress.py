"""Progress of long management commands (import, pull, verify, rehydrate, push).

On a terminal, with the ``progress`` extra (rich) installed, a bar with the
count, the rate and the time left; the per-item lines show above it at
``-v 2`` (failures always). Anywhere else (a log file, cron, CI, or without
rich) the per-item lines as before, plus a plain line every
:data:`INTERVAL` seconds with the count, rate and ETA. ``-v 0`` prints
failures only.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

# Seconds between the plain progress lines when the output is not a terminal.
INTERVAL = 10.0


def _rich_available() -> bool:
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class Progress:
    """Count ``total`` items of work; ``step(line)`` after each one.

    ``stdout`` is a command's ``self.stdout`` (an ``OutputWrapper``); ``tty``
    overrides what ``stdout.isatty()`` says (for tests); ``start`` items are done
    already (a resumed run).
    """

    def __init__(
        self,
        stdout: Any,
        total: int,
        *,
        what: str = "session",
        verbosity: int = 1,
        item_verbosity: int = 1,
        tty: bool | None = None,
        start: int = 0,
    ) -> None:
        self.stdout = stdout
        self.total = total
        self.what = what
        self.verbosity = verbosity
        # The verbosity from which per-item lines are printed when there is no bar.
        self.item_verbosity = item_verbosity
        # Items done before this run (a resumed import): counted, not in the rate.
        self.start = self.done = start
        self.started = time.monotonic()
        self._last_line = self.started
        self._bar: Any = None
        self._task: Any = None
        is_tty = stdout.isatty() if tty is None else tty
        if is_tty and verbosity >= 1 and total > 1 and _rich_available():
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as Bar,
        )

        # The wrapped stream, not the OutputWrapper: rich writes control codes, not lines.
        stream = getattr(self.stdout, "_out", self.stdout)
        console = Console(file=stream, force_terminal=True)
        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            f"{self.what}s", total=self.total, completed=self.start, rate=""
        )

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return (self.done - self.start) / elapsed if elapsed > 0 else 0.0

    def status_line(self) -> str:
        rate = self.rate
        eta = _duration((self.total - self.done) / rate) if rate > 0 else "?"
        return f"Progress: {self.done}/{self.total} {self.what}(s), {rate:.1f}/s, ETA {eta}"

    def step(self, line: str = "", *, failed: bool = False) -> None:
        """One item done; ``line`` says how it went (printed per the rules above)."""
        self.done += 1
        if self._bar is not None:
            if line and (failed or self.verbosity >= 2):
                self._bar.console.print(line, markup=False, highlight=False)
            self._bar.update(self._task, advance=1, rate=f"{self.rate:.1f}/s")
            return
        if line and (failed or self.verbosity >= self.item_verbosity):
            self.stdout.write(line)
        now = time.monotonic()
        if self.verbosity >= 1 and self.done < self.total and now - self._last_line >= INTERVAL:
            self._last_line = now
            self.stdout.write(self.status_line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
