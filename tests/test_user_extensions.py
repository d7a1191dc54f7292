"""User-defined checks (`verifier.checks`) and policies (`policy.import_path`), issue 15.

The checks below are imported by the verifier's worker processes by import path (this module's own
`__name__`: the workers get the parent's sys.path), so what is asserted is the real path: config ->
pool boot -> worker call under the hard timeout -> verdict issues -> the solver's re-sampling. The
example in examples/custom_check_policy/ runs on the real trained tiny Qwen2-VL.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qvq_ray.config import PolicyConfig, QvqConfig, SamplingConfig, VerifierConfig
from qvq_ray.engines.base import Completion
from qvq_ray.problem import Problem

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "custom_check_policy"
HERE = __name__


# ---------------------------------------------------------------- checks run by the workers


def raising_check(response, answer, problem):
    raise RuntimeError("this check is broken")


def hanging_check(response, answer, problem):
    time.sleep(60)
    return []


def junk_check(response, answer, problem):
    return "not a list"


def spy_check(response, answer, problem):
    """Reports what reached the worker: gold, its alternatives, meta or images must not."""
    if problem is None:
        return ["no_problem"]
    seen = ["question_" + problem.question.split()[0].lower(), f"answer_{answer}"]
    if problem.answer is not None or problem.spec.alternatives or problem.meta or problem.images:
        seen.append("saw_gold")
    return seen


# ---------------------------------------------------------------- config


def test_resample_on_keeps_typos_errors_and_accepts_declared_user_issues():
    with pytest.raises(ValueError, match="unknown issue 'truncatd'"):
        PolicyConfig(resample_on=["truncatd"])
    with pytest.raises(ValueError, match="no check in verifier.checks declares"):
        QvqConfig.model_validate({"policy": {"resample_on": ["answer_in_range:out_of_range"]}})
    with pytest.raises(ValueError, match="no check in verifier.checks declares"):
        QvqConfig.model_validate({
            "verifier": {"checks": [{"path": "m:answer_in_range", "issues": ["out_of_range"]}]},
            "policy": {"resample_on": ["answer_in_range:out_of_rnage"]},
        })
    with pytest.raises(ValueError, match="share a name"):
        QvqConfig.model_validate({"verifier": {"checks": ["a:check", "b.check"]}})
    config = QvqConfig.model_validate({
        "verifier": {"checks": ["m:plain", {"path": "pkg.mod.fn", "name": "ranged", "issues": ["out_of_range"]}]},
        "policy": {"resample_on": ["truncated", "ranged:out_of_range", "plain:failed"]},
    })
    assert [c.check_name for c in config.verifier.checks] == ["plain", "ranged"]
    example = QvqConfig.from_yaml(EXAMPLE / "config.yaml")
    assert example.policy.import_path == "custom_steps:StopWhenRepeating"
    assert "answer_in_range:out_of_range" in example.policy.resample_on


# ---------------------------------------------------------------- checks in the verifier's workers


def test_user_checks_run_in_workers_gold_free_and_failures_are_recorded():
    from qvq_ray.verify import Verifier

    checks = [
        f"{HERE}:spy_check",
        f"{HERE}:raising_check",
        f"{HERE}:junk_check",
        {"path": f"{HERE}:hanging_check", "name": "hang"},
        "no_such_module_anywhere:check",
    ]
    problem = Problem(id="p", question="Compute 2+3", answer="5", meta={"answer_letter": "A"},
                      alternatives=["5.0"], images=[{"bytes": b"\x89PNG"}])
    with Verifier(VerifierConfig(workers=1, timeout_s=2.0, checks=checks)) as verifier:
        started = time.perf_counter()
        verdict = verifier.check_sync("2+3=5. **Final Answer** \\boxed{5}", problem.spec, gold="5", problem=problem)
        elapsed = time.perf_counter() - started
        assert verdict.correct is True  # a failing user check never changes the judgement
        assert verdict.issues == [
            "spy_check:question_compute", "spy_check:answer_5",
            "raising_check:failed", "junk_check:failed", "hang:failed", "check:failed",
        ]
        assert elapsed < 20  # the hanging check was killed at its 2 s limit, not waited for (60 s)
        # the killed worker was replaced: the next verdict runs every check again
        again = verifier.check_sync("**Final Answer** \\boxed{7}", problem.spec, problem=problem)
        assert "spy_check:answer_7" in again.issues and "hang:failed" in again.issues
        assert not any("saw_gold" in i for i in verdict.issues + again.issues)
        # no problem given (a re-score, `qvq-ray check`): the check still runs, with None
        assert "spy_check:no_problem" in verifier.check_sync("\\boxed{1}").issues


def test_a_worker_runs_only_the_checks_its_pool_was_started_with():
    from qvq_ray.verify.pool import VerifyPool, VerifyWorkerError

    with VerifyPool(workers=1, timeout_s=5, user_checks=(f"{HERE}:spy_check",)) as pool:
        assert pool.call("qvq_ray.verify.user_checks.run_user_check", f"{HERE}:spy_check", "r", "4", None) == ["no_problem"]
        with pytest.raises(VerifyWorkerError, match="not a configured user check"):
            pool.call("qvq_ray.verify.user_checks.run_user_check", "os:system", "echo hi", None, None)


# ---------------------------------------------------------------- the policy protocol (scripted engine)


class ScriptedEngineFake:
    """Not a model: returns the scripted texts in order (named so), recording each sampling."""

    def __init__(self, texts):
        self.texts = list(texts)
        self.samplings = []

    async def generate(self, messages, sampling):
        self.samplings.append(sampling)
        text = self.texts[min(len(self.samplings) - 1, len(self.texts) - 1)]
        return [Completion(text=text, finish_reason="stop", prompt_tokens=5, completion_tokens=len(text.split()))]

    async def stream(self, messages, sampling):
        yield (await self.generate(messages, sampling))[0]


class RecordingPolicy:
    """A user policy class written against the protocol (no base class needed): re-samples at a
    temperature it picks, stops at the third attempt, answers with the first one."""

    seen: list = []

    def __init__(self, state):
        self.state = state
        RecordingPolicy.seen.append(state)

    def sampling_for(self, index):
        return self.state.sampling

    def max_in_flight(self):
        return 1

    async def on_attempt(self, index, attempt):
        from qvq_ray.policies import Resample, Stop

        if index >= 2:
            return Stop("enough")
        return Resample(self.state.sampling.model_copy(update={"temperature": 0.5 + index / 10}))

    def choose(self, accepted):
        return 0, 0.25


@pytest.fixture(scope="module")
def verifier():
    from qvq_ray.verify import Verifier

    with Verifier(VerifierConfig(workers=1, timeout_s=10)) as v:
        yield v


def test_a_user_policy_decides_sampling_stop_and_answer_and_sees_no_gold(verifier):
    from qvq_ray.solver import Solver

    RecordingPolicy.seen.clear()
    engine = ScriptedEngineFake(["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{4}"])
    policy = PolicyConfig(max_attempts=8, import_path=f"{HERE}:RecordingPolicy")
    solver = Solver(engine, verifier, policy=policy, sampling=SamplingConfig(max_tokens=16))
    problem = Problem(id="g", question="What is x?", answer="3", meta={"answers": ["3"]})
    solution = asyncio.run(solver.solve(problem, image_bytes=[]))
    assert [a.verdict.answer for a in solution.attempts] == ["1", "2", "3"]  # Stop at the third, of 8 allowed
    assert [s.temperature for s in engine.samplings] == [0.0, 0.5, 0.6]  # Resample's sampling, as given
    assert (solution.answer, solution.confidence, solution.chosen_attempt) == ("1", 0.25, 0)
    assert solution.stop_reason == "enough"  # the policy's Stop reason, recorded on the solution
    from qvq_ray.problem import solution_from_row, solution_to_row

    assert solution_from_row(solution_to_row(solution, problem)).stop_reason == "enough"  # and in the output row
    state = RecordingPolicy.seen[0]
    assert state.problem.answer is None and state.problem.meta == {}  # mode self: a gold-free view
    assert sorted(state.attempts) == [0, 1, 2]


def test_a_bad_import_path_fails_when_the_solver_is_built(verifier):
    from qvq_ray.solver import Solver

    with pytest.raises(ModuleNotFoundError):
        Solver(ScriptedEngineFake(["x"]), verifier, policy=PolicyConfig(import_path="no_such_pkg_anywhere:Policy"))


def test_builtin_policies_are_protocol_classes():
    from qvq_ray.policies import FirstHealthy, Oracle, Policy, SelfConsistency, builtin_policy, load_policy

    assert builtin_policy(PolicyConfig()) is FirstHealthy
    assert builtin_policy(PolicyConfig(self_consistency=True)) is SelfConsistency
    assert builtin_policy(PolicyConfig(mode="oracle", self_consistency=True)) is Oracle
    assert all(issubclass(c, Policy) for c in (FirstHealthy, Oracle, SelfConsistency))
    assert load_policy(PolicyConfig(import_path="qvq_ray.policies.Oracle")) is Oracle


# ---------------------------------------------------------------- the example, on the real tiny model


@pytest.fixture(scope="module")
def example_on_path():
    """The example's folder on sys.path, as PYTHONPATH puts it (the verify workers copy sys.path)."""
    sys.path.insert(0, str(EXAMPLE))
    yield
    sys.path.remove(str(EXAMPLE))


