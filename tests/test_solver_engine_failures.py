"""A solved problem stays solved: an engine call that fails on one attempt (a 5xx from an endpoint, a
replica restart) is recorded on that attempt, never counted as a wrong answer, and never makes the
problem an error when another attempt answered.

The engine is `PerProblemScriptEngineFake`, a fake (it stands in for a model we can make say what a
test needs): each problem has a script of answers, and every third call of the whole engine fails
with `EngineError`, the error the real engines raise for a failed request. A failed call does not use
up a script entry, so the answered samples of each problem are the same as in a clean run. The
verifier, the scoring (`batch/scoring.py: score_row`) and the report's views are the real ones.
"""

from __future__ import annotations

import asyncio

import pytest

from qvq_ray.batch.scoring import score_row
from qvq_ray.config import PolicyConfig, SamplingConfig, VerifierConfig
from qvq_ray.engines.base import Completion, EngineError
from qvq_ray.problem import Problem, solution_to_row
from qvq_ray.solver import Solver


def boxed(x: str) -> str:
    return f"Let me think about it. **Final Answer** \\boxed{{{x}}}"


# id -> (gold, answers of its successive answered calls; the last entry repeats)
SCRIPTS = {
    "q0": ("12", [boxed("12")]),
    "q1": ("7", [boxed("5"), boxed("7"), boxed("7"), boxed("7")]),
    "q2": ("3", [boxed("4"), boxed("4"), boxed("3"), boxed("4")]),  # the vote is wrong: stays wrong
    "q3": ("42", ["I cannot tell.", boxed("42"), boxed("42"), boxed("42")]),
    "q4": ("9", [boxed("9"), boxed("8"), boxed("8"), boxed("9"), boxed("8")]),  # wrong again
    "q5": ("100", [boxed("100"), boxed("10^2"), boxed("100")]),  # equivalent answers vote together
}
PROBLEMS = [Problem(id=pid, question=f"[{pid}] What is the value?", answer=gold) for pid, (gold, _) in SCRIPTS.items()]


class PerProblemScriptEngineFake:
    """A fake engine: answers each problem from its script (found by the `[id]` tag in the prompt);
    with `fail_every=k`, every k-th call of the engine raises `EngineError` instead (before any text,
    as a failed HTTP request or a restarted replica does). Records the calls that failed, per problem."""

    model_name = "per-problem-script-fake"

    def __init__(self, fail_every: int | None = None):
        self.fail_every = fail_every
        self.calls = 0
        self.answered: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def _next(self, messages) -> str:
        """The next text for the problem of `messages`, or EngineError on a failing call."""
        text = str(messages)
        pid = next(p for p in SCRIPTS if f"[{p}]" in text)
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            self.failed[pid] = self.failed.get(pid, 0) + 1
            raise EngineError(f"chat completion at http://replica.test/v1 failed after 3 attempt(s): HTTP 502: call {self.calls}")
        script = SCRIPTS[pid][1]
        seen = self.answered.get(pid, 0)
        self.answered[pid] = seen + 1
        return script[min(seen, len(script) - 1)]

    async def generate(self, messages, sampling):
        await asyncio.sleep(0)
        text = self._next(messages)
        return [Completion(text=text, finish_reason="stop", prompt_tokens=10, completion_tokens=len(text.split()))]

    async def stream(self, messages, sampling):
        await asyncio.sleep(0)
        text = self._next(messages)
        for word in text.split(" "):
            yield word + " "
        yield Completion(text=text, finish_reason="stop", prompt_tokens=10, completion_tokens=len(text.split()))


@pytest.fixture(scope="module")
def verifier():
    from qvq_ray.verify import Verifier

    v = Verifier(VerifierConfig(workers=1, timeout_s=10))
    yield v
    v.close()


def _solve_and_score(engine, verifier, **policy):
    """Every problem solved at once on one engine, then scored against gold as the batch job does."""
    solver = Solver(engine, verifier, policy=PolicyConfig(**policy), sampling=SamplingConfig(max_tokens=64))

    async def run():
        solutions = await asyncio.gather(*(solver.solve(p, image_bytes=[]) for p in PROBLEMS))
        rows = [await score_row(solution_to_row(s, p), verifier) for s, p in zip(solutions, PROBLEMS)]
        return solutions, rows

    return asyncio.run(run())


def _accuracy(rows) -> float:
    return sum(r["correct"] is True for r in rows) / len(rows)


@pytest.mark.parametrize("policy", [
    dict(self_consistency=True, quorum=3, max_attempts=12),
    dict(self_consistency=True, quorum=3, max_attempts=12, loop_cutoff=False),  # generate, not stream
])
def test_a_failed_engine_call_never_changes_the_answer_or_the_score(verifier, policy):
    clean_solutions, clean_rows = _solve_and_score(PerProblemScriptEngineFake(), verifier, **policy)
    engine = PerProblemScriptEngineFake(fail_every=3)
    solutions, rows = _solve_and_score(engine, verifier, **policy)

    assert sum(engine.failed.values()) >= 3  # the failures did happen, on several problems
    assert 0 < _accuracy(clean_rows) < 1  # the set tells right from wrong (q2 and q4 vote wrong)
    assert _accuracy(rows) == _accuracy(clean_rows)
    assert [s.answer for s in solutions] == [s.answer for s in clean_solutions]
    for key in ("correct", "pass_at_1", "maj_at_k", "pass_at_k"):
        assert [r[key] for r in rows] == [r[key] for r in clean_rows], key

    for solution, row in zip(solutions, rows):
        assert solution.answer is not None
        assert solution.error is None and row["error"] is None, solution.error  # solved stays solved
        failed = [a for a in solution.attempts if a.error]
        # each failed call is on its own attempt: no text, no answer, not scored, the error kept
        assert len(failed) <= engine.failed.get(solution.id, 0)
        for attempt in failed:
            assert attempt.error.startswith("EngineError: ") and "HTTP 502" in attempt.error
            assert attempt.text == "" and attempt.verdict.answer is None and attempt.completion_tokens == 0
        for a in row["attempts"]:
            if a["error"]:
                assert a["correct"] is None and a["decided_by"] is None
        chosen = solution.attempts[solution.chosen_attempt]
        assert chosen.error is None and chosen.verdict.answer == solution.answer
    assert sum(len([a for a in s.attempts if a.error]) for s in solutions) >= 3


