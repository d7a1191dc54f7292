"""Solver policies: stop rules per mode, self-consistency vote and quorum, budgets, loop cut-off, metrics.

Stop rules need answers the random tiny model never writes, so those tests script the text with
`ScriptedStreamingEngineFake` (a fake: it stands in for a model we can make say what a test needs).
The verifier is the real one; budgets and the streaming path also run on the real tiny model.
"""

from __future__ import annotations

import asyncio

import pytest

from qvq_ray.results.metrics import AttemptOutcome, problem_metrics
from qvq_ray.config import HFEngineConfig, ModelConfig, PolicyConfig, SamplingConfig
from qvq_ray.engines.base import Completion
from qvq_ray.problem import Problem
from qvq_ray.solver import Solver


class ScriptedStreamingEngineFake:
    """A fake engine: call i answers script[i] (the last entry repeats); a script entry ending in
    '...' repeats its text until max_tokens. Streams one 'token' (a word) per delta and records
    calls, streamed tokens and aborts (the consumer closing the stream early)."""

    model_name = "scripted-fake"

    def __init__(self, script: list[str], delay_s: float = 0.0, token_delay_s: float = 0.0):
        self.script = script
        self.delay_s = delay_s  # a whole stream's time, spread over its tokens
        self.token_delay_s = token_delay_s  # and on top of it, each token's
        self.calls: list[SamplingConfig] = []
        self.streamed_tokens = 0
        self.aborted = 0

    def _text(self, sampling: SamplingConfig) -> list[str]:
        entry = self.script[min(len(self.calls) - 1, len(self.script) - 1)]
        if entry.endswith("..."):
            unit = entry[:-3].split(" ")
            return [unit[i % len(unit)] + " " for i in range(sampling.max_tokens)]
        return [w + " " for w in entry.split(" ")][: sampling.max_tokens]

    async def generate(self, messages, sampling):
        self.calls.append(sampling)
        await asyncio.sleep(self.delay_s)
        tokens = self._text(sampling)
        finish = "length" if len(tokens) >= sampling.max_tokens else "stop"
        return [Completion(text="".join(tokens), finish_reason=finish, prompt_tokens=10, completion_tokens=len(tokens))]

    async def stream(self, messages, sampling):
        self.calls.append(sampling)
        tokens = self._text(sampling)
        finished = False
        try:
            for token in tokens:
                await asyncio.sleep(self.delay_s / max(len(tokens), 1) + self.token_delay_s)
                self.streamed_tokens += 1
                yield token
            finished = True
            finish = "length" if len(tokens) >= sampling.max_tokens else "stop"
            yield Completion(text="".join(tokens), finish_reason=finish, prompt_tokens=10, completion_tokens=len(tokens))
        finally:
            if not finished:
                self.aborted += 1


class GoldSpyVerifier:
    """The real verifier, recording the gold every check receives."""

    def __init__(self, verifier):
        self.inner = verifier
        self.golds: list = []

    async def check(self, text, spec=None, **kwargs):
        self.golds.append(kwargs.get("gold"))
        return await self.inner.check(text, spec, **kwargs)

    async def same_answer(self, a, b, spec=None):
        return await self.inner.same_answer(a, b, spec)


@pytest.fixture(scope="module")
def verifier():
    from qvq_ray.config import VerifierConfig
    from qvq_ray.verify import Verifier

    v = Verifier(VerifierConfig(workers=1, timeout_s=10))
    yield v
    v.close()


PROBLEM = Problem(id="p", question="What is x?", answer="6")


def boxed(x: str) -> str:
    return f"Let me think about it. **Final Answer** \\boxed{{{x}}}"


def _solve(engine, verifier, problem=PROBLEM, **policy):
    solver = Solver(engine, verifier, policy=PolicyConfig(**policy), sampling=SamplingConfig(max_tokens=64))
    return asyncio.run(solver.solve(problem, image_bytes=[]))


def test_self_mode_stops_at_first_healthy_attempt(verifier):
    engine = ScriptedStreamingEngineFake(["I have no idea", boxed("5"), boxed("6")])
    solution = _solve(engine, verifier, max_attempts=3)
    assert [a.verdict.answer for a in solution.attempts] == [None, "5"]
    assert solution.answer == "5" and solution.confidence == 1.0 and solution.mode == "self"
    assert solution.attempts[0].verdict.issues == ["no_final_answer"]


