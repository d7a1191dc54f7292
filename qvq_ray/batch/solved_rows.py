"""Rows solved so far, counted as the engine actors finish them, so the progress bar moves per row.

Part files land a block at a time (`batch.rows_per_batch` rows, after scoring), and a job's first
one can take as long as its slowest chain of thought: counted from them alone, the bar stood at
`0/N` for minutes. Each engine actor tells one small counter actor (no CPU) what it finished: a
`.remote()` it does not wait for, at most every `FLUSH_S` (many rows per call when rows are
fast). The driver reads the counter twice a second beside the part files' counts.

The part files stay the truth: a row solved again after an actor restart is counted twice here,
so the driver shows the written counts whenever they are ahead and never more than the total.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Seconds an engine actor gathers finished rows before telling the counter.
FLUSH_S = 0.25

COUNT_KEYS = ("rows", "verified", "errors", "completion_tokens")


def row_counts(row: dict[str, Any]) -> dict[str, int]:
    """What progress shows of one output row (the per-row form of results.parts.block_counts)."""
    return {
        "rows": 1,
        "verified": 1 if row.get("verified") else 0,
        "errors": 1 if row.get("error") else 0,
        "completion_tokens": int(row.get("completion_tokens") or 0),
    }


class SolvedRows:
    """The counter: a Ray actor of the job (`ray.remote(num_cpus=0)(SolvedRows)`), one per job."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(COUNT_KEYS, 0)

    def add(self, counts: dict[str, int]) -> None:
        for key in COUNT_KEYS:
            self.totals[key] += int(counts.get(key, 0))

    def counts(self) -> dict[str, int]:
        return dict(self.totals)


class SolvedTally:
    """An engine actor's side: rows finished since the last flush, sent to the counter (a handle
    with `.add.remote`) from the actor's own event loop at most every `flush_s`."""

    def __init__(self, counter: Any, flush_s: float = FLUSH_S):
        self.counter, self.flush_s = counter, flush_s
        self.pending = dict.fromkeys(COUNT_KEYS, 0)
        self._scheduled = False

    def add(self, row: dict[str, Any]) -> None:
        for key, value in row_counts(row).items():
            self.pending[key] += value
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(self.flush_s, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, self.pending = self.pending, dict.fromkeys(COUNT_KEYS, 0)
        if pending["rows"]:
            try:
                self.counter.add.remote(pending)  # not awaited: progress never slows a solve
            except Exception:  # the driver (and its counter) is gone: the job is ending anyway
                pass
