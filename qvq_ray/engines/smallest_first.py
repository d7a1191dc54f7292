"""One worker thread whose waiting jobs run smallest first.

Why: the transformers engine prepares prompts (tokenizer, image processor) on one thread, as its
fast tokenizer must not be called from two at once. In arrival order, a two-word chat waited
behind every long prompt queued before it, refused ones included; smallest first, it waits for at
most the one job already running. A long prompt waits only while shorter ones keep arriving,
which is the price of a small request's latency, and is bounded by the engine's own admission.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from concurrent.futures import Executor
from typing import Any, Callable


class SmallestFirst:
    """Jobs of one event loop, run one at a time on `executor`, the smallest `size` first (ties in
    arrival order). A job whose caller is cancelled while waiting never runs."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._busy = False

    async def run(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        heapq.heappush(self._waiting, (size, next(self._order), turn))
        self._start_next()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given the thread just as it was cancelled
                self._release()
            raise
        try:
            return await loop.run_in_executor(self.executor, fn, *args)
        finally:
            self._release()

    def _release(self) -> None:
        self._busy = False
        self._start_next()

    def _start_next(self) -> None:
        while not self._busy and self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():  # a cancelled waiter is skipped
                self._busy = True
                turn.set_result(None)