def test_oracle_mode_stops_when_the_answer_matches_gold(verifier):
    engine = ScriptedStreamingEngineFake([boxed("5"), boxed("6"), boxed("7")])
    solution = _solve(engine, verifier, mode="oracle", max_attempts=3)
    assert [a.verdict.answer for a in solution.attempts] == ["5", "6"]
    assert solution.answer == "6" and solution.mode == "oracle" and solution.attempts[1].verdict.correct is True


def test_oracle_mode_exhausts_the_budget_without_a_match(verifier):
    engine = ScriptedStreamingEngineFake([boxed("5")])
    solution = _solve(engine, verifier, mode="oracle", max_attempts=4)
    assert len(solution.attempts) == 4 and len(engine.calls) == 4
    assert all(a.verdict.correct is False for a in solution.attempts)


def test_self_consistency_stops_at_quorum_and_reports_share(verifier):
    engine = ScriptedStreamingEngineFake([boxed("5"), boxed("6"), boxed("\\frac{10}{2}"), boxed("6")])
    solution = _solve(engine, verifier, self_consistency=True, quorum=2, max_attempts=6)
    # 5, 6, 10/2 (== 5 by equivalence): quorum of 2 reached at the third attempt
    assert len(solution.attempts) == 3 and len(engine.calls) == 3
    assert solution.answer == "5" and solution.confidence == pytest.approx(2 / 3)
    assert solution.chosen_attempt == 0


def test_self_consistency_without_quorum_takes_the_largest_cluster(verifier):
    engine = ScriptedStreamingEngineFake([boxed("5"), boxed("6"), boxed("7"), boxed("6"), "no answer here"])
    solution = _solve(engine, verifier, self_consistency=True, quorum=3, max_attempts=5)
    assert len(solution.attempts) == 5
    assert solution.answer == "6" and solution.confidence == pytest.approx(2 / 4)


def test_parallel_samples_are_cancelled_once_quorum_is_reached(verifier):
    # Two short answers, then long ones (64 tokens, 3.2 s each): the quorum comes from the short
    # two long before any long one ends, however slow the machine's verifier is.
    engine = ScriptedStreamingEngineFake([boxed("6")] * 2 + [boxed("6") + " and more words" * 40] * 6, token_delay_s=0.05)
    solution = _solve(engine, verifier, self_consistency=True, quorum=2, max_attempts=8, parallel_samples=4)
    assert solution.answer == "6"
    assert len(engine.calls) <= 6  # 4 in flight, 2 refills for the 2 that ended; stopped long before 8
    assert engine.aborted >= 1  # in-flight samples were aborted, not run to the end


def test_gold_never_reaches_the_self_path(verifier):
    spy = GoldSpyVerifier(verifier)
    problem = Problem(id="g", question="What is x?", answer="987654321")
    engine = ScriptedStreamingEngineFake(["nothing", boxed("1"), boxed("2"), boxed("1")])
    solution = _solve(engine, spy, problem, self_consistency=True, quorum=2, max_attempts=4)
    assert spy.golds and all(g is None for g in spy.golds)
    assert all(a.verdict.correct is None for a in solution.attempts)
    # the spy works: oracle mode does pass gold
    spy.golds.clear()
    _solve(ScriptedStreamingEngineFake([boxed("1")]), spy, problem, mode="oracle", max_attempts=1)
    assert spy.golds == ["987654321"]


def test_loop_cut_off_stops_a_looping_stream_and_reports_tokens_saved(verifier):
    engine = ScriptedStreamingEngineFake(["so the so the so the answer might be...", boxed("6")])
    solver = Solver(engine, verifier, policy=PolicyConfig(max_attempts=2), sampling=SamplingConfig(max_tokens=8192))
    solution = asyncio.run(solver.solve(PROBLEM, image_bytes=[]))
    first = solution.attempts[0]
    assert first.cut_off and "repetition_loop" in first.verdict.issues and first.finish_reason == "abort"
    assert first.completion_tokens < 200 and first.tokens_saved == 8192 - first.completion_tokens
    assert engine.aborted == 1 and engine.streamed_tokens < 300
    assert solution.answer == "6" and solution.tokens_saved == first.tokens_saved


