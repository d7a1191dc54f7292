"""Answers a response gives only by restating the question (the rule `restatement`, weak).

Chatty models answer a question by turning it into a statement: `Is Periwinkle the maximum?` ->
`Based on the image, Periwinkle is not the maximum.`, `What happens if caterpillars decrease?` ->
`If caterpillars decrease, plants will increase.`, `How many people ... were born after the war?`
-> `There are three people ... who were born after the war.`, `There are (_) dots in each group.`
-> `There are 3 dots in each group.` Without the question none of these names an answer; with it,
each does. The rules read words, not meaning, so each one answers only when the match is tight and
single, and gives nothing otherwise (a wrong value accepted costs more than an answer missed):

- `blank_filled`: the question's sentence with a blank (`(_)`, `___`) written back with the blank
  filled (by a number, or by one option's text); or, its words reordered, a clause that counts the
  blank's noun and holds every other word of its sentence (`..., with each group containing 3 dots`);
- `counted`: `how many <things> ...` answered by a sentence that counts those things and restates the
  rest of the question (`there are 4 objects left`);
- `yes_no`: with options yes/no, a sentence that restates the question's proposition word for word
  in order (up to one inserted word between two of its words) answers yes, or no when it is negated
  inside the proposition; two sentences that disagree, a hedge or a condition, answer nothing. A
  comparison may be restated with its sides exchanged (`there are more B than A` denies `Are there
  more A than B?`), without a relative clause on a side (`the number of cars is greater than ...`
  for `the number of cars that are left of the bus`), or as `the N of X is higher than Y` for `Does X
  have a higher N than Y?`; a universal (`each`, `all`) is denied by one counterexample (`f is not
  continuous at the point 1`) and asserted only whole;
- `option_lettered`: the first sentence that restates the question has an option's letter as its
  subject (`A would be most affected by ...`: the article `A` never comes before a verb);
- `option_paired`: with text options, the first sentence that restates the question and names one
  option's words in order (`the adult spider population would decrease`); two options named, or a
  negation, answer nothing;
- `new_value`: with no options, the first sentence, when it restates the question and adds exactly
  one number the question does not hold (`... was lower than 0.2% in 1970.`), answers that number;
  clauses that only elaborate (`, with the younger person being 30`) are left out.

Words are compared by a light stem (lower case, plural `s`/`es` dropped, `has` read as `have`); the
words that carry no content (articles, auxiliaries, modals, framing like `based on the image`) are
left out on both sides. Every pass is linear over a response's sentences, with bounded regexes.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from qvq_ray.verify.prose import number_word_value

_MAX_SENTENCES = 40  # sentences of a response looked at (an answer-first response states it early)
_MAX_GAP = 1  # content words a restatement may insert between two words of the proposition
_OPTION_GAP = 3  # words allowed between two words of an option named in a sentence
_MIN_OVERLAP = 0.5  # share of the question's content words a sentence must restate

_STOP = frozenset(
    """a an the this that these those there here it its they them their of in on at to by for from with as into
    is are was were be been being am do does did will would may might can could shall should must likely probably
    possibly potentially also actually indeed just still then so based according shown show shows image images
    graph chart picture figure diagram plot photo given following what which who whom whose when where how why""".split()
)
_NEGATION = frozenset({"not", "no", "never", "neither", "nor", "none", "cannot", "nothing", "n't"})
_AUX_START = re.compile(r"^\s*(?:is|are|was|were|does|do|did|has|have|had|can|could|will|would|should)\b", re.I)
# A sentence that only asks, supposes or hedges states nothing.
_UNSTATED = re.compile(
    r"\?|^\s*for\b|\b(?:if|whether|unless|unclear|uncertain|difficult|impossible|unable|cannot|can't|determine|depends|maybe|perhaps|might)\b",
    re.I,
)
_WORD = re.compile(r"[A-Za-z]+(?:'t)?|\d+(?:\.\d+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
BLANK = re.compile(r"\(\s*_+\s*\)|_{2,}|\[\s*_+\s*\]")  # `(_)`, `___`: a blank to fill
# Clauses that elaborate after the main one: `, with the younger person being 30`, `, which is ...`.
_ELABORATION = re.compile(r"[,;]\s*(?:with|which|while|whereas|as|since|because|indicating|meaning|and\s+the|but)\b.*$", re.I | re.S)
_LETTERED = re.compile(r"\([A-J]\)")  # `(B) hawk and (C) snake`: options named by letter, for the letter rules
_WORDY = re.compile(r"[A-Za-z]{3,}")
_MATH = re.compile(r"[$\\^=]")
_RANGE = re.compile(r"\b(?:from|between)\s+-?\d[\d.,]*\s*%?\s+(?:to|and)\s+-?\d|\d\s*(?:-|–|to)\s*\d|\d\s+times\b", re.I)
_TRAILING_PREMISE = re.compile(r"\s+(?:if|when)\s+[^,;.!?]{1,200}[.!]?\s*$", re.I)
_COUNT_WORD = r"\d+|" + "|".join(("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                                  "sixteen seventeen eighteen nineteen twenty").split())
_QUANTITY = re.compile(r"\d.*|half|twice|double|triple|third|quarter|time|percent|" + _COUNT_WORD, re.I)
_PREMISE = re.compile(r"^\s*(?:if|when|once|after)\b[^,]{1,200},\s*", re.I)
_PROCEDURE = re.compile(r"^\s*(?:to|let'?s?|first|we|i|in\s+order|next|now|then|step)\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*%)?(?![\w]|\.\d)")
_HOW_MANY = re.compile(r"\bhow\s+many\s+((?:[a-z]+\s+){0,3}?[a-z]+?)(?=\s+(?:are|is|were|was|do|does|did|have|has|can|will|would|in|on|of|that|there|left)\b|\s*\?)", re.I)


def pinned_answer(text: str, question: str | None, choices: list[str]) -> str | None:
    """The answer a question of a fixed form pins down (a blank written back filled, a `how many`
    count), or None. Read before the last-sentence rule: such a restatement names the answer
    exactly, where a later sentence often mentions other numbers (`... born after 1945`)."""
    if not question or not text.strip():
        return None
    if BLANK.search(question):
        return blank_filled(text, question, choices)
    ask = asked_sentence(question)
    if _HOW_MANY.search(ask):
        return counted(_sentences(text), ask)
    return None


def restated_answer(text: str, question: str | None, choices: list[str]) -> str | None:
    """The answer a response gives by restating `question` (see the module doc), or None."""
    if not question or not text.strip():
        return None
    pinned = pinned_answer(text, question, choices)
    if pinned is not None or BLANK.search(question):
        return pinned
    sentences = _sentences(text)
    ask = asked_sentence(question)
    if _HOW_MANY.search(ask):
        return None
    lettered = option_lettered(sentences, ask, choices)
    if lettered is not None:
        return lettered
    if choices and yes_no_options(choices) is not None:
        return yes_no(sentences, ask, choices)
    if choices:
        return option_paired(sentences, ask, choices)
    return new_value(sentences, question, ask)


_CONCLUSION = re.compile(r"^\W*(?:therefore|thus|so|hence|in\s+conclusion|overall|finally|in\s+total|altogether)\b", re.I)


def settled_value(last: str, first: str, question: str, text: str) -> str | None:
    """Which of two values a response stated wins: `last`, read from its last sentence, or
    `first`, stated by its first sentence restating the question. The last unless it is only a
    number of the question's own (`... reaches the threshold of 2`); when they differ and the last
    sentence draws no conclusion (`Therefore, ...`), neither: two answers were given."""
    key = _number_key(m.group()) if (m := _NUMBER.search(last)) else last
    if key == _number_key(first):
        return last
    if key in {_number_key(n) for n in _NUMBER.findall(question)}:
        return first
    sentences = _sentences(text)
    return last if sentences and _CONCLUSION.match(sentences[-1]) else None


# ---------------------------------------------------------------- words


def stem(word: str) -> str:
    """`Buses` -> `bus`, `spiders` -> `spider`, `has` -> `have`: enough to match a restated word."""
    w = word.lower()
    if w in ("has", "had"):
        return "have"
    if len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def content_words(text: str) -> list[str]:
    """The stems of the words of `text` that carry content, negations included, in order."""
    out = []
    for m in _WORD.finditer(text.replace("n't", " n't")):
        w = m.group().lower()
        if w not in _STOP or (len(m.group()) == 1 and m.group().isupper()):  # `sample A`: a label, not an article
            out.append(w if w in _NEGATION else stem(w))
    return out


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()][:_MAX_SENTENCES]


def asked_sentence(question: str) -> str:
    """The sentence that asks (the last one with `?`, else the last line): a question's passage and
    hints are no part of what an answer restates."""
    parts = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", question) if s.strip()]
    asks = [s for s in parts if s.endswith("?")]
    return asks[-1] if asks else (parts[-1] if parts else "")


def restates(sentence: str, ask: str) -> bool:
    """Whether a sentence repeats at least half the content words of the question it answers (2 at least)."""
    wanted = {w for w in content_words(ask) if w not in _NEGATION}
    have = set(content_words(sentence))
    shared = len(wanted & have)
    return shared >= 2 and shared >= _MIN_OVERLAP * len(wanted)


def _in_order(words: list[str], phrase: list[str], max_gap: int) -> tuple[int, int] | None:
    """Where `phrase` occurs in `words` in order, at most `max_gap` other words between two of
    its words: (first index, last index) of the earliest such match, or None."""
    for start, w in enumerate(words):
        if w != phrase[0]:
            continue
        pos, ok = start, True
        for p in phrase[1:]:
            nxt = next((k for k in range(pos + 1, min(len(words), pos + 2 + max_gap)) if words[k] == p), None)
            if nxt is None:
                ok = False
                break
            pos = nxt
        if ok:
            return start, pos
    return None


# ---------------------------------------------------------------- a blank written back filled


def blank_filled(text: str, question: str, choices: list[str]) -> str | None:
    """`There are (_) dots in each group.` answered by `... there are 3 dots in each group.` -> `3`;
    with options, the option whose text fills the blank (`It is (_) past three.` -> `half`)."""
    m = BLANK.search(question)
    if m is None:
        return None
    before = re.findall(r"[A-Za-z]+", question[max(0, m.start() - 80) : m.start()])[-2:]
    after = re.findall(r"[A-Za-z]+", question[m.end() : m.end() + 80])[:3]
    if len(after) < 2:
        return None
    suffix = r"\s+" + r"\s+".join(re.escape(w) for w in after) + r"\b"
    fillers = [re.escape(c.strip()) for c in choices if c.strip()] or [r"\d+(?:\.\d+)?|" + _COUNT_WORD]
    found = {
        hit.group(1).lower()
        for hit in re.finditer(r"(?i)(?<![\w'.,])(" + "|".join(sorted(fillers, key=len, reverse=True)) + ")" + suffix, text)
    }
    if not found and not choices:
        found = _count_in_reordered_blank(text, question, m, after[0])
    if len(found) != 1:
        return None
    value = found.pop()
    if choices:  # `quarter past six` for `It is (_) past six.` also reads as the option `quarter past`
        if any(c.strip().lower() == f"{value} {after[0].lower()}" for c in choices):
            return None
        return next(c for c in choices if c.strip().lower() == value)
    return value if value[0].isdigit() else number_word_value(value)


_CLAUSE = re.compile(r"[,;:]\s+")


def _count_in_reordered_blank(text: str, question: str, blank: re.Match[str], noun: str) -> set[str]:
    """`There are (_) dots in each group.` answered by `..., with each group containing 3 dots.`:
    the count written before the blank's noun, in a clause that holds every other content word of
    the blank's sentence (in any order); a clause missing one (`9 dots divided into 3 groups`:
    no `each`) counts something else."""
    sentence = [s for s in _SENTENCE.split(question[: blank.start()]) if s.strip()][-1:]
    rest = _SENTENCE.split(question[blank.end() :], maxsplit=1)[0]
    wanted = set(content_words(" ".join(sentence) + " " + rest)) - {stem(noun)} - _NEGATION
    if not wanted:
        return set()
    found = set()
    clauses = [c for sentence in _sentences(text) if not _UNSTATED.search(sentence) for c in _CLAUSE.split(sentence)]
    for clause in clauses:
        if not wanted <= set(content_words(clause)):
            continue
        for hit in re.finditer(r"(?i)(?<![\w'.,])(\d+(?:\.\d+)?|" + _COUNT_WORD + r")\s+" + re.escape(noun) + r"\b", clause):
            found.add(hit.group(1).lower())
    return found


# ---------------------------------------------------------------- how many


def counted(sentences: list[str], ask: str) -> str | None:
    """`How many objects are left?` answered by `... there are 4 objects left.` -> `4`: the count
    written before the things asked about, in a sentence that restates the rest of the question.
    Sentences that count them differently answer nothing."""
    m = _HOW_MANY.search(ask)
    if m is None:
        return None
    things = m.group(1).split()
    head = stem(things[-1])
    rest = [w for w in content_words(ask[m.end() :]) if w not in _NEGATION]
    counts = set()
    for sentence in sentences:
        if _UNSTATED.search(sentence) or _PROCEDURE.match(sentence):
            continue
        for hit in re.finditer(r"(?i)(?<![\w.])(?<!of\s)(?<!of\sthe\s)(" + _COUNT_WORD + r")\s+((?:[A-Za-z-]+\s+){0,3}?)([A-Za-z]+)\b", sentence):
            if stem(hit.group(3)) != head:
                continue
            later = content_words(sentence[hit.end() :])
            if all(w in later for w in rest):
                counts.add(hit.group(1) if hit.group(1)[0].isdigit() else number_word_value(hit.group(1)))
    return counts.pop() if len(counts) == 1 else None


# ---------------------------------------------------------------- yes / no


def yes_no_options(choices: list[str]) -> tuple[str, str] | None:
    """(the yes option, the no option) as written, when the options are exactly yes and no."""
    keys = {c.strip().lower(): c for c in choices}
    if set(keys) != {"yes", "no"}:
        return None
    return keys["yes"], keys["no"]


def proposition(ask: str) -> list[str]:
    """`Is Periwinkle the maximum?` -> [periwinkle, maximum]: the content words a yes/no question
    asserts; empty when it is no yes/no question or it is itself negated."""
    if not _AUX_START.match(ask):
        return []
    words = content_words(_AUX_START.sub("", ask, count=1))
    return [] if any(w in _NEGATION for w in words) else words


def polarity(sentence: str, readings: list[Claim]) -> bool | None:
    """True when the sentence asserts the proposition, False when it denies it (one negation
    before its end, or its comparison reversed: `more` for `less`), None when it does neither (not
    restated, hedged, a negation after it). `The maximum is X` restates `Is X the maximum?` too.
    `readings`: the proposition's readings (`claims`)."""
    if _UNSTATED.search(sentence):
        return None
    for reading in (sentence, _copula_swapped(sentence)):
        if reading is None:
            continue
        words = content_words(reading)
        for claim in readings:
            found = _asserted(words, claim.words, _MAX_GAP if claim.gap else 0)
            if found is None or (claim.says == "denied_only" and found):
                continue
            return not found if claim.says == "opposite" else found
    return None


