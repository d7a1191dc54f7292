"""The verifier: final-answer extraction, equivalence, the timeout-safe pool, the Verifier.

One pool (two real worker processes) is shared by the whole module to keep it fast on 2 cores.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from qvq_ray.config import VerifierConfig
from qvq_ray.verify.equivalence import answers_equivalent, canonical_form, choice_letter, quick_equivalent
from qvq_ray.verify.extract import detect_issues, extract_final_answer
from qvq_ray.verify.pool import VerifyPool, VerifyTimeout, VerifyWorkerError
from qvq_ray.verify.verifier import Verifier

SLEEP = "qvq_ray.verify.pool._sleep_for_test"
EQUIV = "qvq_ray.verify.equivalence.answers_equivalent"


@pytest.fixture(scope="module")
def pool():
    with VerifyPool(workers=2, timeout_s=10.0) as p:
        yield p


@pytest.fixture(scope="module")
def verifier(pool):
    v = Verifier(VerifierConfig(timeout_s=10.0, workers=2), pool=pool)
    yield v
    v.close()


# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "response, expected",
    [
        ("Let me think... so 4 * 6.\n\n**Final Answer**\n\n\\[ \\boxed{24} \\]", "24"),
        ("Hence the ratio is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("First \\boxed{3}, but wait, recheck: \\boxed{5}", "5"),
        ("The set is $\\boxed{\\{1, 2\\}}$.", "\\{1, 2\\}"),
        ("\\fbox{7}", "7"),
        ("Therefore, the answer is (C).", "(C)"),
        ("所以答案是 5", "5"),
        ("**答案**\n\n$\\sqrt{2}$", "\\sqrt{2}"),
        ("**Final Answer**\n\\[\n42\n\\]", "42"),
        ("Final Answer: The final answer is $24$. I hope it is correct.", "24"),
        ("Answer: B", "B"),
        ("the answer is 3.5 cm. Next we check it.", "3.5 cm"),
    ],
)
def test_extract_final_answer_shapes(response, expected):
    assert extract_final_answer(response) == expected


@pytest.mark.parametrize(
    "response",
    [
        "I think it is \\boxed{}",
        "Earlier \\boxed{3}; final \\boxed{\\frac{1",  # truncated inside the last box
        "Thinking about the triangle, it has three sides and",
        "",
    ],
)
def test_no_answer_is_none(response):
    assert extract_final_answer(response) is None
    assert detect_issues(response, "stop") == ["no_final_answer"]


def test_issues_truncated_and_clean():
    assert detect_issues("... so we get 4 and then", "length") == ["no_final_answer", "truncated"]
    assert detect_issues("\\boxed{4}", "length") == ["truncated"]
    assert detect_issues("\\boxed{4}", "stop") == []


def test_extraction_is_bounded_on_hostile_text():
    hostile = [
        "\\boxed{" + "{" * 100_000,
        "$" * 100_000,
        "\\boxed{" + "$" * 100_000 + "}",
        "\\boxedx" * 15_000,
        "final answer " * 8_000,
        "\\" * 100_000,
    ]
    start = time.perf_counter()
    for text in hostile:
        extract_final_answer(text)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------- equivalence (string rules, in-process)


def test_canonical_form_groups_equal_writings():
    assert canonical_form("$\\dfrac{1}{2}$.") == canonical_form("\\frac{1}{2}")
    assert canonical_form("(C)") == canonical_form("\\text{(C)}") == "C"
    assert canonical_form("024.50") == "24.5"
    assert canonical_form("1{,}000") == canonical_form("1,000") == "1000"
    assert canonical_form("x + 1") == "x+1"
    assert canonical_form("2 3") != canonical_form("23")


def test_choice_letter():
    assert choice_letter("(C)") == "C"
    assert choice_letter("\\text{(C)}") == "C"
    assert choice_letter("C. 24") == "C"
    assert choice_letter("x = 2") is None
    assert choice_letter("24") is None


def test_quick_rules_decide_without_sympy():
    assert quick_equivalent("C", "(C)") is True
    assert quick_equivalent("(B)", "C") is False
    assert quick_equivalent("Paris", "pairs") is False  # math-verify would call this an anagram match
    assert quick_equivalent("\\frac{1}{2}", "0.5") is None  # needs math-verify


# ---------------------------------------------------------------- equivalence (math-verify, in the pool)


@pytest.mark.parametrize(
    "answer, gold, choices, expected",
    [
        ("\\frac{1}{2}", "0.5", None, True),
        ("2", "3", None, False),
        ("C", "(C)", None, True),
        ("\\text{(C)}", "C", None, True),
        ("(B)", "C", None, False),
        ("x=2", "2", None, True),
        ("2\\sqrt{3}", "\\sqrt{12}", None, True),
        ("24", "C", ["1", "2", "24"], True),  # the option's text for a letter gold
        ("C", "24", ["1", "2", "24"], True),  # a letter for an option-text gold
        ("B", "24", ["1", "2", "24"], False),
    ],
)
def test_answers_equivalent_in_pool(pool, answer, gold, choices, expected):
    assert pool.call(EQUIV, answer, gold, choices) is expected


def test_answers_equivalent_in_process_matches_pool(pool):
    # Same function, same result, whichever process runs it.
    assert answers_equivalent("\\frac{1}{2}", "0.5") is pool.call(EQUIV, "\\frac{1}{2}", "0.5")


# ---------------------------------------------------------------- pool


def test_pool_kills_a_hanging_call_and_recovers(pool):
    assert pool.call(SLEEP, 0.0) == 0.0  # warm: the timeout below measures the call only
    start = time.perf_counter()
    with pytest.raises(VerifyTimeout):
        pool.call(SLEEP, 30.0, timeout_s=1.0)
    assert time.perf_counter() - start < 1.0 + 3.0
    # The killed worker was replaced: calls keep working, on every worker.
    results = [pool.call(SLEEP, 0.01) for _ in range(4)]
    assert results == [0.01] * 4


def test_pool_errors_and_deaths_come_back(pool):
    with pytest.raises(VerifyWorkerError, match="boom"):
        pool.call("qvq_ray.verify.pool._raise_for_test", "boom")
    with pytest.raises(VerifyWorkerError, match="died"):
        pool.call("qvq_ray.verify.pool._exit_for_test", 3)
    assert pool.call(SLEEP, 0.0) == 0.0


def test_pool_runs_only_allowlisted_names(pool):
    with pytest.raises(PermissionError):
        pool.call("os.system", "echo hacked")
    with pytest.raises(PermissionError):
        pool.call("builtins.eval", "1+1")


def test_pool_acall_runs_calls_concurrently(pool):
    async def main():
        return await asyncio.gather(*(pool.acall(SLEEP, 0.8) for _ in range(2)))

    pool.call(SLEEP, 0.0)
    start = time.perf_counter()
    assert asyncio.run(main()) == [0.8, 0.8]
    assert time.perf_counter() - start < 1.5  # two workers: in parallel, not one after another


def test_closed_pool_refuses_calls():
    p = VerifyPool(workers=1, timeout_s=5.0)
    assert p.call(SLEEP, 0.0) == 0.0
    proc = next(iter(p._all)).process
    p.close()
    assert proc.poll() is not None  # the worker process is gone
    with pytest.raises(RuntimeError):
        p.call(SLEEP, 0.0)


# ---------------------------------------------------------------- Verifier


def test_verifier_check_against_gold(verifier):
    verdict = verifier.check_sync("**Final Answer**\n\n\\[ \\boxed{\\frac{1}{2}} \\]", gold="0.5")
    assert verdict.answer == "\\frac{1}{2}"
    assert verdict.canonical == "\\frac{1}{2}"
    assert verdict.correct is True
    assert verdict.issues == []
    assert verdict.elapsed_s > 0
    assert verifier.check_sync("\\boxed{3}", gold="4").correct is False
    assert asyncio.run(verifier.check("the answer is (C).", gold="C", choices=["1", "2", "3"])).correct is True


def test_verifier_without_gold_does_not_touch_the_pool():
    v = Verifier(VerifierConfig(timeout_s=5.0, workers=1))
    verdict = asyncio.run(v.check("so it is \\boxed{7}", finish_reason="length"))
    assert verdict.correct is None
    assert verdict.answer == "7"
    assert verdict.issues == ["truncated"]
    assert v.pool._all == set()  # no worker was ever started
    v.close()


def test_verifier_no_answer_with_gold_is_wrong(verifier):
    verdict = verifier.check_sync("I could not finish the", gold="3", finish_reason="length")
    assert verdict.correct is False
    assert verdict.issues == ["no_final_answer", "truncated"]


def test_verifier_timeout_is_not_judged(verifier):
    # A real hostile answer: sympy grinds on the tower of powers until the worker is killed.
    verdict = verifier.check_sync("\\boxed{9^{9^{9^{9}}}}", gold="1", timeout_s=1.0)
    assert verdict.correct is None
    assert "timeout" in verdict.issues
    assert verdict.elapsed_s < 1.0 + 3.0
    assert verifier.check_sync("\\boxed{0.5}", gold="\\frac12").correct is True  # pool recovered


def test_verifier_works_off_the_main_thread(verifier):
    """The Ray Serve / Ray Data actor situation: no signals outside the main thread."""
    results: list = []
    errors: list = []

    def work():
        try:
            results.append(verifier.check_sync("\\boxed{\\frac{2}{4}}", gold="0.5"))
            results.append(asyncio.run(verifier.check("\\boxed{2^{10}}", gold="1024")))
            results.append(asyncio.run(verifier.equivalent("\\sqrt{4}", "2")))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert not errors, errors
    assert [r if isinstance(r, bool) else r.correct for r in results] == [True, True, True]


def test_untrusted_text_never_executes(verifier, tmp_path):
    marker = tmp_path / "hacked"
    payload = f"__import__('os').system('touch {marker}')"
    verifier.check_sync(f"\\boxed{{{payload}}}", gold="0")
    verifier.check_sync("\\boxed{0}", gold=payload)
    verifier.check_sync(f"The answer is {payload}", gold=payload.replace("touch", "ls"))
    assert asyncio.run(verifier.equivalent(payload, "0")) is False
    time.sleep(0.2)
    assert not marker.exists()


def test_module_level_check():
    from qvq_ray.verify import check

    verdict = check("\\boxed{(C)}", "C")  # letters: decided without starting a worker
    assert verdict.correct is True and verdict.canonical == "C"


def test_importing_the_record_stays_cheap():
    code = (
        "import sys, qvq_ray.verify.verdict, qvq_ray.verify; "
        "heavy = [m for m in ('sympy', 'math_verify', 'qvq_ray.verify.pool') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "from qvq_ray.verify import Verdict, extract_final_answer; "
        "assert 'sympy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
