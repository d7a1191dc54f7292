"""How chatty models wrap an answer written in prose, and how to unwrap it.

Open instruction-tuned models (LLaVA, MiniGPT-4, mPLUG-Owl, IDEFICS, InstructBLIP) rarely box an
answer: they state it in a sentence, then often add things that are no answer at all, and a grader
that reads "the last sentence" reads those instead:

- the tokenizer's end-of-sequence marker left in the text (`... is 16 meters.</s>`);
- a run-on into a new prompt turn: the model keeps writing the few-shot pattern it was trained
  on (`The answer is 2.\\n\\nQuestion: How many ...? Answer: 3`, `A\\nHuman: ...`), and what follows
  answers questions nobody asked;
- a Q/A answer label (`A: No, it is not.`): `A:` there means "Answer:", not option A;
- closing pleasantries and offers (`Is there anything else I can help you with?`, `Let me know if
  you have other questions.`, `I hope this helps!`);
- a table or a code block after the answer sentence (the data it read, a script it "ran").

Every function here is one linear pass over the text with bounded regexes; nothing parses math.
"""

from __future__ import annotations

import re

# End-of-sequence / turn markers of common chat templates: never part of an answer.
_END_TOKENS = re.compile(r"</s>|<s>|<\|(?:endoftext|im_end|im_start|eot_id|end|assistant|user)\|>|<eos>|<end_of_turn>|\[/INST\]")

# A new prompt turn the model wrote itself, at the start of a line.
_NEW_TURN = re.compile(
    r"^[ \t]*(?:#{1,3}[ \t]*)?(?:Question|Hint|Human|User|USER|Instruction|Choices)[ \t]*:",
    re.MULTILINE,
)

_MAX_CLOSING = 6  # closing sentences dropped at most (a pleasantry rarely comes alone, never in dozens)
# Sentence shapes of a pleasantry or an offer, matched at the start of a closing sentence.
_PLEASANTRY = re.compile(
    r"(?:is\s+there\s+anything\s+else|anything\s+else\b|(?:please\s+)?let\s+me\s+know|feel\s+free|"
    r"(?:please\s+)?(?:do\s+not|don'?t)\s+hesitate|if\s+you\s+(?:have|need|want|would\s+like|'d\s+like|require)\b|"
    r"if\s+(?:there\s+is|there'?s)\s+anything|i\s+hope\b|hope\s+(?:this|that|it)\b|"
    r"(?:do|would|can|could|shall)\s+(?:you|i)\s+(?:like|want|need|have|help|assist)\b.*\?|"
    r"(?:how\s+else|what\s+else)\b.*\?|thank\s*(?:s|\s+you)\b|you'?re\s+welcome|good\s+luck|"
    r"have\s+a\s+(?:great|nice|good|wonderful)\b|happy\s+(?:to\s+help|learning|studying|solving)|"
    r"(?:i'?m|i\s+am|i'?d\s+be|i\s+would\s+be)\s+(?:happy|glad)\s+to\s+help|glad\s+(?:i|to)\s+(?:could\s+)?help)",
    re.IGNORECASE,
)
# Where a sentence ends: after .!? (and a closing quote or bracket), or at a line break.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?。！？])[\"'”’)\]]*\s+|\n+")

_TABLE_LINE = re.compile(r"^[ \t]*\|.*$")
_FENCE = "```"
_INTRO_LINE = re.compile(r"^[^\n]{0,200}[:：][ \t]*$")  # `Here is the table:` before a dropped block


def strip_end_tokens(text: str) -> str:
    """`... 16 meters.</s>` -> `... 16 meters.`: template markers are no text of the answer."""
    return _END_TOKENS.sub("", text) if "<" in text or "[/" in text else text


def before_new_turn(text: str) -> str | None:
    """The text before the first prompt turn the model wrote itself (`\\nQuestion: ...`,
    `\\nHuman: ...`) when something precedes it; None when there is none. A turn at the very
    start (a response that restates the question first) does not count."""
    for m in _NEW_TURN.finditer(text):
        head = text[: m.start()]
        if head.strip():
            return head
    return None


def qa_label_removed(text: str, first_option: str | None) -> str:
    """`A: No, it is not.` -> `No, it is not.`: in a Q/A-formatted reply `A:` (or `A -`) labels the answer.
    Kept when what follows is option A's own text (then both readings agree) or nothing."""
    m = re.match(r"\s*A\s*(?::|[ \t][-–—])[ \t]+(?=\S)", text)
    if m is None:
        return text
    rest = text[m.end() :]
    first_line = rest.split("\n", 1)[0].strip().rstrip(".").strip()
    if first_option is not None and first_line.casefold() == first_option.strip().casefold():
        return text
    return rest