_COMPARATIVES = {
    "more": ("less", "fewer"), "less": ("more", "greater"), "fewer": ("more",), "greater": ("less", "smaller"),
    "larger": ("smaller",), "bigger": ("smaller",), "smaller": ("larger", "bigger", "greater"), "higher": ("lower",),
    "lower": ("higher",), "longer": ("shorter",), "shorter": ("longer", "taller"), "taller": ("shorter",),
}


_UNIVERSAL = frozenset({"each", "every", "all", "always", "everywhere"})


class Claim(NamedTuple):
    """A way a sentence may restate a yes/no question's proposition: its words, whether a word may
    be inserted between two of them (`gap`), and what asserting them says of the proposition:
    `same`, `opposite`, or `denied_only` (denying them denies it; asserting them says nothing)."""

    words: list[str]
    gap: bool
    says: Literal["same", "opposite", "denied_only"]


def _claims(prop: list[str], swapped: bool) -> list[Claim]:
    """How a sentence may restate the proposition (`swapped`: one whose comparison has its sides
    exchanged, which asserts the opposite): the proposition itself; when it holds one comparison,
    the comparison reversed, which asserts the opposite (`X is less than Y` denies `Is X more than
    Y?`); when it holds a universal (`each`, `all`), the same without it, which can only deny (`f
    is not continuous at x = 1` denies `Is f continuous at each point?`; `f is continuous at x = 1`
    says nothing of every point)."""
    claims = [Claim(prop, True, "opposite" if swapped else "same")]
    at = [k for k, w in enumerate(prop) if w in _COMPARATIVES]
    if len(at) == 1:
        k = at[0]
        claims += [Claim(prop[:k] + [other] + prop[k + 1 :], False, "same" if swapped else "opposite") for other in _COMPARATIVES[prop[k]]]
    particular = [w for w in prop if w not in _UNIVERSAL]
    if not swapped and len(prop) > len(particular) >= 2:
        claims.append(Claim(particular, True, "denied_only"))
    return claims


