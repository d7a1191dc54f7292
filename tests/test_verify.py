"""The Verifier API: check (sync, async, any thread), the module-level check, the batch form,
vote, the `qvq-ray verify` command, the Verdict record, cheap imports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import pytest

from qvq_ray.config import VerifierConfig
from qvq_ray.problem import Problem
from qvq_ray.verify import AnswerSpec, Verdict, Verifier, check, check_many, vote
from qvq_ray.verify.equivalence import answers_equivalent, canonical_form, quick_equivalent
from qvq_ray.verify.verifier import default_verifier

QVQ = "Let me work through this.\n\n**Final Answer**\n\n\\[ \\boxed{{{}}} \\]"


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


def test_check_against_gold(verifier):
    verdict = verifier.check_sync(QVQ.format("\\frac{1}{2}"), gold="0.5")
    assert verdict.answer == "\\frac{1}{2}"
    assert verdict.canonical == "0.5"
    assert verdict.correct is True
    assert verdict.issues == [] and verdict.false_claims == []
    assert verdict.elapsed_s > 0
    assert verifier.check_sync("\\boxed{3}", gold="4").correct is False
    spec = AnswerSpec(choices=["1", "2", "3"])
    assert asyncio.run(verifier.check("the answer is (C).", spec, gold="C")).correct is True


def test_check_with_an_answer_spec(verifier):
    assert verifier.check_sync(QVQ.format("247 cm"), AnswerSpec(unit="m"), gold="2.47").correct is True
    assert verifier.check_sync(QVQ.format("2.5"), AnswerSpec(tolerance="1e-1"), gold="2.47").correct is True
    assert verifier.check_sync(QVQ.format("2.5"), AnswerSpec(), gold="2.47").correct is False
    assert verifier.check_sync(QVQ.format("130.94"), AnswerSpec(precision=1), gold="130.9").correct is True
    assert verifier.check_sync(QVQ.format("(1, 2)"), AnswerSpec(answer_type="Tuple"), gold="(1,2)").correct is True
    problem = Problem(id="p", question="q", answer="13.1", unit="m/s", tolerance=0.1)
    assert problem.spec == AnswerSpec(unit="m/s", tolerance=[0.1])  # flat fields of a problem file go to its spec
    assert verifier.check_sync(QVQ.format("13.15 m/s"), problem.spec, gold=problem.answer).correct is True
    mmmu = AnswerSpec(alternatives=["3.429"])  # several accepted golds
    assert verifier.check_sync(QVQ.format("3.429"), mmmu, gold="24/7").correct is True
    assert verifier.check_sync(QVQ.format("3.5"), mmmu, gold="24/7").correct is False
    colours = AnswerSpec(alternatives=["crimson"])
    assert verifier.compare_sync("crimson", "red", colours) is True  # scoring honours them too
    assert verifier.compare_sync("blue", "red", colours) is False
    assert verifier.same_answer_sync("crimson", "red", colours) is False  # two answers never vote together by them


def test_without_gold_does_not_touch_the_pool():
    v = Verifier(VerifierConfig(timeout_s=5.0, workers=1))
    verdict = asyncio.run(v.check("so it is \\boxed{7}", finish_reason="length"))
    assert verdict.correct is None
    assert verdict.answer == "7"
    assert verdict.issues == ["truncated"]
    assert v.pool._all == set()  # plain answer, no claims: no worker was ever started
    v.close()


def test_gold_free_issues(verifier):
    assert verifier.check_sync("so \\boxed{\\frac{1}{}+}").issues == ["unparseable"]
    assert verifier.check_sync("so \\boxed{x^2+1}").issues == []
    verdict = verifier.check_sync("So 97 - 73 = 34, hence \\boxed{34}")
    assert verdict.issues == ["false_calculation"] and verdict.false_claims == ["97 - 73 = 34"]


def test_no_answer_with_gold_is_wrong(verifier):
    verdict = verifier.check_sync("I could not finish the", gold="3", finish_reason="length")
    assert verdict.correct is False
    assert verdict.issues == ["no_final_answer", "truncated"]


def test_timeout_is_not_judged(verifier):
    gold = "\\sum_{k=1}^{50} \\frac{x^k}{k!} + \\prod_{k=1}^{30} (x+k)"
    verdict = verifier.check_sync(QVQ.format(gold + "+1"), gold=gold, timeout_s=0.05)
    assert verdict.correct is None and "timeout" in verdict.issues
    assert verifier.check_sync("\\boxed{0.5}", gold="\\frac12").correct is True  # the pool recovered


def test_works_off_the_main_thread(verifier):
    """The Ray Serve / Ray Data actor situation: no signals outside the main thread."""
    results: list = []
    errors: list = []

    def work():
        try:
            results.append(verifier.check_sync("\\boxed{\\frac{2}{4}}", gold="0.5"))
            results.append(asyncio.run(verifier.check("\\boxed{2^{10}}", gold="1024")))
            results.append(asyncio.run(verifier.same_answer("\\sqrt{4}", "2")))
            results.append(check("\\boxed{x^2-1}", "(x-1)(x+1)"))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert not errors, errors
    assert [r if isinstance(r, bool) else r.correct for r in results] == [True, True, True, True]


def test_same_answer_and_compare(verifier):
    assert verifier.same_answer_sync("x=2", "2") is True
    assert asyncio.run(verifier.same_answer("24", "C", AnswerSpec(choices=["1", "2", "24"]))) is True
    assert verifier.compare_sync("9^{9^{9^{9}}}", "9^{9^{9^{9}}}+1") is None  # too large to judge: not judged
    assert asyncio.run(verifier.compare("9^{9^{9^{9}}}", "9^{9^{9^{9}}}+1")) is None
    assert verifier.same_answer_sync("9^{9^{9^{9}}}", "9^{9^{9^{9}}}+1") is False  # votes apart


def test_module_level_check():
    verdict = check("\\boxed{(C)}", "C")  # letters: decided without a worker
    assert verdict.correct is True and verdict.canonical == "C"
    verdict = check("\\boxed{2.5}", "2.47", tolerance=0.1, unit="m")
    assert verdict.correct is True


def test_batch_form(verifier):
    problems = [
        ("\\boxed{0.5}", "\\frac{1}{2}", None),
        ("\\boxed{C}", "C", AnswerSpec(choices=["1", "2", "3"])),
        ("\\boxed{2.5 m}", "2.47", AnswerSpec(unit="m", tolerance=0.1)),
        ("no answer here", "3", None),
        ("\\boxed{7}", None, None),
    ]
    verdicts = verifier.check_many(problems)
    assert [v.correct for v in verdicts] == [True, True, True, False, None]
    assert [v.correct for v in check_many(problems[:2])] == [True, True]
    with pytest.raises(ValueError):
        verifier.check_many(problems, finish_reasons=["stop"])


def test_vote(verifier):
    verdicts = [
        verifier.check_sync("\\boxed{\\frac{2}{4}}"),
        verifier.check_sync("\\boxed{0.5}"),
        verifier.check_sync("\\boxed{x = 0.5}"),
        verifier.check_sync("\\boxed{3}"),
        verifier.check_sync("no answer"),
        verifier.check_sync("\\boxed{3}", finish_reason="length"),
    ]
    result = vote(verdicts)
    assert result.answer == "\\frac{2}{4}" and result.votes == 3 and result.voters == 4 and result.total == 6
    assert result.share == 0.75 and result.clusters == [[0, 1, 2], [3]] and result.winner_index == 0
    assert verifier.vote(verdicts).votes == 3
    empty = verifier.vote([Verdict()])
    assert empty.answer is None and empty.share == 0.0


def test_string_rules_in_process():
    assert canonical_form("$\\dfrac{1}{2}$.") == canonical_form("\\frac{1}{2}")
    assert canonical_form("(C)") == canonical_form("\\text{(C)}") == "C"
    assert canonical_form("024.50") == "24.5"
    assert canonical_form("1{,}000") == canonical_form("1,000") == "1000"
    assert canonical_form("x + 1") == "x+1"
    assert canonical_form("2 3") != canonical_form("23")
    assert quick_equivalent("C", "(C)") is True
    assert quick_equivalent("(B)", "C") is False
    assert quick_equivalent("Paris", "pairs") is False
    assert quick_equivalent("\\sqrt{2}", "1.41421356") is None  # needs sympy
    assert answers_equivalent("\\frac{1}{2}", "0.5") is True  # the worker function, called in-process


def test_verdict_record():
    verdict = Verdict(answer="1", issues=["false_calculation"], false_claims=["1 + 1 = 3"])
    assert Verdict.model_validate_json(verdict.model_dump_json()) == verdict


def test_cli_verify(tmp_path):
    response = tmp_path / "response.txt"
    response.write_text("So 97 - 73 = 34.\n\n**Final Answer**\n\n\\[ \\boxed{0.5 kg} \\]", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "verify", str(response), "--gold", "500", "--unit", "g"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    verdict = json.loads(out.stdout)
    assert verdict["correct"] is True and verdict["issues"] == ["false_calculation"]
    out = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "verify", "--gold", "2.47", "--tolerance", "1e-1", "--answer-type", "Numerical"],
        input="the answer is 2.5", capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["correct"] is True
    out = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "verify", "--gold", "C", "--choices", "1", "2", "24", "-"],
        input="\\boxed{24}", capture_output=True, text=True, timeout=120,
    )
    assert json.loads(out.stdout)["correct"] is True
    out = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "verify", str(tmp_path / "missing.txt")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_importing_the_record_stays_cheap():
    code = (
        "import sys, qvq_ray.verify.verdict, qvq_ray.verify; "
        "heavy = [m for m in ('sympy', 'math_verify', 'latex2sympy2_extended', 'qvq_ray.verify.pool') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "from qvq_ray.verify import Verdict, extract_final_answer, Verifier, check, vote; "
        "heavy = [m for m in ('sympy', 'math_verify', 'latex2sympy2_extended') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
