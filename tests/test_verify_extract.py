"""Final-answer extraction: the shapes real models write, what is not an answer, bounded cost."""

from __future__ import annotations

import time

import pytest

from qvq_ray.verify.extract import detect_issues, extract_final_answer, is_hedge

QVQ = (
    "So, I've got this problem here. Let me see... the triangle has sides 3 and 4, so the hypotenuse "
    "is 5. Wait, let me double-check that. 3 squared is 9, 4 squared is 16, 9 + 16 = 25, and the square "
    "root of 25 is 5. Yeah, that seems right.\n\n"
)

SHAPES = [
    # QVQ: monologue, **Final Answer**, display box
    (QVQ + "**Final Answer**\n\n\\[ \\boxed{5} \\]", "5"),
    (QVQ + "**Final Answer**\n\n$$\\boxed{\\dfrac{3}{4}}$$", "\\dfrac{3}{4}"),
    (QVQ + "**Final Answer**\n\\[\n\\boxed{12\\sqrt{3}}\n\\]", "12\\sqrt{3}"),
    ("Hence the ratio is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("First \\boxed{3}, but wait, recheck: \\boxed{5}", "5"),
    ("The set is $\\boxed{\\{1, 2\\}}$.", "\\{1, 2\\}"),
    ("\\fbox{7}", "7"),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
    ("\\boxed{x = 2}", "x = 2"),
    ("\\boxed {42}", "42"),
    ("\\boxed{\\boxed{x^{2}+y^{2}=1}}", "x^{2}+y^{2}=1"),  # a box in a box
    ("so \\boxed{3} and finally $\\boxed{\\boxed{5}}$", "5"),
    # several boxes: one multi-part answer
    ("(a) \\boxed{3}\n(b) \\boxed{5}", "3, 5"),
    ("The answers are \\boxed{2} and \\boxed{-1}.", "2, -1"),
    ("$x = \\boxed{3}$, $y = \\boxed{5}$", "x = 3, y = 5"),
    ("Part (1): \\boxed{\\frac{1}{2}}\n\nPart (2): \\boxed{4}", "\\frac{1}{2}, 4"),
    ("we get \\boxed{3} and it is repeated \\boxed{3}.", "3"),
    # statements
    ("Therefore, the answer is (C).", "(C)"),
    ("The correct option is (B), because it fits the graph.", "(B)"),
    ("Final Answer: The final answer is $24$. I hope it is correct.", "24"),
    ("Answer: B", "B"),
    ("the answer is 3.5 cm. Next we check it.", "3.5 cm"),
    ("**Final Answer**\n\\[\n42\n\\]", "42"),
    ("**Final Answer**\n\nThe area is \\( 12 \\) square units.", "12"),
    ("The answer is 5, which is prime.", "5"),
    ("So the answer should be $\\sqrt{2}$.", "\\sqrt{2}"),
    # Chinese
    ("所以答案是 5", "5"),
    ("**答案**\n\n$\\sqrt{2}$", "\\sqrt{2}"),
    ("所以最终答案是 $\\frac{1}{2}$。", "\\frac{1}{2}"),
    ("综上，答案为 $x=3$。", "x=3"),
    ("故选C", "C"),
    ("因此选：B", "B"),
    # invisible characters inside the command
    ("\\bo\u200bxed{7}", "7"),
    ("the answer is \u200b42\u200b.", "42"),
]


@pytest.mark.parametrize("response, expected", SHAPES)
def test_extraction_shapes(response, expected):
    assert extract_final_answer(response) == expected


NOT_ANSWERS = [
    "I think it is \\boxed{}",
    "Earlier \\boxed{3}; final \\boxed{\\frac{1",  # truncated inside the last box
    "Thinking about the triangle, it has three sides and",
    "",
    "\\boxed{A} or \\boxed{B}",  # a hedge between boxes
    "The answer is A or C.",
    "The answer is (A) or (C).",
    "So the answer is 3 or 4.",
    "答案是A或B",
    "the answer is maybe 5",
]


@pytest.mark.parametrize("response", NOT_ANSWERS)
def test_no_answer_is_none(response):
    assert extract_final_answer(response) is None
    assert "no_final_answer" in detect_issues(response, "stop")


@pytest.mark.parametrize(
    "answer, hedge",
    [("A or B", True), ("(A)/(C)", True), ("3 or 4", True), ("x = 3 or x = -3", False), ("C", False), ("2 or more", False)],
)
def test_hedges(answer, hedge):
    assert is_hedge(answer) is hedge


def test_issues_truncated_and_clean():
    assert detect_issues("... so we get 4 and then", "length") == ["no_final_answer", "truncated"]
    assert detect_issues("\\boxed{4}", "length") == ["truncated"]
    assert detect_issues("\\boxed{4}", "stop") == []
    assert detect_issues("\\boxed{4}", None) == []


def test_extraction_is_bounded_on_hostile_text():
    hostile = [
        "\\boxed{" + "{" * 100_000,
        "$" * 100_000,
        "\\boxed{" + "$" * 100_000 + "}",
        "\\boxedx" * 15_000,
        "final answer " * 8_000,
        "\\" * 100_000,
        "\\boxed{" * 30_000,  # 210 KB of unterminated boxes
        "\\boxed{1}" * 20_000,
        ("(" * 20_000) + ")" * 20_000,
        "the answer is " + "x" * 200_000,
    ]
    start = time.perf_counter()
    for text in hostile:
        extract_final_answer(text)
        detect_issues(text, "stop")
    assert time.perf_counter() - start < 3.0
