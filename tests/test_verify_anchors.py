"""The anchor graders' known faults (REFERENCE.md), each a case the verifier must get right.

`ANCHORS` lists (gold, answer, problem, right verdict, anchor). `test_verifier_gets_the_anchor_right`
runs them through the Verifier. `test_math_verify_direct_gets_them_wrong` shows the anchor's fault:
math-verify 0.9.0's `parse` + `verify`, called the way its README does (default extraction), in a
child process with a hard time limit, gives the wrong verdict on every math-verify anchor. Anchors
of other graders (Qwen2.5-Math, OlympiadBench's judge, MathVista, MATH-V) are marked; math-verify's
verdict on them is shown too, and noted where it happens to be right.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qvq_ray.verify.verifier import default_verifier
from qvq_ray.verify.spec import AnswerSpec

# (id, gold, answer, problem, right, anchor, math-verify direct's verdict)
ANCHORS = [
    ("mv14-factorials", "$\\frac{1}{2006!}$", "$\\frac{1}{2004!}$", {}, False, "math-verify #14: rounds to 6 decimals absolutely", True),
    ("mv70-bare-dfrac", "\\dfrac{9}{7}", "\\frac{9}{7}", {}, True, "math-verify #70: undelimited LaTeX parses to nothing", False),
    ("mv74-bare-sqrt", "1-\\sqrt2", "1", {}, False, "math-verify #74: `1-\\sqrt2` parses to 1", True),
    ("mv70-bare-dfrac-slash", "\\dfrac{9}{7}", "9/7", {}, True, "math-verify #70", False),
    ("mv41-sqrt-paren", "4", "4\\sqrt(2)", {}, False, "math-verify #41: `4\\sqrt(2)` == 4", True),
    ("mv16-boxed-letter", "C", "\\boxed{\\text{(C)}}", {"choices": ["1", "2", "Not exist"]}, True, "math-verify #16: weak multiple choice", False),
    ("mv16-option-text", "C", "Not exist", {"choices": ["1", "2", "Not exist"]}, True, "math-verify #16", False),
    ("mv-units-kg-g", "500 kg", "500 g", {}, False, "math-verify: no unit conversion", True),
    ("mv-units-convert", "0.5 kg", "500 g", {}, True, "math-verify: no unit conversion", False),
    ("mv-tower", "10^{10^{10^{10}}}", "10^{10}", {}, False, "math-verify #63/#65 (big-integer work; OlympiadBench vector)", True),
    ("qwen50-lists", "1,-2", "1,-3", {}, False, "Qwen2.5-Math grader #50", True),
    ("ob-lhs", "x=2", "y=2", {}, False, "OlympiadBench judge: compares only the text after `=`", True),
    ("ob-unit-required", "0.64N", "0.64", {}, False, "OlympiadBench judge vector (a missing unit)", True),
    ("mathvista-empty", "145°", "", {"choices": ["135°", "140°", "145°", "150°"]}, False, "MathVista #19: empty answer mapped to a choice", False),
    ("mathvista-unrelated", "145°", "I cannot tell", {"choices": ["135°", "140°", "145°", "150°"]}, False, "MathVista: nearest choice by edit distance", False),
    ("mathvista-truncation", "12", "12.7", {"answer_type": "integer"}, False, "MathVista: integers truncated", False),
    ("mathv-pi", "\\pi", "3.14", {}, False, "MATH-V: rounds to 2 decimals (math-verify is right here)", False),
]


@pytest.fixture(scope="module")
def verifier():
    return default_verifier()


@pytest.mark.parametrize("gold, answer, problem, right", [a[1:5] for a in ANCHORS], ids=[a[0] for a in ANCHORS])
def test_verifier_gets_the_anchor_right(verifier, gold, answer, problem, right):
    response = f"**Final Answer**\n\n\\[ \\boxed{{{answer}}} \\]" if answer and not answer.startswith("\\boxed") else answer
    assert verifier.check_sync(response, AnswerSpec(**problem), gold=gold).correct is right


# math-verify's README usage, in a child process (its signal timeouts need a main thread, and big
# integers can outlive them). The strings are this file's constants, never untrusted text.
_CHILD = r"""
import json, sys, logging
logging.disable(logging.WARNING)
from math_verify import parse, verify
out = {}
for key, gold, answer in json.loads(sys.stdin.read()):
    out[key] = bool(verify(parse(gold), parse(answer)))
print(json.dumps(out))
"""


def test_math_verify_direct_gets_them_wrong():
    import importlib.metadata

    if importlib.metadata.version("math-verify") != "0.9.0":
        pytest.skip("the anchor verdicts were recorded for math-verify 0.9.0")
    cases = [(a[0], a[1], a[2]) for a in ANCHORS]
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], input=json.dumps(cases), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    verdicts = json.loads(result.stdout.strip().splitlines()[-1])
    for key, _gold, _answer, _problem, right, anchor, mv in ANCHORS:
        assert verdicts[key] is mv, (key, anchor)
        if anchor.startswith("math-verify"):
            assert verdicts[key] is not right, (key, "math-verify direct is right here: not an anchor fault")
