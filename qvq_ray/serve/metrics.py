"""Prometheus metrics of one ingress replica, served as text at `GET /metrics` (vLLM's route).

Requests by route and status, request latency, prompt and completion tokens, the engine's running
and waiting requests (read at scrape time from a replica, bounded by serve.readiness_timeout_s),
readiness, liveness and saturation as /health judges them (serve/health.py),
and for /v1/solve: attempts by verification outcome and re-samples. Each ingress replica counts
its own traffic (a registry per replica, labelled with it); Prometheus sums over replicas.
"""

from __future__ import annotations

from typing import Any

# Latency buckets from a cached /v1/models to an 8k-token chain of thought.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
KNOWN_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/solve", "/v1/models", "/health", "/healthz", "/readyz", "/livez", "/metrics"})


class ServeMetrics:
    def __init__(self, model_name: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = {"registry": self.registry}
        self.requests = Counter("qvq_ray_requests", "HTTP requests by route and status.", ["route", "status"], **labels)
        self.latency = Histogram(
            "qvq_ray_request_latency_seconds", "Time to the response (to its headers, for streams).", ["route"],
            buckets=LATENCY_BUCKETS, **labels,
        )
        self.prompt_tokens = Counter("qvq_ray_prompt_tokens", "Prompt tokens of finished generations.", **labels)
        self.completion_tokens = Counter("qvq_ray_completion_tokens", "Tokens generated.", **labels)
        self.attempts = Counter(
            "qvq_ray_solve_attempts", "/v1/solve attempts by verification outcome ('ok', the first issue, or 'engine_error').",
            ["outcome"], **labels,
        )
        self.resamples = Counter("qvq_ray_solve_resamples", "/v1/solve attempts after the first.", **labels)
        self.solutions = Counter(
            "qvq_ray_solve_solutions", "/v1/solve solutions by whether an answer was given.", ["answered"], **labels
        )
        self.judge = Counter(
            "qvq_ray_judge", "Judge-model work on /v1/solve attempts, by task and outcome (answered, cached, not_judged).",
            ["task", "outcome"], **labels,
        )
        self.engine_up = Gauge("qvq_ray_engine_up", "1 when the app is ready: a request sent now will be served.", **labels)
        self.engine_live = Gauge("qvq_ray_engine_live", "1 when the engine can make progress (starting and busy count).", **labels)
        self.engine_saturated = Gauge(
            "qvq_ray_engine_saturated", "1 when every engine slot is taken (requests wait; none is refused).", **labels
        )
        self.engine_running = Gauge("qvq_ray_engine_running", "Requests the probed engine replica is generating.", **labels)
        self.engine_waiting = Gauge("qvq_ray_engine_waiting", "Requests queued at the probed engine replica.", **labels)
        info = Gauge("qvq_ray_model_info", "The served model.", ["model"], **labels)
        info.labels(model=model_name).set(1)

    def request(self, route: str, status: int, seconds: float) -> None:
        route = route if route in KNOWN_ROUTES else "other"  # bounded label values: no path from a client
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def tokens(self, completions: list[Any]) -> None:
        if completions:
            self.prompt_tokens.inc(completions[0].prompt_tokens)
            self.completion_tokens.inc(sum(c.completion_tokens for c in completions))

    def solution(self, solution: Any) -> None:
        for attempt in solution.attempts:
            outcome = "engine_error" if attempt.error else (attempt.verdict.issues or ["ok"])[0]
            self.attempts.labels(outcome=outcome).inc()
            for note in attempt.verdict.judge:
                outcome = "not_judged" if note.outcome is None else "cached" if note.cached else "answered"
                self.judge.labels(task=note.task, outcome=outcome).inc()
        self.resamples.inc(max(0, len(solution.attempts) - 1))
        self.solutions.labels(answered=str(solution.answer is not None).lower()).inc()
        self.prompt_tokens.inc(sum(a.prompt_tokens for a in solution.attempts))  # each attempt is its own prompt
        self.completion_tokens.inc(sum(a.completion_tokens for a in solution.attempts))

    def health(self, report: Any) -> None:
        """The latest health judgement (serve/health.AppHealth), from a probe or a scrape."""
        self.engine_up.set(int(report.ready))
        self.engine_live.set(int(report.live))
        self.engine_saturated.set(int(report.saturated))
        if report.engine is not None:
            self.engine_running.set(report.engine.running)
            self.engine_waiting.set(report.engine.waiting)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
