"""Detect a repetition loop while a chain of thought is still streaming.

QVQ's known failure is a recursive loop that never reaches an answer and runs to max_tokens
(8192). Stopping it once the tail is the same cycle repeated several times saves those tokens for
a fresh sample. The check is cheap string work on a bounded tail, run every few dozen characters.
"""

from __future__ import annotations


class LoopDetector:
    """Feed streamed text; `feed` returns True once the tail is one cycle repeated `repeats` times.

    A cycle is any period from 1 to `max_period` characters; the repeated span must cover at
    least `min_chars` characters, so short legitimate repetitions ("1, 1, 1") never trigger.
    """

    def __init__(self, *, min_chars: int = 200, repeats: int = 4, max_period: int = 1000, check_every: int = 32):
        self.min_chars = min_chars
        self.repeats = repeats
        self.max_period = max_period
        self.check_every = check_every
        self._tail = ""
        self._since_check = 0
        self.period: int | None = None

    def feed(self, delta: str) -> bool:
        if self.period is not None:
            return True
        self._tail = (self._tail + delta)[-(self.max_period * self.repeats + 1) :]
        self._since_check += len(delta)
        if self._since_check < self.check_every:
            return False
        self._since_check = 0
        self.period = find_loop_period(self._tail, min_chars=self.min_chars, repeats=self.repeats, max_period=self.max_period)
        return self.period is not None


def find_loop_period(text: str, *, min_chars: int = 200, repeats: int = 4, max_period: int = 1000) -> int | None:
    """Smallest period p such that text ends with `repeats` copies of its last p characters."""
    n = len(text)
    last = text[-1:] if text else ""
    for period in range(1, min(max_period, n // repeats) + 1):
        if text[n - 1 - period] != last:
            continue  # cheap reject before comparing slices
        span = period * max(repeats, -(-min_chars // period))
        if span > n:
            continue
        unit = text[n - period :]
        if text[n - span :] == unit * (span // period):
            return period
    return None