_COMPARISON = r"(?:more|less|fewer|greater|larger|bigger|smaller|higher|lower|longer|shorter|taller)"
# `the number of cars that are left of the bus greater than ...`: a relative clause on a side of a
# comparison, which a restatement often leaves out (`the number of cars is greater than ...`).
_SIDE_CLAUSE = re.compile(r"\s+(?:that|which|who)\s+(?:is|are|was|were)\s+[^?,;]{1,120}?(?=\s+" + _COMPARISON + r"\s+(?:[a-z]+\s+)?than\b)", re.I)
# `Does X have a higher value than Y?`, which a restatement writes `the value of X is higher than Y`.
_HAVE_MORE = re.compile(
    r"^\s*(?:does|do|did)\s+(?P<x>.+?)\s+(?:have|has)\s+(?:a|an)\s+(?P<comp>" + _COMPARISON + r")\s+"
    r"(?P<n>[a-z]+(?:\s+[a-z]+)?)\s+than\s+(?P<y>.+?)\s*\?\s*$",
    re.I,
)
# `Are there more A [in front of C] than B?` and `Is A greater than B?`: the two sides, to exchange.
_THERE_MORE = re.compile(r"^\s*(?P<aux>(?:are|is|were|was)\s+there\s+)(?P<comp>more|fewer|less)\s+(?P<a>.+?)\s+than\s+(?P<b>.+?)\s*\?\s*$", re.I)
_SUBJECT_MORE = re.compile(r"^\s*(?P<aux>is|are|was|were)\s+(?P<a>.+?)\s+(?P<comp>" + _COMPARISON + r")\s+than\s+(?P<b>.+?)\s*\?\s*$", re.I)
# Where a side's place phrase starts (`big buses in front of the truck`): it stays when sides swap.
_PLACE = re.compile(r"\s+(?=(?:in\s+front\s+of|behind|(?:to\s+the\s+)?(?:left|right)\s+of|under|above|below|beside|next\s+to|near)\b)", re.I)