def test_no_loop_cut_off_on_a_long_healthy_chain(verifier):
    words = " ".join(f"step {i}: {i} + {i} = {2 * i}." for i in range(300))
    engine = ScriptedStreamingEngineFake([words + " " + boxed("6")])
    solver = Solver(engine, verifier, policy=PolicyConfig(max_attempts=1), sampling=SamplingConfig(max_tokens=8192))
    solution = asyncio.run(solver.solve(PROBLEM, image_bytes=[]))
    assert not solution.attempts[0].cut_off and solution.answer == "6" and solution.tokens_saved == 0


def test_token_budget_and_attempt_budget_on_the_tiny_model(tiny_model_dir, verifier):
    from qvq_ray.config import HFEngineConfig
    from qvq_ray.engines.hf_engine import HFEngine

    engine = HFEngine(ModelConfig(path=tiny_model_dir), HFEngineConfig(max_batch_size=4))
    problem = Problem(id="t", question="What is 3 + 4?", answer="7")

    def run(**policy):
        solver = Solver(engine, verifier, policy=PolicyConfig(**policy), sampling=SamplingConfig(max_tokens=20, seed=1))
        return asyncio.run(solver.solve(problem, image_bytes=[]))

    by_attempts = run(max_attempts=3)
    assert len(by_attempts.attempts) == 3  # the random model never answers: the whole budget, never more
    assert by_attempts.completion_tokens <= 3 * 20
    by_tokens = run(max_attempts=10, token_budget=30)
    used_before_last = sum(a.completion_tokens for a in by_tokens.attempts[:-1])
    assert used_before_last < 30 and len(by_tokens.attempts) < 10  # no attempt starts past the budget
    streamed = run(max_attempts=1, loop_cutoff=True)
    plain = run(max_attempts=1, loop_cutoff=False)
    assert streamed.attempts[0].text == plain.attempts[0].text  # the streaming path gives the same greedy text


@pytest.mark.parametrize(
    "outcomes, expected",
    [
        ([], (False, False, False)),
        ([("a", True)], (True, True, True)),
        ([("a", False), ("b", True), ("b", True)], (False, True, True)),
        ([("a", False), ("b", True), ("a", False)], (False, False, True)),
        ([("b", True), ("a", False)], (True, True, True)),  # tie: the answer seen first wins
        ([("a", False), ("b", True)], (False, False, True)),
        ([(None, False), (None, False), ("b", True)], (False, True, True)),
        ([(None, False), ("a", False)], (False, False, False)),
    ],
)
def test_pass_at_1_maj_at_k_pass_at_k(outcomes, expected):
    assert problem_metrics([AttemptOutcome(cluster=c, correct=ok) for c, ok in outcomes]) == expected


class NotStreamedEngineFake(ScriptedStreamingEngineFake):
    """The scripted fake, for paths that must not stream: its `stream` fails the test."""

    def stream(self, messages, sampling):
        raise AssertionError("this request must go through generate, not stream")


def test_without_loop_cut_off_samples_are_generated_whole(verifier):
    engine = NotStreamedEngineFake(["so the so the so the answer might be...", boxed("6")])
    solver = Solver(engine, verifier, policy=PolicyConfig(max_attempts=2, loop_cutoff=False), sampling=SamplingConfig(max_tokens=400))
    solution = asyncio.run(solver.solve(PROBLEM, image_bytes=[]))
    first = solution.attempts[0]
    assert not first.cut_off and first.tokens_saved == 0  # the loop ran to max_tokens, uncut
    assert (first.finish_reason, first.completion_tokens) == ("length", 400)
    assert solution.answer == "6" and engine.streamed_tokens == 0 and engine.aborted == 0


def test_samples_per_request_asks_the_engine_for_n(verifier):
    class NSamplesEngineFake(NotStreamedEngineFake):
        """A fake that answers every sample of a request: n>1 is one `generate` call, never streamed."""

        async def generate(self, messages, sampling):
            self.calls.append(sampling)
            return [
                Completion(text=boxed(str(5 + (i % 2))), finish_reason="stop", prompt_tokens=10, completion_tokens=12)
                for i in range(sampling.n)
            ]

    engine = NSamplesEngineFake([""])
    solution = _solve(engine, verifier, self_consistency=True, quorum=3, max_attempts=6, samples_per_request=4)
    assert [c.n for c in engine.calls] == [4, 2]  # 5,6,5,6 then 5,6: quorum 3 reached in the second request
    assert len(solution.attempts) == 6 and solution.answer == "5" and solution.confidence == pytest.approx(3 / 6)