def _last_sentence_start(text: str) -> int:
    start = 0
    for m in _SENTENCE_BREAK.finditer(text):
        if m.end() < len(text):
            start = m.end()
    return start


def without_closing_pleasantries(text: str) -> str:
    """The text without the pleasantries and offers it closes with (`... is 5 cm. Let me know if
    you have other questions!` -> `... is 5 cm.`); unchanged when it closes with anything else."""
    for _ in range(_MAX_CLOSING):
        body = text.rstrip()
        start = _last_sentence_start(body)
        if not _PLEASANTRY.match(body[start:].lstrip(" \t*-•>")):
            return body
        text = body[:start]
    return text.rstrip()


def without_trailing_blocks(text: str) -> str:
    """The text without the tables and fenced code blocks that follow its last sentence (and the
    `Here is the table:` line that introduces one); unchanged when prose ends it."""
    lines = text.rstrip().split("\n")
    changed = True
    while changed and lines:
        changed = False
        end = len(lines)
        while end and not lines[end - 1].strip():
            end -= 1
        if end and _TABLE_LINE.match(lines[end - 1]):
            while end and _TABLE_LINE.match(lines[end - 1]):
                end -= 1
            changed = True
        elif end and lines[end - 1].strip().startswith(_FENCE):
            opening = next((k for k in range(end - 2, -1, -1) if lines[k].strip().startswith(_FENCE)), None)
            if opening is not None:
                end, changed = opening, True
        if changed:
            while end and not lines[end - 1].strip():
                end -= 1
            if end and _INTRO_LINE.match(lines[end - 1]):
                end -= 1
            if not any(line.strip() for line in lines[:end]):
                return text  # nothing but the block: keep it (it may be the answer)
            lines = lines[:end]
    return "\n".join(lines).rstrip()


def answer_text(text: str) -> str:
    """The part of a response that can hold its final answer: end markers, closing pleasantries and
    trailing tables/code removed (alternately, as they come: `... 5.\\n\\n|a|b|\\n\\nHope this helps!`)."""
    for _ in range(3):
        trimmed = without_trailing_blocks(without_closing_pleasantries(text))
        if trimmed == text:
            break
        text = trimmed
    return text


# ---------------------------------------------------------------- counts written in words

NUMBER_WORDS = {
    w: n
    for n, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100}
_WORD_NUMBER = re.compile(
    r"(?i)^(" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")\b"
    r"(?!\s*(?:of|another|or|to|and|by|-)\b)(?!-)(?<!one(?=\s+(?:that|which|who|whose)\b))"
)  # `(the) one that predicts ...`: the pronoun, no count (`two that are red` counts)


_RATE = re.compile(r"(?i)^\S+(?:\s+\w+)?\s+(?:for\s+(?:every|each)|out\s+of|in\s+every|per)\b")


def number_word_value(text: str) -> str | None:
    """`three objects left` -> `3`, `twelve.` -> `12`; None when the text does not start with a
    count word (`one of the ...` is no count, nor `one male for every two females`: a rate)."""
    text = text.strip()
    m = _WORD_NUMBER.match(text)
    if m is None or _RATE.match(text):
        return None
    return str(NUMBER_WORDS[m.group(1).lower()])


# A sentence whose subject is a count: `2 items were sold ...`, `Approximately 50% of ... are ...`,
# after at most two introductory clauses (`Based on the image, ...`).
_SUBJECT_COUNT = re.compile(
    r"(?:(?:about|around|approximately|roughly|nearly|only|exactly|a\s+total\s+of)\s+)?"
    r"(\d+(?:\.\d+)?\s*%?|[A-Za-z]+)(?=\s+(?:of\s+)?[A-Za-z])",
    re.IGNORECASE,
)
_MAX_INTRO_CLAUSES = 2
_INTRO_CLAUSE = re.compile(r"[^,.;:]{0,160},\s*")


def subject_count(sentence: str) -> str | None:
    """The count a sentence is about when it opens with one (`2 balls are left` -> `2`,
    `Three objects remain` -> `3`, `Approximately 50% of the stripes ...` -> `50%`), after at most
    two introductory clauses (`Based on the graph, 10% of people ..., which is ...` -> `10%`); else None."""
    text = sentence.strip()
    pos = 0
    for _ in range(_MAX_INTRO_CLAUSES + 1):
        count = _count_at(text[pos:])
        if count is not None:
            return count
        clause = _INTRO_CLAUSE.match(text, pos)
        if clause is None:
            return None
        pos = clause.end()
    return None


def _count_at(text: str) -> str | None:
    m = _SUBJECT_COUNT.match(text)
    if m is None:
        return None
    token = m.group(1).strip()
    if token[0].isdigit():
        return token.replace(" ", "")
    return number_word_value(text[m.start(1) :])
