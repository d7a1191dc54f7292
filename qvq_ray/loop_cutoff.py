"""Detect a repetition loop while a chain of thought is still streaming.

QVQ's known failure is a recursive loop that never reaches an answer and runs to max_tokens
(8192). Stopping it once the tail is the same cycle repeated several times saves those tokens for
a fresh sample. The test is the verifier's own (`qvq_ray.verify.health.periodic_suffix`, linear in
the tail), run on a bounded tail every few dozen characters, with the policy's thresholds.
"""

from __future__ import annotations

from qvq_ray.verify.health import periodic_suffix


class LoopDetector:
    """Feed streamed text; `feed` returns True once the tail is one cycle repeated `repeats` times.

    A cycle is any period up to `max_period` characters; the repeated span must cover at least
    `min_chars` characters, so short legitimate repetitions ("1, 1, 1") never trigger.
    """

    def __init__(self, *, min_chars: int = 200, repeats: int = 4, max_period: int = 1000, check_every: int = 32):
        self.min_chars = min_chars
        self.repeats = repeats
        self.max_period = max_period
        self.check_every = check_every
        self._tail = ""
        self._since_check = 0
        self.looping = False

    def feed(self, delta: str) -> bool:
        if self.looping:
            return True
        self._tail = (self._tail + delta)[-(self.max_period * self.repeats + 1) :]
        self._since_check += len(delta)
        if self._since_check < self.check_every:
            return False
        self._since_check = 0
        self.looping = periodic_suffix(
            self._tail, min_chars=self.min_chars, repeats=self.repeats, max_period=self.max_period
        )
        return self.looping
