"""Prometheus metrics of one ingress replica, served as text at `GET /metrics` (vLLM's route).

Requests by route and status, request latency (to the last byte, for streams), prompt and
completion tokens, the engine's running and waiting requests (read at scrape time from a replica,
bounded by serve.readiness_timeout_s), readiness, liveness and saturation as /health judges them
(serve/health.py), and for /v1/solve: attempts by verification outcome and re-samples. Each
ingress replica counts its own traffic (a registry per replica); Prometheus sums over replicas.

Per generated sample of /v1/chat/completions and /v1/completions, under vLLM's names and buckets
(label `model_name`, as vLLM sets it), so a vLLM dashboard reads them: time to first token,
inter-token latency, end-to-end latency, queue time, prompt and generation tokens, successes by
finish reason. The engine replicas are other processes: what only an engine can see (queue time,
when each token was generated) comes back on each sample's Completion (engines/timing.py) and is
observed here, by the ingress that answered the request; the rest is timed here (`RequestClock`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from qvq_ray.engines.timing import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS, token_buckets

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.metrics_core import Metric

# Latency buckets from a cached /v1/models to an 8k-token chain of thought.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
KNOWN_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/solve", "/v1/models", "/health", "/healthz", "/readyz", "/livez", "/metrics"})


class _MergedHistogram:
    """A histogram fed with bucket counts and a sum rather than single values (inter-token gaps as
    an engine counted them), rendered like prometheus_client's own."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], model_name: str):
        self.name, self.documentation, self.buckets, self.model_name = name, documentation, buckets, model_name
        self.counts = [0] * (len(buckets) + 1)  # per bucket, +Inf last
        self.sum = 0.0

    def merge(self, counts: list[int], total: float) -> None:
        if len(counts) == len(self.counts):
            self.counts = [a + b for a, b in zip(self.counts, counts)]
            self.sum += total

    def describe(self) -> list[Metric]:
        from prometheus_client.core import HistogramMetricFamily

        return [HistogramMetricFamily(self.name, self.documentation, labels=["model_name"])]

    def collect(self) -> list[Metric]:
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        family = HistogramMetricFamily(self.name, self.documentation, labels=["model_name"])
        cumulative, buckets = 0, []
        for bound, count in zip([*self.buckets, float("inf")], self.counts):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        family.add_metric([self.model_name], buckets, self.sum)
        return [family]