def _solve_all(config: QvqConfig, engine, problems):
    from qvq_ray.solver import Solver
    from qvq_ray.verify import Verifier

    with Verifier(config.verifier) as verifier:
        solver = Solver.from_config(engine, verifier, config)

        async def run():
            return await asyncio.gather(*(solver.solve(p) for p in problems))

        return {s.id: s for s in asyncio.run(run())}


def test_example_check_and_policy_change_outcomes_on_the_tiny_model(example_on_path):
    """The same 4 unseen problems, greedy, with and without the example's check and policy.

    The trained tiny model answers 40+98 (varith-test-002) with 138: without the check, accepted at
    once; with the check, `answer_in_range:out_of_range` makes every attempt a failure, the built-in
    policy spends all 4 attempts on it, and StopWhenRepeating stops at the second (same answer back),
    which it sampled warmer. In-range answers are untouched by either."""
    from qvq_ray.datasets import load_problems
    from qvq_ray.engines.hf_engine import HFEngine

    example = QvqConfig.from_yaml(EXAMPLE / "config.yaml")
    plain = example.model_copy(deep=True)
    plain.verifier.checks = []
    plain.policy = PolicyConfig(max_attempts=4)
    check_only = example.model_copy(deep=True)
    check_only.policy.import_path = None
    problems = list(load_problems(str(ROOT / "examples" / "arithmetic-test"), limit=4))
    engine = HFEngine(example.model, example.engine)
    try:
        runs = {name: _solve_all(c, engine, problems) for name, c in
                (("plain", plain), ("check", check_only), ("example", example))}
    finally:
        asyncio.run(engine.close())

    out_of_range = [pid for pid, s in runs["plain"].items() if s.answer is not None and int(s.answer) > 100]
    in_range = [pid for pid, s in runs["plain"].items() if s.answer is not None and 0 <= int(s.answer) <= 100]
    assert "varith-test-002" in out_of_range and in_range, {k: s.answer for k, s in runs["plain"].items()}
    for pid in out_of_range:
        plain_s, check_s, example_s = (runs[name][pid] for name in ("plain", "check", "example"))
        assert len(plain_s.attempts) == 1 and plain_s.confidence == 1.0
        assert not any(i.startswith("answer_in_range:") for i in plain_s.verdict.issues)
        assert len(check_s.attempts) == 4 and check_s.confidence == 0.0  # re-sampled on the user issue
        assert all("answer_in_range:out_of_range" in a.verdict.issues for a in check_s.attempts)
        assert len(example_s.attempts) == 2  # the policy stopped when the failed answer came back
        assert [a.sampling.temperature for a in example_s.attempts] == [0.0, 0.3]
        assert example_s.completion_tokens < check_s.completion_tokens
    for pid in in_range:
        assert all(len(runs[name][pid].attempts) == 1 for name in runs)
        assert runs["example"][pid].answer == runs["plain"][pid].answer


