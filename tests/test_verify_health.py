"""Health checks: repetition loops in the tail, language mixing in the prose, truncation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qvq_ray.verify.extract import detect_issues
from qvq_ray.verify.health import language_mixing, prose, repetition_loop

CHAINS = json.loads((Path(__file__).parent / "data" / "verify" / "qvq_style_chains.json").read_text(encoding="utf-8"))
PROSE = (
    "So I've got this problem about a triangle with sides 3, 4 and 5. Let me think about the angles first. "
    "The largest angle is opposite the longest side, so it is the one between the sides 3 and 4. "
)

LOOPS = [
    ("exact cycle", PROSE + "Wait, let me recompute the area of the triangle again. " * 12, True),
    ("cycle, no spaces", PROSE + "abcabcabc" * 60, True),
    ("newlines", PROSE + "\n".join(["Let me check the second case once more carefully."] * 8), True),
    (
        "drifting numbers, repeated lines",
        PROSE
        + "\n".join(
            f"{line}\nSo the value is {k}."
            for k, line in enumerate(["Hmm, maybe I should consider the other diagonal instead of this one."] * 6)
        ),
        True,
    ),
    ("loop then an answer", PROSE + "Let me try again. " * 30 + "\n" + PROSE * 6 + "\n**Final Answer**\n\n\\[ \\boxed{5} \\]", False),
    ("normal chain", CHAINS[0]["text"], False),
    ("short repetition", PROSE + "1, 1, 1, 1, 1, 1. " + PROSE, False),
    ("long normal text", PROSE * 3 + " ".join(f"Step {k}: the term is {k * k}." for k in range(200)), False),
]


@pytest.mark.parametrize("name, text, expected", LOOPS, ids=[c[0] for c in LOOPS])
def test_repetition_loop(name, text, expected):
    assert repetition_loop(text) is expected


@pytest.mark.parametrize("chain", CHAINS, ids=[c["name"] for c in CHAINS])
def test_no_health_alarm_on_normal_chains(chain):
    assert not repetition_loop(chain["text"])
    assert not language_mixing(chain["text"])


MIXING = [
    ("english", PROSE * 2, False),
    ("chinese", "首先，我们计算三角形的面积。底边为 8，高为 5，所以面积为 20。然后我们看角 ABC 和边 AB 的长度，单位是 cm。" * 3, False),
    ("chinese with math", "设 $x^2 + y^2 = 1$，则 $\\sin \\theta = \\frac{3}{5}$，所以 $\\cos \\theta = \\frac{4}{5}$。因此面积为 12。", False),
    ("english quoting a chinese option", PROSE + "The option labelled “正确” is the one to pick. " + PROSE, False),
    ("english switching to chinese", PROSE + "所以我们需要重新计算这个角度。 " + PROSE + "这个结果是正确的，答案是五。 " + PROSE, True),
    ("chinese switching to english", "首先，我们计算三角形的面积。底边为 8，高为 5。" * 3 + " Let me reconsider the whole problem from the beginning again. " + "所以面积为 20。" * 3, True),
    ("english with russian", PROSE + "Итак, ответ правильный. " + PROSE, True),
    ("greek letters are math", PROSE + "The angle α plus β equals γ, and θ is small. " + PROSE, False),
]


@pytest.mark.parametrize("name, text, expected", MIXING, ids=[c[0] for c in MIXING])
def test_language_mixing(name, text, expected):
    assert language_mixing(text) is expected


def test_prose_drops_math_code_and_quotes():
    assert "sqrt" not in prose("so $\\sqrt{2}$ and `code` and “quoted 中文”")
    assert "中文" not in prose("so “quoted 中文” here")


def test_detect_issues_names():
    looping = PROSE + "Wait, let me recompute the area of the triangle again. " * 12
    assert detect_issues(looping, "length") == ["no_final_answer", "truncated", "repetition_loop"]
    mixed = PROSE + "所以我们需要重新计算这个角度。 " + PROSE + "这个结果是正确的，答案是五。 " + PROSE + " \\boxed{5}"
    assert detect_issues(mixed, "stop") == ["language_mixing"]
    assert detect_issues(looping, "length", health=False) == ["no_final_answer", "truncated"]


def test_health_checks_are_linear():
    big = ("Let me think about this step by step, 3 + 4 = 7. " * 4000)[:200_000]
    mixed = ("所以 answer 是 5 " * 20_000)[:200_000]
    start = time.perf_counter()
    for text in (big, mixed, "a" * 200_000, "\u200b" * 200_000):
        repetition_loop(text)
        language_mixing(text)
    assert time.perf_counter() - start < 3.0