def claims(ask: str) -> list[Claim]:
    """Every reading of a yes/no question's proposition a restatement may take (see `_claims`):
    the question as asked, without a relative clause on a side of its comparison, a `have a
    higher N than` comparison written as `the N of X is higher than`, and the comparison with its
    two sides exchanged (`there are more B than A` denies `Are there more A than B?`)."""
    asked = [ask]
    dropped = _SIDE_CLAUSE.sub("", ask)
    if dropped != ask:
        asked.append(dropped)
    for text in list(asked):
        m = _HAVE_MORE.match(text)
        if m is not None:
            asked.append(f"Is the {m['n']} of {m['x']} {m['comp']} than {m['y']}?")
    swaps = []
    for text in asked:
        if (m := _THERE_MORE.match(text)) is not None:
            a, place = (_PLACE.split(m["a"], maxsplit=1) + [""])[:2]
            swaps.append(f"{m['aux']}{m['comp']} {m['b']} {place} than {a}?")
            if place:
                swaps.append(f"{m['aux']}{m['comp']} {m['b']} than {m['a']}?")
        elif (m := _SUBJECT_MORE.match(text)) is not None:
            swaps.append(f"{m['aux']} {m['b']} {m['comp']} than {m['a']}?")
    out: list[Claim] = []
    for text, swapped in [(t, False) for t in asked] + [(t, True) for t in swaps]:
        prop = proposition(text)
        if len(prop) >= 2:
            out += _claims(prop, swapped)
    return out