class ServeMetrics:
    def __init__(self, model_name: str, max_model_len: int | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("qvq_ray_requests", "HTTP requests by route and status.", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "qvq_ray_request_latency_seconds", "Time to the response's last byte (streams included).", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.prompt_tokens = Counter("qvq_ray_prompt_tokens", "Prompt tokens of finished generations.", registry=self.registry)
        self.completion_tokens = Counter("qvq_ray_completion_tokens", "Tokens generated.", registry=self.registry)
        self.attempts = Counter(
            "qvq_ray_solve_attempts", "/v1/solve attempts by verification outcome ('ok', the first issue, or 'engine_error').",
            ["outcome"], registry=self.registry,
        )
        self.resamples = Counter("qvq_ray_solve_resamples", "/v1/solve attempts after the first.", registry=self.registry)
        self.solutions = Counter(
            "qvq_ray_solve_solutions", "/v1/solve solutions by whether an answer was given.", ["answered"], registry=self.registry
        )
        self.judge = Counter(
            "qvq_ray_judge", "Judge-model work on /v1/solve attempts, by task and outcome (answered, cached, not_judged).",
            ["task", "outcome"], registry=self.registry,
        )
        self.engine_up = Gauge("qvq_ray_engine_up", "1 when the app is ready: a request sent now will be served.", registry=self.registry)
        self.engine_live = Gauge("qvq_ray_engine_live", "1 when the engine can make progress (starting and busy count).", registry=self.registry)
        self.engine_saturated = Gauge(
            "qvq_ray_engine_saturated", "1 when every engine slot is taken (requests wait; none is refused).", registry=self.registry
        )
        self.engine_running = Gauge("qvq_ray_engine_running", "Requests the probed engine replica is generating.", registry=self.registry)
        self.engine_waiting = Gauge("qvq_ray_engine_waiting", "Requests queued at the probed engine replica.", registry=self.registry)
        info = Gauge("qvq_ray_model_info", "The served model.", ["model"], registry=self.registry)
        info.labels(model=model_name).set(1)
        self._vllm_metrics(model_name, max_model_len or 131072, self.registry)

    def _vllm_metrics(self, model_name: str, max_model_len: int, registry: CollectorRegistry) -> None:
        """vLLM's metrics (vllm/v1/metrics/loggers.py: names, buckets, the `model_name` label)
        and ours beside them where we measure at both ends."""
        from prometheus_client import Counter, Gauge, Histogram

        model = {"model_name": model_name}

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, ["model_name"], buckets=buckets, registry=registry).labels(**model)

        self.vllm_running = Gauge("vllm:num_requests_running", "Requests the probed engine replica is generating.", ["model_name"], registry=registry).labels(**model)
        self.vllm_waiting = Gauge("vllm:num_requests_waiting", "Requests queued at the probed engine replica.", ["model_name"], registry=registry).labels(**model)
        self.vllm_prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens of finished generations.", ["model_name"], registry=registry).labels(**model)
        self.vllm_generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", ["model_name"], registry=registry).labels(**model)
        self.vllm_success = Counter(
            "vllm:request_success", "Finished samples by finish reason.", ["model_name", "finished_reason"], registry=registry
        )
        for reason in ("stop", "length", "abort"):
            self.vllm_success.labels(model_name=model_name, finished_reason=reason)
        self.model_name = model_name
        tokens = token_buckets(max_model_len)
        self.request_prompt_tokens = histogram("vllm:request_prompt_tokens", "Prompt tokens per sample.", tokens)
        self.request_generation_tokens = histogram("vllm:request_generation_tokens", "Tokens generated per sample.", tokens)
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "From the request reaching the ingress to its first token reaching the ingress (not streamed: the "
            "time to the answer less the engine's time from first to last token).",
            TTFT_BUCKETS,
        )
        self.itl = _MergedHistogram(
            "vllm:inter_token_latency_seconds", "Gaps between successive generated tokens (the engine's clock).",
            ITL_BUCKETS, model_name,
        )
        self.registry.register(self.itl)
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "From the request reaching the ingress to its response's last byte (streams: the whole stream).",
            REQUEST_LATENCY_BUCKETS,
        )
        self.queue_time = histogram(
            "vllm:request_queue_time_seconds", "Time waiting in the engine's queue for a batch.", REQUEST_LATENCY_BUCKETS
        )
        self.engine_ttft = histogram(
            "qvq_ray_engine_time_to_first_token_seconds", "From the request reaching the engine replica to its first token.",
            TTFT_BUCKETS,
        )
        self.engine_e2e = histogram(
            "qvq_ray_engine_e2e_request_latency_seconds", "From the request reaching the engine replica to its last token.",
            REQUEST_LATENCY_BUCKETS,
        )

    def request(self, route: str, status: int, seconds: float) -> None:
        route = route if route in KNOWN_ROUTES else "other"  # bounded label values: no path from a client
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def tokens(self, completions: list[Any]) -> None:
        """Tokens of one prompt's samples (the prompt counted once)."""
        if completions:
            self._count_tokens(completions[0].prompt_tokens, sum(c.completion_tokens for c in completions))

    def _count_tokens(self, prompt: int, generated: int) -> None:
        self.prompt_tokens.inc(prompt)
        self.vllm_prompt_tokens.inc(prompt)
        self.completion_tokens.inc(generated)
        self.vllm_generation_tokens.inc(generated)

    def clock(self, request: Any, n: int) -> "RequestClock":
        """The clock of one generation request (`request.state.arrived`: set by the ingress's middleware)."""
        return RequestClock(self, getattr(request.state, "arrived", None) or time.perf_counter(), n)

    def sample(self, completion: Any, ttft: float, e2e: float) -> None:
        """One finished sample: `ttft` and `e2e` as the ingress saw them, the rest from its engine."""
        self.ttft.observe(ttft)
        self.e2e.observe(e2e)
        self.request_prompt_tokens.observe(completion.prompt_tokens)
        self.request_generation_tokens.observe(completion.completion_tokens)
        self.vllm_success.labels(model_name=self.model_name, finished_reason=completion.finish_reason).inc()
        timing = completion.timing
        if timing is None:
            return
        if timing.queue_s is not None:
            self.queue_time.observe(timing.queue_s)
        if timing.ttft_s is not None:
            self.engine_ttft.observe(timing.ttft_s)
        if timing.e2e_s is not None:
            self.engine_e2e.observe(timing.e2e_s)
        self.itl.merge(timing.itl_counts, timing.itl_sum_s)

    def solution(self, solution: Any) -> None:
        for attempt in solution.attempts:
            outcome = "engine_error" if attempt.error else (attempt.verdict.issues or ["ok"])[0]
            self.attempts.labels(outcome=outcome).inc()
            for note in attempt.verdict.judge:
                outcome = "not_judged" if note.outcome is None else "cached" if note.cached else "answered"
                self.judge.labels(task=note.task, outcome=outcome).inc()
        self.resamples.inc(max(0, len(solution.attempts) - 1))
        self.solutions.labels(answered=str(solution.answer is not None).lower()).inc()
        # each attempt is its own prompt
        self._count_tokens(sum(a.prompt_tokens for a in solution.attempts), sum(a.completion_tokens for a in solution.attempts))

    def health(self, report: Any) -> None:
        """The latest health judgement (serve/health.AppHealth), from a probe or a scrape."""
        self.engine_up.set(int(report.ready))
        self.engine_live.set(int(report.live))
        self.engine_saturated.set(int(report.saturated))
        if report.engine is not None:
            for running, waiting in ((self.engine_running, self.engine_waiting), (self.vllm_running, self.vllm_waiting)):
                running.set(report.engine.running)
                waiting.set(report.engine.waiting)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class RequestClock:
    """One /v1/chat/completions or /v1/completions request's timing at the ingress: when it
    arrived, when each choice's first token reached the ingress (streams), and at the end (a
    stream's: after its last byte went out) every sample observed (ServeMetrics.sample)."""

    def __init__(self, metrics: ServeMetrics, arrived: float, n: int):
        self.metrics, self.arrived, self.n = metrics, arrived, n
        self.first_token: dict[int, float] = {}  # choice index -> when its first text reached the ingress
        self.completions: list[Any] | None = None  # every choice's, once all finished

    def token(self, indexes: list[int]) -> None:
        now = time.perf_counter()
        for index in indexes:
            self.first_token.setdefault(index, now)

    def finish(self, completions: list[Any] | None = None) -> None:
        """Observe the request's samples (`completions`, or those set on the clock; none: a request
        that did not finish is not observed). Choices are n per prompt, in order."""
        completions = self.completions if completions is None else completions
        if not completions:
            return
        now = time.perf_counter()
        e2e = now - self.arrived
        for start in range(0, len(completions), self.n):
            self.metrics.tokens(completions[start : start + self.n])
        for index, completion in enumerate(completions):
            if index in self.first_token:
                ttft = self.first_token[index] - self.arrived
            else:  # not streamed (or no text): the answer came at once; its first token came earlier by
                # the engine's time from first token to last
                timing = completion.timing
                decode = timing.e2e_s - timing.ttft_s if timing and timing.e2e_s is not None and timing.ttft_s is not None else 0.0
                ttft = max(0.0, e2e - decode)
            self.metrics.sample(completion, ttft, e2e)
