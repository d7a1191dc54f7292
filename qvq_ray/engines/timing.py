"""What an engine measured of one sample, carried to the ingress on its Completion.

The /metrics route renders the ingress replica's registry, and engine replicas are other processes
(several, each serving some of the requests): so an engine measures each sample where it runs it
(queue time, time to first token, the gaps between its tokens) and the measurement travels back
with the sample's Completion, to be observed by the ingress that answered the request
(serve/metrics.py). The inter-token gaps travel as counts per histogram bucket and their sum, so a
long generation costs a few numbers, not one float per token.

The bucket boundaries are vLLM's (vllm/v1/metrics/loggers.py), so a vLLM dashboard's quantiles read
the same here.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

from pydantic import BaseModel, Field

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0, 160.0, 640.0, 2560.0,
)
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
)


def token_buckets(max_value: int) -> tuple[int, ...]:
    """vLLM's 1-2-5 buckets up to `max_value` (its token-count histograms use max_model_len)."""
    out: list[int] = []
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale > max_value:
                return tuple(out)
            out.append(m * scale)
        scale *= 10


class EngineTiming(BaseModel):
    """One sample's timing as its engine measured it (seconds, from the engine's own clock)."""

    queue_s: float | None = Field(None, description="From joining the engine's queue to the start of its batch (None: not known).")
    ttft_s: float | None = Field(None, description="From the request reaching the engine to its first generated token.")
    e2e_s: float | None = Field(None, description="From the request reaching the engine to its last generated token.")
    itl_counts: list[int] = Field(
        default_factory=list, description="Gaps between successive generated tokens, counted per ITL_BUCKETS bucket (+Inf last)."
    )
    itl_sum_s: float = Field(0.0, description="Sum of those gaps.")

    @property
    def itl_count(self) -> int:
        return sum(self.itl_counts)


def timing_from_token_times(arrived: float, token_times: Sequence[float], queue_s: float | None = None) -> EngineTiming:
    """The timing of a sample that reached the engine at `arrived` and whose tokens were generated at
    `token_times` (one per token, in order): len(token_times) - 1 inter-token gaps."""
    counts = [0] * (len(ITL_BUCKETS) + 1)
    total = 0.0
    for before, after in zip(token_times, token_times[1:]):
        gap = max(0.0, after - before)
        counts[bisect_left(ITL_BUCKETS, gap)] += 1  # Prometheus buckets are `le`: a gap on a bound is in it
        total += gap
    return EngineTiming(
        queue_s=None if queue_s is None else max(0.0, queue_s),
        ttft_s=max(0.0, token_times[0] - arrived) if token_times else None,
        e2e_s=max(0.0, token_times[-1] - arrived) if token_times else None,
        itl_counts=counts if token_times else [],
        itl_sum_s=total,
    )