_IDENTITY = re.compile(r"^\s*(the\s+[^,;]{1,80}?)\s+is\s+((?:not\s+)?)([^,;]{1,80}?)\s*(?=[,;.!]|$)", re.I)


def _copula_swapped(sentence: str) -> str | None:
    """`The high median is Light Sky Blue, as ...` -> `Light Sky Blue is the high median`: an
    identity read the other way round (only for a subject that starts with `the`)."""
    m = _IDENTITY.match(sentence)
    if m is None:
        return None
    return f"{m.group(3)} is {m.group(2)}{m.group(1)}"


def _asserted(words: list[str], prop: list[str], max_gap: int) -> bool | None:
    """Whether `words` assert (True) or deny (False) `prop` written in order, or None. A word
    inserted into it must not be a quantity (`more than half of Y` says nothing of `more than Y`)."""
    plain = [w for w in words if w not in _NEGATION]
    span = _in_order(plain, prop, max_gap)
    if span is None or _inserts_quantity(plain[span[0] : span[1] + 1], prop):
        return None
    end = _index_in(words, plain, span[1])
    negations = sum(1 for w in words[: end + 1] if w in _NEGATION)
    if any(w in _NEGATION for w in words[end + 1 :]) or negations > 1:
        return None
    return negations == 0


def _inserts_quantity(matched: list[str], prop: list[str]) -> bool:
    """Whether the words matched hold a quantity the proposition does not (`half`, `twice`, `3`)."""
    return any(w not in prop and _QUANTITY.fullmatch(w) for w in matched)


