"""Prompt presets of the judge model (`verifier.judge.prompts`), and how its answers are read.

The presets follow the structure of the published judge prompts, reworded here (the examples are
ours), so scores are comparable in method with leaderboards that used a judge:

- `mathvista`: MathVista's answer extraction (lupantech/MathVista, `evaluation/prompts/ext_ans.py`,
  `demo_prompt`, assembled by `evaluation/extract_answer.py: create_test_prompt`): an instruction
  to extract the answer, worked examples of (hint, question, model response, extracted answer),
  then the case, ending with "Extracted answer:".
- `vlmevalkit`: VLMEvalKit's. For multiple choice its option matcher (open-compass/VLMEvalKit,
  `vlmeval/dataset/utils/multiple_choice.py: build_prompt`): match the response to one option and
  answer its letter, or Z when no option fits. Otherwise its MathVista extractor
  (`vlmeval/dataset/utils/mathvista.py: build_mathvista_gpt4_prompt`), the same shape as MathVista's.
- Equivalence, for both: VLMEvalKit's MathVerse consistency judge
  (`vlmeval/dataset/utils/mathverse.py: build_mathverse_gpt4_score_prompt`): given the question,
  the standard answer and the model's answer, say whether they agree, "Judgement: 1" or "0".

A config may replace any of the three templates (`extraction_template`, `choice_template`,
`equivalence_template`); fields are filled with `str.format`-style names, and any other brace in a
template is kept as written.
"""

from __future__ import annotations

import re
import string

_EXTRACTION_EXAMPLES = """\
Hint: Answer with an integer, e.g. 1, 2, 3, at the end.
Question: How many triangles are in the figure?

Model response: Counting the small ones and the two made of pairs, there are 7 triangles in total.

Extracted answer: 7

Hint: Answer with a number with one decimal place, e.g. 1.2, 3.4, at the end.
Question: What is the length of side AB? (Unit: cm)

Model response: Using the Pythagorean theorem, AB = sqrt(3^2 + 2^2) which is about 3.6 cm.

Extracted answer: 3.6

Hint: Answer with the option's letter, e.g. A, B, C, D, at the end.
Question: Which shape has the largest area?
Choices:
(A) the square
(B) the circle
(C) the triangle

Model response: The circle covers more of the grid than the other two shapes.

Extracted answer: B

Hint: Answer with a list, e.g. [1, 2], at the end.
Question: In which two years did sales fall?

Model response: Sales dropped in 2011 and again in 2015, and rose in every other year.

Extracted answer: [2011, 2015]

Hint: Answer in words.
Question: What does the arrow in the diagram point to?

Model response: I am not able to see where the arrow points, so I cannot answer this.

Extracted answer: None"""

MATHVISTA_EXTRACTION = (
    "Read the examples below. Then extract the final answer from the last model response and write it "
    "after \"Extracted answer:\" at the end, with no explanation. Write None when the response gives no answer.\n\n"
    + _EXTRACTION_EXAMPLES
    + "\n\n{hint}\nQuestion: {question}{choices_block}\n\nModel response: {response}\n\nExtracted answer:"
)

VLMEVALKIT_EXTRACTION = (
    "Read the examples below.\nThen extract the answer from the model response and write it at the end of the "
    "prompt. Write None when the response gives no answer.\n\n"
    + _EXTRACTION_EXAMPLES
    + "\n\n{hint}\nQuestion: {question}{choices_block}\nModel response: {response}\nExtracted answer:"
)

VLMEVALKIT_CHOICE = """\
You help match an answer to the options of a single-choice question. You are given a question, its \
options and an answer; find the option the answer means. If the answer matches none of the options, \
output Z. Output one uppercase letter: one of the options' letters, or Z.

Example 1:
Question: What colour is the car?
Options: A. red B. blue C. green
Answer: the car in the picture is blue
Your output: B

Example 2:
Question: How many legs does the insect have?
Options: A. four B. six C. eight
Answer: I cannot tell from the picture.
Your output: Z

Example 3:
Question: {question}
Options: {choices_inline}
Answer: {response}
Your output:"""

