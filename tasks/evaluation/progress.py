"""One line of progress at a time, for long steps that draw no bar (greedy generation over a
split). A log that is not a terminal keeps every line it is given, so: a line at most every
`every_seconds` (30), none for a step that ends sooner, and a closing line when one was written.
Few-shot generation over 512-token abstracts ran more than 10 minutes with no line at all.

    few_shot test: generated 96/512 (1.6/s, about 4 min 20 s left)
    few_shot test: generated 512/512 in 5 min 20 s
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """`42 s`, `4 min 20 s`, `1 h 05 min`."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass
class ProgressLines:
    what: str                      # e.g. "few_shot test: generated"
    total: int
    every_seconds: float = 30.0
    write: Callable[[str], None] = _stderr
    clock: Callable[[], float] = time.monotonic
    _start: float = field(init=False)
    _last: float = field(init=False)
    _written: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._start = self._last = self.clock()

    def __call__(self, done: int) -> None:
        """`done` of `total` finished so far (called after each batch)."""
        now = self.clock()
        elapsed = now - self._start
        if done >= self.total:
            if self._written:
                self.write(f"{self.what} {done}/{self.total} in {duration(elapsed)}")
            return
        if now - self._last < self.every_seconds:
            return
        self._last, self._written = now, True
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f", about {duration((self.total - done) / rate)} left" if rate > 0 else ""
        self.write(f"{self.what} {done}/{self.total} ({rate:.1f}/s{left})")