def without_premise(sentence: str, ask: str) -> str:
    """The sentence without the condition it repeats from the question (`If caterpillars
    decrease, plants will increase.` -> `plants will increase.`; `... would decrease if the tree
    population decreased.` -> `... would decrease.`): a leading one always, a trailing one when
    all its words are the question's."""
    sentence = _PREMISE.sub("", sentence, count=1)
    m = _TRAILING_PREMISE.search(sentence)
    if m and set(content_words(m.group())) - {"if"} <= set(content_words(ask)):
        sentence = sentence[: m.start()] + "."
    return sentence


def _index_in(words: list[str], plain: list[str], k: int) -> int:
    """The index in `words` of the k-th word of `plain` (`words` without its negations)."""
    seen = -1
    for i, w in enumerate(words):
        if w not in _NEGATION:
            seen += 1
            if seen == k:
                return i
    return len(words) - 1


def yes_no(sentences: list[str], ask: str, choices: list[str]) -> str | None:
    """`Is Periwinkle the maximum?` answered by `Periwinkle is not the maximum.` -> the no option."""
    options = yes_no_options(choices)
    readings = claims(ask)
    if options is None or not readings:
        return None
    said = {p for p in (polarity(s, readings) for s in sentences) if p is not None}
    if len(said) != 1:
        return None
    return options[0] if said.pop() else options[1]


