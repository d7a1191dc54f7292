"""Hostile inputs return within the time limit with a verdict, never run code, never exhaust memory."""

from __future__ import annotations

import time

import pytest

from qvq_ray.config import VerifierConfig
from qvq_ray.verify.verifier import Verifier

TIMEOUT_S = 2.0
SLACK_S = 1.5  # killing a worker, IPC and thread hops on a loaded 2-core machine

HOSTILE_ANSWERS = [
    ("power tower", "9^{9^{9^{9}}}"),
    ("tower of tens", "10^{10^{10^{10}}}"),
    ("huge factorial", "(10^7)!"),
    ("factorial tower", "((10^{5})!)!"),
    ("huge exponent of a symbol", "(x+1)^{10^{9}}"),
    ("nested parentheses", "(" * 20_000 + "1" + ")" * 20_000),
    ("nested braces", "{" * 5_000 + "1" + "}" * 5_000),
    ("nested fractions", "\\frac{1}{" * 300 + "2" + "}" * 300),
    ("zero-width characters", "\u200b1\u200b2\u200d\ufeff"),
    ("code in a box", "__import__('os').system('touch /tmp/qvq_ray_hacked')"),
    ("latex input command", "\\input{/etc/passwd}"),
    ("long sum", "+".join(["x"] * 400)),
    ("huge integer", "9" * 5000),
    ("deep power", "2^{" * 50 + "2" + "}" * 50),
]


@pytest.fixture(scope="module")
def verifier():
    v = Verifier(VerifierConfig(timeout_s=TIMEOUT_S, workers=2))
    v.check_sync("\\boxed{x^2}", gold="x^{2}")  # warm: boot time is not part of a check's limit
    yield v
    v.close()


def _assert_bounded(verdict, elapsed):
    assert elapsed < TIMEOUT_S + SLACK_S, elapsed
    assert verdict.correct in (False, None)
    if verdict.correct is None:
        assert {"timeout", "unparseable"} & set(verdict.issues), verdict


@pytest.mark.parametrize("name, hostile", HOSTILE_ANSWERS, ids=[h[0] for h in HOSTILE_ANSWERS])
def test_hostile_answer_against_gold(verifier, name, hostile):
    start = time.perf_counter()
    verdict = verifier.check_sync(f"**Final Answer**\n\n\\[ \\boxed{{{hostile}}} \\]", gold="7")
    _assert_bounded(verdict, time.perf_counter() - start)


@pytest.mark.parametrize("name, hostile", HOSTILE_ANSWERS, ids=[h[0] for h in HOSTILE_ANSWERS])
def test_hostile_gold(verifier, name, hostile):
    start = time.perf_counter()
    verdict = verifier.check_sync("\\boxed{x + 1}", gold=hostile)
    _assert_bounded(verdict, time.perf_counter() - start)


@pytest.mark.parametrize("name, hostile", HOSTILE_ANSWERS, ids=[h[0] for h in HOSTILE_ANSWERS])
def test_hostile_claims_and_answers_without_gold(verifier, name, hostile):
    start = time.perf_counter()
    verdict = verifier.check_sync(f"so {hostile} = 5 + 2 and \\boxed{{{hostile}}}")
    assert time.perf_counter() - start < TIMEOUT_S + SLACK_S
    assert verdict.correct is None


def test_two_hundred_kilobyte_response(verifier):
    body = "Let me compute 12 + 30 = 42 and check it again. " * 4200  # ~200 KB
    for response in (body + "\\boxed{42}", body, "\u200b".join(body[:100_000]) + "\\boxed{42}"):
        start = time.perf_counter()
        verdict = verifier.check_sync(response, gold="42")
        _assert_bounded(verdict, time.perf_counter() - start) if verdict.correct is not True else None
        assert time.perf_counter() - start < TIMEOUT_S + SLACK_S


def test_code_never_runs(verifier, tmp_path):
    marker = tmp_path / "hacked"
    payload = f"__import__('os').system('touch {marker}')"
    verifier.check_sync(f"\\boxed{{{payload}}}", gold="0")
    verifier.check_sync("\\boxed{0}", gold=payload)
    verifier.check_sync(f"The answer is {payload}", gold=payload.replace("touch", "ls"))
    verifier.check_sync(f"so {payload} = 1 + 1", gold="2")
    assert verifier.compare_sync(payload, "0") is False
    time.sleep(0.2)
    assert not marker.exists()


def test_a_check_past_its_limit_is_not_judged(verifier):
    """A legitimate but slow comparison with a tiny budget: correct=None and the issue `timeout`."""
    gold = "(\\frac{\\sqrt{2}v^2_0}{g}-\\frac{v^2_0}{5\\pi g},\\frac{\\sqrt{2}v^2_0}{g}+\\frac{v^2_0}{4g},-\\frac{v^2_0}{5\\pi g})"
    answer = "(\\frac{v^2_0 \\sqrt{2}}{g}-\\frac{v^2_0}{5g\\pi },\\frac{\\sqrt{2}v^2_0}{g}+\\frac{v^2_0}{4g},-\\frac{v^2_0}{5g \\pi})"
    start = time.perf_counter()
    verdict = verifier.check_sync(f"\\boxed{{{answer}}}", gold=gold, timeout_s=0.02)
    assert time.perf_counter() - start < 0.02 + SLACK_S
    assert verdict.correct is None and "timeout" in verdict.issues
    assert verifier.check_sync(f"\\boxed{{{answer}}}", gold=gold).correct is True  # and with time, it is