def test_the_report_shows_failed_calls_that_were_not_scored(verifier):
    from qvq_ray.report import problems, stats, tables

    engine = PerProblemScriptEngineFake(fail_every=3)
    _, rows = _solve_and_score(engine, verifier, self_consistency=True, quorum=3, max_attempts=12)
    views = stats.views(rows)
    failed_calls = sum(v.failed_calls for v in views)
    assert failed_calls >= 3 and not any(v.error for v in views)
    assert f"{failed_calls} engine call(s) failed" in tables.attempts_table(views).note
    row, view = next((r, v) for r, v in zip(rows, views) if v.failed_calls)
    verdicts = [a.verdict for a in problems.card(row, view).attempts]
    assert any(v.startswith("engine failed: EngineError") for v in verdicts)


def test_a_first_call_that_fails_with_nothing_to_keep_still_raises(verifier):
    engine = PerProblemScriptEngineFake(fail_every=1)
    solver = Solver(engine, verifier, policy=PolicyConfig(max_attempts=3), sampling=SamplingConfig(max_tokens=64))
    with pytest.raises(EngineError):  # the caller reports it: 5xx online, an error row in batch
        asyncio.run(solver.solve(PROBLEMS[0], image_bytes=[]))
    assert engine.calls == 1


def test_when_every_call_fails_the_problem_is_an_error_with_each_failure_on_its_attempt(verifier):
    engine = PerProblemScriptEngineFake(fail_every=1)
    solver = Solver(
        engine, verifier, policy=PolicyConfig(self_consistency=True, quorum=3, max_attempts=5),
        sampling=SamplingConfig(max_tokens=64),
    )
    solution = asyncio.run(solver.solve(PROBLEMS[0], image_bytes=[]))  # 3 in flight: the first failure is not alone
    assert solution.answer is None and solution.error.startswith("engine failed on attempt")
    assert len(solution.attempts) == 5 and all(a.error for a in solution.attempts)
    row = asyncio.run(score_row(solution_to_row(solution, PROBLEMS[0]), verifier))
    assert row["correct"] is False and (row["pass_at_1"], row["maj_at_k"], row["pass_at_k"]) == (False, False, False)


def test_serve_metrics_count_a_failed_call_as_an_engine_error_not_ok(verifier):
    from prometheus_client import generate_latest

    from qvq_ray.serve.metrics import ServeMetrics

    engine = PerProblemScriptEngineFake(fail_every=3)
    solutions, _ = _solve_and_score(engine, verifier, self_consistency=True, quorum=3, max_attempts=12)
    metrics = ServeMetrics("per-problem-script-fake")
    for solution in solutions:
        metrics.solution(solution)
    text = generate_latest(metrics.registry).decode()
    failed = sum(1 for s in solutions for a in s.attempts if a.error)
    assert f'qvq_ray_solve_attempts_total{{outcome="engine_error"}} {float(failed)}' in text, text


class ReplicaLostMidStreamEngineFake(PerProblemScriptEngineFake):
    """Streams the first `lost` samples halfway, then raises ReplicaLostError (what the Serve engine
    client raises when the replica streaming to it died after its first items)."""

    def __init__(self, lost: int):
        super().__init__()
        self.lost = lost
        self.streams = 0

    async def stream(self, messages, sampling):
        from qvq_ray.engines.base import ReplicaLostError

        self.streams += 1
        if self.streams <= self.lost:
            yield "Let me "
            yield "think "
            raise ReplicaLostError("the engine replica was lost after 2 streamed item(s)")
        async for item in super().stream(messages, sampling):
            yield item


@pytest.mark.parametrize("lost, survives", [(1, True), (2, True), (3, False)])
def test_a_sample_whose_replica_died_mid_stream_is_restarted_whole(verifier, lost, survives):
    from qvq_ray.engines.base import ReplicaLostError

    engine = ReplicaLostMidStreamEngineFake(lost)
    solver = Solver(engine, verifier, policy=PolicyConfig(max_attempts=1), sampling=SamplingConfig(max_tokens=64))
    if not survives:  # bounded: the third loss in a row is the caller's to report
        with pytest.raises(ReplicaLostError):
            asyncio.run(solver.solve(PROBLEMS[0], image_bytes=[]))
        return
    solution = asyncio.run(solver.solve(PROBLEMS[0], image_bytes=[]))
    assert solution.answer == "12" and engine.streams == lost + 1
    assert len(solution.attempts) == 1 and solution.attempts[0].text.startswith("Let me think about it.")  # no half-text