EQUIVALENCE = """\
Below are two answers to a question. [Question] is the question, [Standard Answer] its correct \
answer, and [Model Answer] the answer taken from a model's response. Decide whether the two answers \
agree: they agree only when the model answer says the same thing as the standard answer (the \
wording may differ). Judge only agreement, not whether either answer is right. \
If they agree, the judgement is 1; otherwise 0. Write only "Judgement: 1" or "Judgement: 0".

[Question]: What is the gas given off when zinc reacts with hydrochloric acid?
[Standard Answer]: hydrogen gas
[Model Answer]: H2 is released
Judgement: 1

[Question]: Which planet is the largest?
[Standard Answer]: Jupiter
[Model Answer]: Saturn, the ringed planet
Judgement: 0

[Question]: {question}
[Standard Answer]: {gold}
[Model Answer]: {answer}
Judgement:"""

PRESETS = {
    "mathvista": {"extraction": MATHVISTA_EXTRACTION, "choice": MATHVISTA_EXTRACTION, "equivalence": EQUIVALENCE},
    "vlmevalkit": {"extraction": VLMEVALKIT_EXTRACTION, "choice": VLMEVALKIT_CHOICE, "equivalence": EQUIVALENCE},
}

# Fields a template of each task must use (a prompt that never shows the response judges nothing).
REQUIRED_FIELDS = {
    "extraction": {"response"},
    "choice": {"response"},
    "equivalence": {"answer", "gold"},
}
_LETTERS = string.ascii_uppercase


def template_fields(template: str) -> set[str]:
    """The `{name}` fields a template uses (other braces are kept as text)."""
    return set(re.findall(r"\{([a-z_]+)\}", template))


def fill(template: str, values: dict[str, str]) -> str:
    """Replace the `{name}` fields that `values` has; every other brace stays as written (LaTeX)."""
    return re.sub(r"\{([a-z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def render(template: str, *, question: str = "", choices: list[str] | None = None, response: str = "",
           answer: str = "", gold: str = "") -> str:
    """One prompt: the template with the case's fields (the response and answers as given: the
    caller has already cut the response to the judge's `max_response_chars`)."""
    choices = list(choices or [])
    lettered = [f"({_LETTERS[i]}) {c}" for i, c in enumerate(choices[: len(_LETTERS)])]
    hint = (
        "Hint: Answer with the option's letter, e.g. A, B, C, D, at the end."
        if choices
        else "Hint: Answer the question with its final answer at the end."
    )
    values = {
        "question": question.strip(),
        "choices": "\n".join(lettered),
        "choices_block": ("\nChoices:\n" + "\n".join(lettered)) if lettered else "",
        "choices_inline": " ".join(f"{_LETTERS[i]}. {c}" for i, c in enumerate(choices[: len(_LETTERS)])),
        "hint": hint,
        "response": response.strip(),
        "answer": answer.strip(),
        "gold": gold.strip(),
    }
    return fill(template, values)


_NONE = {"none", "null", "n/a", "no answer", "z", "unknown", "cannot determine"}


def read_extraction(text: str, choices: list[str] | None = None) -> str | None:
    """The judge's extraction, read: its first non-empty line after any 'Extracted answer:' it
    repeated, without quotes. '' means it found no answer (None, Z); None means its text is no
    answer at all (empty, or no letter or digit in it): unreadable, so the case stays not judged."""
    body = text.strip()
    marker = re.search(r"(?i)extracted answer\s*:", body)
    if marker:
        body = body[marker.end():]
    line = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
    line = re.sub(r"(?i)^your output\s*:\s*", "", line).strip().strip("'\"`").strip()
    if not line or not any(ch.isalnum() for ch in line):
        return None
    if line.lower().rstrip(".") in _NONE:
        return ""
    if choices and re.fullmatch(r"\(?[A-Z]\)?\.?", line):
        letter = line.strip("().")
        return letter if letter in _LETTERS[: len(choices)] else None  # no such option: unreadable
    return line


def read_judgement(text: str) -> bool | None:
    """The judge's equivalence verdict: 'Judgement: 1' / '0' (or a bare 1/0, yes/no at the start);
    None when it cannot be read (the case stays not judged)."""
    body = text.strip()
    marker = re.search(r"(?i)judge?ment\s*:\s*([01])\b", body)
    if marker:
        return marker.group(1) == "1"
    head = re.match(r"(?i)\W*(1|0|yes|no|true|false|consistent|inconsistent)\b", body)
    if head:
        return head.group(1).lower() in ("1", "yes", "true", "consistent")
    return None
