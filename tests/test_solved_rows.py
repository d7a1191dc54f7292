"""The per-row progress counter (batch/solved_rows.py) and the progress it feeds (batch/pipeline.Progress)."""

from __future__ import annotations

import asyncio
import io

from qvq_ray.batch.pipeline import Progress
from qvq_ray.batch.solved_rows import SolvedRows, SolvedTally


class _RecordingCounterHandle:
    """A stand-in for the counter actor's handle (named so): records what `.add.remote` was sent."""

    def __init__(self):
        self.sent: list[dict[str, int]] = []
        self.add = self

    def remote(self, counts):
        self.sent.append(counts)


def test_an_engine_actor_tells_the_counter_in_batches_at_most_every_flush():
    handle = _RecordingCounterHandle()

    async def scenario():
        tally = SolvedTally(handle, flush_s=0.05)
        for row in ({"verified": True, "completion_tokens": 5}, {"error": "solve failed: x"}, {"verified": False}):
            tally.add(row)
        assert handle.sent == []  # nothing before the flush
        await asyncio.sleep(0.1)
        tally.add({"verified": True, "completion_tokens": 2})
        await asyncio.sleep(0.1)

    asyncio.run(scenario())
    assert handle.sent == [
        {"rows": 3, "verified": 1, "errors": 1, "completion_tokens": 5},
        {"rows": 1, "verified": 1, "errors": 0, "completion_tokens": 2},
    ]
    counter = SolvedRows()
    for counts in handle.sent:
        counter.add(counts)
    assert counter.counts() == {"rows": 4, "verified": 2, "errors": 1, "completion_tokens": 7}


def test_progress_shows_the_counter_between_part_files_and_the_part_files_when_ahead():
    lines: list[str] = []
    progress = Progress(10, 2, every_s=0.0, printer=lines.append, stream=io.StringIO())
    progress.solved({"rows": 3, "verified": 2, "errors": 1, "completion_tokens": 30})
    assert (progress.done, progress.verified, progress.errors) == (5, 2, 1)
    progress.solved({"rows": 1, "verified": 0, "errors": 0, "completion_tokens": 0})  # a stale read: ignored
    assert progress.done == 5
    progress.add(rows=4, verified=4, errors=0, completion_tokens=40)  # the part files are ahead now
    assert (progress.done, progress.verified, progress.errors) == (6, 4, 0)
    progress.solved({"rows": 12, "verified": 9, "errors": 0, "completion_tokens": 90})  # rows counted twice after a restart
    assert progress.done == 10  # never past the total
    assert [line.split()[1] for line in lines] == ["5/10", "6/10", "10/10"]