# ---------------------------------------------------------------- text options


def option_paired(sentences: list[str], ask: str, choices: list[str]) -> str | None:
    """`What happens if caterpillars decrease?` (options `plants decrease` / `plants increase` ...)
    answered by `If caterpillars decrease, plants will increase.` -> `plants increase`: the first
    sentence that restates the question and names an option's words in order, when it names one."""
    if not all(_WORDY.search(c) and not _MATH.search(c) for c in choices):
        return None  # numeric or math options are read as values, not as words
    phrases = [content_words(c) for c in choices]
    if not all(phrases):
        return None  # an option of stop words only (`It is.`) cannot be told from the sentence
    for sentence in sentences:
        if not restates(sentence, ask):
            continue
        clause = without_premise(sentence, ask)
        words = content_words(clause)
        hits = [k for k, p in enumerate(phrases) if _in_order(words, p, _OPTION_GAP) is not None]
        hits = [k for k in hits if not any(j != k and _in_order(phrases[j], phrases[k], 0) for j in hits)]
        if not hits:
            continue
        if len(hits) > 1 or _UNSTATED.search(clause) or _LETTERED.search(clause) or any(w in _NEGATION for w in words):
            return None
        return choices[hits[0]]
    return None


# An option letter that is a sentence's subject: the article `A` never comes before a verb
# (`A would be most affected ...`, `(C) is the largest ...`); `I` is the pronoun, never read so.
_LETTER_VERB = r"(?:\*\*)?(?:\(([A-HJ])\)|([A-HJ]))(?:\*\*)?\s+(?:would|will|is|are|was|were|has|have|had|can|could|should|may|might|must|does|did)\b"
_LETTER_SUBJECT = re.compile(r"^\s*" + _LETTER_VERB)
_LETTER_SUBJECT_ANYWHERE = re.compile(r"(?<![\w'])" + _LETTER_VERB)  # a cheap test before the sentences are read


def option_lettered(sentences: list[str], ask: str, choices: list[str]) -> str | None:
    """`Which organism would be most affected ...?` answered by `A would be most affected ...` ->
    `A`: the first sentence that restates the question with an option's letter as its subject."""
    if not choices or not any(_LETTER_SUBJECT_ANYWHERE.search(sentence) for sentence in sentences):
        return None
    for sentence in sentences:
        if not restates(sentence, ask):
            continue
        clause = without_premise(sentence, ask)
        m = _LETTER_SUBJECT.match(clause)
        if m is None or _UNSTATED.search(clause):
            return None
        letter = m.group(1) or m.group(2)
        return letter if ord(letter) - ord("A") < len(choices) else None
    return None


# ---------------------------------------------------------------- one new number


def new_value(sentences: list[str], question: str, ask: str) -> str | None:
    """`When was the value lower than 0.2%?` answered by `The value was lower than 0.2% in 1970.`
    -> `1970`: the response's first sentence restates the question and adds one number to it."""
    if not sentences:
        return None
    first = sentences[0]
    if _UNSTATED.search(first) or _PROCEDURE.match(first):
        return None
    main = _ELABORATION.sub("", first)
    if _RANGE.search(main) or not restates(main, ask):
        return None
    asked = {_number_key(n) for n in _NUMBER.findall(question)}
    new = [n.replace(" ", "") for n in _NUMBER.findall(main) if _number_key(n) not in asked]
    return new[0] if len(new) == 1 else None


def _number_key(number: str) -> str:
    return number.replace(",", "").replace(" ", "").rstrip("%")
