"""The judge model (`verifier.judge`): asked only where the rules cannot decide, within budget, cached.

The judge here is `Scripted` (tests/test_openai_engine.py), a scripted OpenAI-compatible endpoint,
named so: a real HTTP server reached through the real `openai` client, whose answers are fixed so
the assertions can name them. The judge against real endpoints (our own Serve app with the tiny
model, and the engine actors of a batch job) is in tests/test_serve.py and tests/test_batch_job.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qvq_ray.config import JudgeConfig, OpenAIEngineConfig, QvqConfig
from tests.test_openai_engine import Scripted, ok_body

NO_ANSWER = "I looked at the figure for a long time, but I am not able to make out what it shows, so I will stop here."
# question -> (gold, response, what the scripted judge says when asked about it)
CASES = {
    "marked": ("12", "Adding the two rows gives 5 + 7 = 12. The answer is 12.", None),  # rules: no call
    "math-wrong": ("3/4", "Halving twice... The answer is 0.8.", None),  # sympy says no; never the judge's
    "unmarked": ("7", NO_ANSWER + " Q-unmarked", "7"),  # extraction: the judge reads 7
    "judge-finds-none": ("9", NO_ANSWER + " Q-none", "None"),  # extraction: the judge finds none
    "free-text-same": ("hydrogen gas", "Zinc displaces it from the acid. The answer is H2 is released.", "Judgement: 1"),
    "free-text-other": ("Jupiter", "Comparing the discs in the picture, the answer is Saturn.", "Judgement: 0"),
}


MODELS = (200, {"object": "list", "data": [{"id": "judge", "object": "model"}]})


def judge_says(body: dict | None):
    """The scripted judge: its answer for the case its prompt is about (and its model list)."""
    if body is None:
        return MODELS
    prompt = body["messages"][-1]["content"]
    prompt = prompt if isinstance(prompt, str) else "".join(p.get("text", "") for p in prompt)
    case = prompt.split("[Question]: ")[-1] if "Judgement:" in prompt[-40:] else prompt.rsplit("Question: ", 1)[-1]
    for name, (_, _, said) in CASES.items():
        if case.startswith(f"case {name}") and said is not None:
            return 200, ok_body((said,), prompt_tokens=100, completion_tokens=3)
    return 500, {"error": {"message": f"the scripted judge has no answer for {case[:60]!r}"}}


@pytest.fixture
def endpoint():
    server = Scripted(answer=judge_says)
    yield server
    server.close()


def _write(tmp_path: Path, cases: dict) -> tuple[Path, Path]:
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": name, "question": f"case {name}: what is it?", "answer": gold}) + "\n"
                                for name, (gold, _, _) in cases.items()))
    results = tmp_path / "results.json"
    results.write_text(json.dumps({name: {"response": response} for name, (_, response, _) in cases.items()}))
    return problems, results


def _config(url: str, cache: Path, **judge) -> QvqConfig:
    config = QvqConfig()
    config.verifier.judge = JudgeConfig(
        engine=OpenAIEngineConfig(base_url=url, remote_model="judge", max_retries=0), cache_path=str(cache), **judge
    )
    return config


def _rescore(tmp_path, name, problems, results, config):
    from qvq_ray.batch.rescore import rescore
    from qvq_ray.report.summary import read_output

    out = tmp_path / name
    summary = rescore(results, problems, out, problems_format="problems", config=config, workers=1)
    return summary, {r["id"]: r for r in read_output(out).to_pylist()}


def _judge_prompts(endpoint) -> list[str]:
    return [r["body"]["messages"][-1]["content"][0]["text"] for r in endpoint.requests if r["path"].endswith("/chat/completions")]


def test_the_judge_is_asked_only_what_the_rules_leave_undecided_and_labelled(endpoint, tmp_path):
    problems, results = _write(tmp_path, CASES)
    summary, rows = _rescore(tmp_path, "first", problems, results, _config(endpoint.url, tmp_path / "judge.sqlite3"))

    prompts = _judge_prompts(endpoint)
    asked = sorted({re.search(r"case ([a-z-]+):", p.rsplit("Question", 1)[-1]).group(1) for p in prompts})
    assert asked == ["free-text-other", "free-text-same", "judge-finds-none", "unmarked"], asked
    assert len(prompts) == 4  # one call each: no retries, no second opinion

    def verdict(name):
        return rows[name]["attempts"][0]["verdict"]

    assert (rows["marked"]["correct"], rows["marked"]["decided_by"], verdict("marked")["judge"]) == (True, "rules", [])
    assert (rows["math-wrong"]["correct"], verdict("math-wrong")["judge"]) == (False, [])  # sympy's no stands
    assert rows["math-wrong"]["decided_by"] in ("rules", "sympy")
    # extraction: the judge read the answer, the rules compared it
    assert verdict("unmarked")["answer"] == "7" and verdict("unmarked")["extraction"] == "judge"
    assert (rows["unmarked"]["correct"], rows["unmarked"]["decided_by"]) == (True, "judge")
    assert "weak_extraction" in verdict("unmarked")["issues"] and "no_final_answer" not in verdict("unmarked")["issues"]
    assert (rows["judge-finds-none"]["correct"], rows["judge-finds-none"]["decided_by"]) == (False, "judge")
    assert verdict("judge-finds-none")["answer"] is None
    assert verdict("judge-finds-none")["judge"][0]["outcome"] == ""
    # equivalence of free text
    assert (rows["free-text-same"]["correct"], rows["free-text-same"]["decided_by"]) == (True, "judge")
    assert verdict("free-text-same")["judge"][0]["task"] == "equivalence"
    assert (rows["free-text-other"]["correct"], rows["free-text-other"]["decided_by"]) == (False, "judge")
    assert summary.decided_by["judge"] == 4 and summary.judge_stats.startswith("judge calls 4 (cached 0")

    # the same job again: every judge answer comes from the cache
    summary2, rows2 = _rescore(tmp_path, "second", problems, results, _config(endpoint.url, tmp_path / "judge.sqlite3"))
    assert len(_judge_prompts(endpoint)) == 4  # 0 new calls
    assert summary2.judge_stats.startswith("judge calls 0 (cached 4")
    assert {k: (r["correct"], r["decided_by"]) for k, r in rows2.items()} == {k: (r["correct"], r["decided_by"]) for k, r in rows.items()}
    assert all(n["cached"] for r in rows2.values() for n in r["attempts"][0]["verdict"]["judge"])


def test_a_judge_that_fails_or_is_over_budget_leaves_the_case_not_judged(endpoint, tmp_path):
    cases = {
        "unscripted": ("5", NO_ANSWER, None),  # the endpoint answers 500 for this one
        "unmarked": ("7", NO_ANSWER + " Q-unmarked", "7"),
        "free-text-other": ("Jupiter", NO_ANSWER + " Q-two", "Judgement: 0"),  # needs extraction and equivalence
    }
    problems, results = _write(tmp_path, cases)

    def says(body):
        if body is None:
            return MODELS
        prompt = body["messages"][-1]["content"][0]["text"]
        if "Extracted answer" in prompt[-30:] and "case free-text-other" in prompt.rsplit("Question: ", 1)[-1]:
            return 200, ok_body(("Saturn",))  # its extraction answer
        return judge_says(body)

    endpoint.answer = says
    config = _config(endpoint.url, tmp_path / "judge.sqlite3", max_calls_per_problem=1)
    summary, rows = _rescore(tmp_path, "out", problems, results, config)

    failed = rows["unscripted"]
    assert (failed["correct"], failed["decided_by"]) == (None, None)  # not judged, never "wrong"
    assert "HTTP 500" in failed["attempts"][0]["verdict"]["judge"][0]["error"]
    over = rows["free-text-other"]
    notes = over["attempts"][0]["verdict"]["judge"]
    assert [n["task"] for n in notes] == ["extraction", "equivalence"]
    assert notes[0]["outcome"] == "Saturn" and notes[1]["outcome"] is None and "over budget" in notes[1]["error"]
    assert (over["correct"], over["decided_by"]) == (None, None)
    assert (rows["unmarked"]["correct"], rows["unmarked"]["decided_by"]) == (True, "judge")
    assert summary.decided_by == {"judge": 1, "not judged": 2}

    # a failure is not cached: the next run asks again. The answered ones come from the cache, which
    # costs no budget, so the equivalence refused last time is asked now: 2 new calls.
    before = len(_judge_prompts(endpoint))
    _, again = _rescore(tmp_path, "again", problems, results, config)
    assert len(_judge_prompts(endpoint)) - before == 2
    assert (again["free-text-other"]["correct"], again["free-text-other"]["decided_by"]) == (False, "judge")
    assert (again["unscripted"]["correct"], again["unscripted"]["decided_by"]) == (None, None)


def test_a_slow_judge_times_out_into_not_judged(endpoint, tmp_path):
    cases = {"unmarked": ("7", NO_ANSWER + " Q-unmarked", "7")}
    problems, results = _write(tmp_path, cases)
    endpoint.answer = lambda body: {"status": 200, "body": ok_body(("7",)), "delay": 3.0}
    summary, rows = _rescore(tmp_path, "out", problems, results, _config(endpoint.url, tmp_path / "c.sqlite3", timeout_s=0.5))
    assert (rows["unmarked"]["correct"], rows["unmarked"]["decided_by"]) == (None, None)
    assert "timed out" in rows["unmarked"]["attempts"][0]["verdict"]["judge"][0]["error"]
    assert summary.seconds < 3.0 + 10  # the job went on past the slow call


def test_in_self_mode_the_judge_never_sees_gold(endpoint, tmp_path, tiny_model_dir):
    """The solver (mode self) on the random tiny Qwen2-VL, which never writes an answer, with a
    judge: the judge extracts from the question and the response alone; gold never reaches it."""
    import asyncio

    from qvq_ray.engines import build_engine
    from qvq_ray.problem import Problem
    from qvq_ray.solver import Solver
    from qvq_ray.verify import Verifier
    from qvq_ray.judge.checker import judging_checker

    config = _config(endpoint.url, tmp_path / "c.sqlite3")
    base = QvqConfig.preset("tiny-cpu")
    config.model, config.engine = base.model, base.engine
    config.model.path = str(tiny_model_dir)
    config.sampling.max_tokens = 24
    config.policy.max_attempts = 2
    endpoint.answer = lambda body: (200, ok_body(("7",)))
    problem = Problem(id="p", question="case unmarked: what is it?", answer="GOLD-SENTINEL-81", source="test")

    async def run():
        engine = build_engine(config)
        with Verifier(config.verifier) as verifier:
            checker = judging_checker(verifier, config, engine)
            try:
                return await Solver.from_config(engine, checker, config).solve(problem, image_bytes=[])
            finally:
                await checker.close()
                await engine.close()

    solution = asyncio.run(run())
    prompts = _judge_prompts(endpoint)
    asked = [a for a in solution.attempts if a.verdict.judge]
    assert asked and len(prompts) == len(asked), [a.text for a in solution.attempts]
    assert all("GOLD-SENTINEL" not in p and "case unmarked" in p for p in prompts)
    assert all(a.verdict.answer == "7" and a.verdict.decided_by == "judge" and a.verdict.correct is None for a in asked)
    assert solution.answer == "7"


def test_judge_config_is_checked_before_anything_runs(tmp_path):
    from pydantic import ValidationError

    from qvq_ray.judge.model import Judge

    with pytest.raises(ValidationError):
        QvqConfig.model_validate({"verifier": {"judge": {"prompts": "lmms"}}})
    with pytest.raises(ValidationError):
        QvqConfig.model_validate({"verifier": {"judge": {"max_calls_per_problem": 0}}})
    bad = JudgeConfig(extraction_template="Extract the answer:", cache_path=None)
    with pytest.raises(ValueError, match=r"extraction template never uses \['\{response\}'\]"):
        Judge(bad, engine=None, identity="x")


@pytest.mark.parametrize("preset", ["mathvista", "vlmevalkit"])
def test_presets_render_the_case_and_read_the_judge(preset):
    from qvq_ray.judge import prompts as jp

    templates = jp.PRESETS[preset]
    choice = jp.render(templates["choice"], question="Which?", choices=["red", "blue"], response="It is blue {x}.")
    assert "It is blue {x}." in choice and "blue" in choice and "{question}" not in choice
    plain = jp.render(templates["extraction"], question="How many?", response="About \\frac{1}{2} of them")
    assert plain.rstrip().endswith("Extracted answer:") and "\\frac{1}{2}" in plain
    same = jp.render(templates["equivalence"], question="Gas?", answer="H2", gold="hydrogen")
    assert "[Standard Answer]: hydrogen" in same and "[Model Answer]: H2" in same
    assert jp.read_extraction("Extracted answer: 3.5\nbecause", None) == "3.5"
    assert jp.read_extraction(" (B) ", ["x", "y"]) == "B" and jp.read_extraction("Z", ["x", "y"]) == ""
    assert jp.read_extraction("None.", None) == ""
    assert jp.read_extraction("E", ["x", "y"]) is None and jp.read_extraction("}", None) is None  # unreadable
    assert jp.read_judgement("Judgement: 1") is True and jp.read_judgement("judgment: 0 because") is False
    assert jp.read_judgement("I think they are similar") is None


def test_a_wrong_judge_endpoint_is_one_clear_error_before_any_row_is_written(tmp_path):
    from tests.conftest import free_port

    problems, results = _write(tmp_path, {"unmarked": CASES["unmarked"]})
    with pytest.raises(ValueError, match=r"judge endpoint: .*/models unreachable"):
        _rescore(tmp_path, "out", problems, results, _config(f"http://127.0.0.1:{free_port()}/v1", tmp_path / "c.sqlite3"))
    assert not (tmp_path / "out").exists()


def test_judge_flags_of_solve_and_rescore_set_the_config():
    from qvq_ray.cli import UsageError, _apply_judge_flags, build_parser

    parser = build_parser()
    config = QvqConfig()
    _apply_judge_flags(config, parser.parse_args(["solve", "in", "--out", "o", "--judge-url", "http://h:8000/v1", "--judge-model", "m"]))
    assert (config.verifier.judge.engine.base_url, config.verifier.judge.engine.remote_model) == ("http://h:8000/v1", "m")
    config = QvqConfig()
    _apply_judge_flags(config, parser.parse_args(["solve", "in", "--out", "o"]))
    assert config.verifier.judge is None  # off unless asked
    _apply_judge_flags(config, parser.parse_args(["rescore", "r", "--problems", "p", "--out", "o", "--judge", "--judge-cache", "/tmp/j"]))
    assert config.verifier.judge.engine is None and config.verifier.judge.cache_path == "/tmp/j"
    with pytest.raises(UsageError, match="--judge-model names the model at --judge-url"):
        _apply_judge_flags(QvqConfig(), parser.parse_args(["solve", "in", "--out", "o", "--judge-model", "m"]))


def test_the_judge_budget_is_per_solve_never_per_client_chosen_id(endpoint, tmp_path):
    """Online, `problem.id` is the client's id: two requests reusing one id each get their own
    budget, while the attempts of one solve (one Problem object) share theirs."""
    import asyncio
    import gc

    from qvq_ray.config import VerifierConfig
    from qvq_ray.problem import Problem
    from qvq_ray.verify import Verifier
    from qvq_ray.judge.checker import judging_checker

    config = _config(endpoint.url, tmp_path / "judge.sqlite3", max_calls_per_problem=1)
    response = NO_ANSWER + " Q-unmarked"

    async def run():
        with Verifier(VerifierConfig(workers=1)) as verifier:
            checker = judging_checker(verifier, config)
            try:
                first, second = (Problem(id="same-id", question=f"case unmarked: what is it? ({i})") for i in range(2))
                one = await checker.check(response, first.spec, problem=first)
                # the same solve's next attempt (another text: a cached answer would cost no budget)
                again = await checker.check(response + " Again.", first.spec, problem=first)
                other = await checker.check(response, second.spec, problem=second)  # another request, same id
                kept = len(checker._solve_budgets)
                del first, second
                gc.collect()
                return one, again, other, kept, len(checker._solve_budgets)
            finally:
                await checker.close()

    one, again, other, kept, left = asyncio.run(run())
    assert one.answer == "7" and one.judge[0].error is None
    assert again.answer is None and "over budget" in again.judge[0].error
    assert other.answer == "7" and other.judge[0].error is None
    assert (kept, left) == (2, 0)  # a finished solve's budget goes with its Problem


def test_a_locked_cache_file_never_holds_the_event_loop(tmp_path, caplog):
    """Another process holding the write lock on the cache (in WAL mode reads still go on): a write
    gives up after the short lock timeout and stays in memory, with one warning, and the event loop
    kept running meanwhile (the cache is used from a worker thread)."""
    import asyncio
    import sqlite3
    import time

    from qvq_ray.judge.cache import JudgeCache

    cache = JudgeCache(tmp_path / "judge.sqlite3", lock_timeout_s=0.5)
    cache.put("warm", "kept")
    other = JudgeCache(tmp_path / "judge.sqlite3", lock_timeout_s=0.5)  # another process's view
    holder = sqlite3.connect(str(tmp_path / "judge.sqlite3"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a write in progress elsewhere

    async def run():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        found = await other.aget("warm")
        started = time.perf_counter()
        await other.aput("new", "text")
        await other.aput("newer", "text")
        elapsed = time.perf_counter() - started
        ticker.cancel()
        return found, elapsed, ticks

    try:
        with caplog.at_level("WARNING", logger="qvq_ray.judge.cache"):
            found, elapsed, ticks = asyncio.run(run())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert found == "kept" and other._memory == {"warm": "kept", "new": "text", "newer": "text"}
    assert 0.9 <= elapsed < 5 and ticks >= 20  # two lock timeouts waited off the loop, which kept ticking
    assert len([r for r in caplog.records if "judge cache" in r.getMessage()]) == 1
    assert JudgeCache(tmp_path / "judge.sqlite3").get("new") is None  # not written: asked again next run