@pytest.mark.slow
def test_example_runs_as_a_batch_job_with_the_module_on_pythonpath(tmp_path):
    """`qvq-ray solve --config examples/custom_check_policy/config.yaml`: the engine actor's verifier
    workers and its solver import custom_steps from PYTHONPATH (the local cluster's workers inherit it)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    result = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "solve", str(ROOT / "examples" / "arithmetic-test"), "--limit", "4",
         "--out", str(out), "--config", str(EXAMPLE / "config.yaml"), "--num-cpus", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    from qvq_ray.report.summary import read_output

    rows = {r["id"]: r for r in read_output(out).to_pylist()}
    assert len(rows) == 4 and not any(r["error"] for r in rows.values()), rows
    row = rows["varith-test-002"]
    assert row["num_attempts"] == 2, row
    assert all("answer_in_range:out_of_range" in a["verdict"]["issues"] for a in row["attempts"])
    assert [a["sampling"]["temperature"] for a in row["attempts"]] == [0.0, 0.3]
    assert rows["varith-test-001"]["num_attempts"] == 1
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows_out"] == 4


@pytest.mark.slow
def test_example_runs_in_the_serve_app_with_the_module_on_pythonpath():
    """`qvq-ray serve examples/custom_check_policy/serve.yaml`: /v1/solve on 40+98 comes back with the
    user check's issue on each attempt and the example policy's two attempts, the second warmer."""
    import base64

    import httpx

    from tests.conftest import end_process_session, free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qvq_ray.cli", "serve", str(EXAMPLE / "serve.yaml"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        image = base64.b64encode((ROOT / "examples" / "arithmetic-test" / "images" / "test-002.png").read_bytes()).decode()
        payload = {"id": "t2", "question": "What is the result of the calculation shown in the image?", "images": [image]}
        deadline = time.monotonic() + 300
        response = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/v1/solve", json=payload, timeout=120)
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        assert response is not None and response.status_code == 200, proc.stdout.read() if proc.poll() is not None else response
        body = response.json()
        assert [a["verdict"]["answer"] for a in body["attempts"]] == ["138", "138"], body
        assert all("answer_in_range:out_of_range" in a["verdict"]["issues"] for a in body["attempts"])
        assert [a["sampling"]["temperature"] for a in body["attempts"]] == [0.0, 0.3]
        assert body["confidence"] == 0.0
    finally:
        end_process_session(proc)
