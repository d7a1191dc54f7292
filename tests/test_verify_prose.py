"""Answers stated in prose by chatty models (issue 21): pleasantries, run-on prompt turns, end
markers, tables after the answer, counts in words, Q/A labels. Every example is written for this
test in the shapes such models use; none is copied from a benchmark output."""

from __future__ import annotations

import pytest

from qvq_ray.verify.extract import extract
from qvq_ray.verify.restatement import restated_answer
from qvq_ray.verify.prose import (
    answer_text,
    before_new_turn,
    number_word_value,
    qa_label_removed,
    strip_end_tokens,
    subject_count,
    without_closing_pleasantries,
    without_trailing_blocks,
)

YES_NO = ["Yes", "No"]
ANGLES = ["30°", "45°", "60°", "75°"]
MARKET = ["shortage", "surplus"]
ANIMALS = ["Owls", "Snakes and hawks", "Insects", "Frogs"]
TIMES = ["half", "quarter", "o'clock", "quarter to", "quarter past"]
LOWER_LETTERS = ["(c)", "(a)", "(d)", "(b)"]


@pytest.mark.parametrize(
    "closing",
    [
        "Is there anything else I can help you with?",
        "Let me know if you have other questions.",
        "Please let me know if you need anything else!",
        "I hope this helps!",
        "Hope that helps.",
        "Feel free to ask if anything is unclear.",
        "If you have any further questions, don't hesitate to ask.",
        "Do you have any other questions about the chart?",
        "Would you like me to explain the steps in more detail?",
        "Thank you for the question!",
        "Good luck with your studies!",
        "I'd be happy to help with anything else.",
    ],
)
def test_closing_pleasantries_and_offers_do_not_hide_the_answer(closing):
    text = f"The pencil in the picture measures 7 cm. {closing}"
    assert without_closing_pleasantries(text) == "The pencil in the picture measures 7 cm."
    found = extract(text)
    assert (found.answer, found.how) == ("7 cm", "final_sentence")


def test_several_closing_sentences_are_dropped_and_nothing_else():
    text = "So there are 4 red apples in the bowl.\n\nI hope this helps. Let me know if you have more questions!"
    assert answer_text(text) == "So there are 4 red apples in the bowl."
    assert without_closing_pleasantries("The total is 12. Then we add 3.") == "The total is 12. Then we add 3."


def test_a_later_remark_does_not_cancel_a_stated_answer():
    text = "The answer is (B), No. I cannot see any red cars in the picture."
    assert extract(text, YES_NO).answer == "(B), No"
    # a remark that takes the answer itself back still does
    assert extract("The answer is (B). However, without the image I cannot give a definitive answer.", YES_NO).answer is None


def test_an_answer_before_a_table_or_a_code_block_is_found():
    table = "The tallest bar reaches 45 units.\n\nHere is the data I read:\n\n| year | value |\n|---|---|\n| 2018 | 30 |\n| 2019 | 45 |\n"
    assert without_trailing_blocks(table) == "The tallest bar reaches 45 units."
    assert extract(table).answer == "45"
    code = "Therefore, the area is 24 square units.\n\n```python\nprint(6 * 8 / 2)\n```\n\nHope this helps!"
    assert answer_text(code) == "Therefore, the area is 24 square units."
    assert extract(code).answer == "24 square units"
    only_table = "| a | b |\n|---|---|\n| 1 | 2 |"
    assert without_trailing_blocks(only_table) == only_table


def test_end_of_sequence_markers_are_no_text():
    assert strip_end_tokens("The length is 16 meters.</s>") == "The length is 16 meters."
    assert strip_end_tokens("<s> x <|im_end|>") == " x "
    found = extract("The answer to your question is (A) Yes. There are more buses than bikes.</s>", YES_NO)
    assert (found.answer, found.how) == ("(A) Yes", "statement")


def test_a_run_on_into_a_new_prompt_turn_is_not_read():
    text = "The answer is 4.\n\nQuestion: How many circles are there?\nAnswer: 7.\n\nQuestion: How many"
    assert before_new_turn(text) == "The answer is 4.\n\n"
    assert extract(text).answer == "4"
    turn = "B\nHuman: Which shape comes next?\nAI: C"
    assert extract(turn, ["circle", "square", "star"]).answer == "B"
    # a response that restates the question first is no run-on
    assert before_new_turn("Question: What is 2 + 2?\nThe answer is 4.") is None
    assert extract("Question: What is 2 + 2?\nThe answer is 4.").answer == "4"


def test_a_qa_answer_label_is_not_option_a():
    assert qa_label_removed("A: No, the line is not straight.", "Yes") == "No, the line is not straight."
    assert qa_label_removed("A: Yes", "Yes") == "A: Yes"  # option A's own text: both readings agree
    assert extract("A: No, the line is not straight.", YES_NO).answer in ("No", "B")
    assert extract("A: The correct option letter is C. The side is 60°.", ANGLES).answer == "C"
    assert extract("A - No, the two windows have different shapes.", YES_NO).answer in ("No", "B")


def test_an_answer_first_yes_or_no():
    found = extract("No, the orange line is lower. It starts at 3 units. It ends at 5 units.", YES_NO)
    assert (found.answer, found.how) == ("No", "whole_response")
    # the mention rule may name the same option first; either way it is that option
    assert extract("Yes, as the chart shows 12 blue bars and only 1 red bar.", YES_NO).answer in ("Yes", "A")


@pytest.mark.parametrize(
    "sentence, count",
    [
        ("There are three cubes left after removing the spheres.", "3"),
        ("Based on the image, there were two bags with at least 60 but fewer than 81 beads.", "2"),
        ("There are a total of 4 models with a score lower than 8 in at least one test.", "4"),
        ("After removing the red balls, 2 cylinders are left.", "2"),
        ("5 items sold fewer than 3 units in one store.", "5"),
        ("Approximately 50% of the tiles are black.", "50%"),
        ("There is only one bar with a value smaller than 0.", "1"),
        ("Based on the survey, 10% of people prefer tea, which is the least liked drink.", "10%"),
    ],
)
def test_the_last_sentence_rule_takes_the_count_not_the_last_number(sentence, count):
    found = extract(sentence)
    assert (found.answer, found.how) == (count, "final_sentence")


def test_count_words():
    assert number_word_value("twelve.") == "12"
    assert number_word_value("one of the bars") is None
    assert number_word_value("one boy for every two girls") is None  # a rate, not a count
    assert subject_count("Three objects remain on the table.") == "3"
    assert subject_count("The table holds three objects.") is None


def test_option_words_beat_a_number_when_the_options_are_words():
    found = extract("At a price of $500, there is a surplus of 2,000 units.", MARKET)
    assert found.answer == "B"
    found = extract("The best score is reached by the Frogs model at 10 steps.", ANIMALS)
    assert found.answer == "D"


def test_options_listed_are_no_answer():
    assert extract("(C) yes\n(D) no", ["yes", "no"]).answer is None
    assert extract("Pick the right option:\n\n(A) 30°\n(B) 45°\n(C) 60°\n(D) 75°", ANGLES).answer is None


def test_the_option_named_with_its_letter_beats_words_in_the_explanation():
    text = (
        "The animals most affected by less grass are (B) Snakes and hawks. "
        "Without grass there is less food for the insects, which the snakes eat."
    )
    assert extract(text, ANIMALS).answer == "B"


def test_letter_statements_in_other_shapes():
    assert extract("A is the correct option. The sides meet at T.", ANGLES).answer == "A"
    assert extract('Based on the chart, option B, "surplus," is the correct answer.', MARKET).answer == "B"
    assert extract("The answer is B - quarter.", TIMES).answer == "B - quarter"
    assert extract('The correct answer is "no." The line is flat.', ["yes", "no"]).answer == "no"
    # a repetition loop cut off after a marker keeps the answer stated before it
    loop = "The correct option letter is (A) 30°.\n\n" * 3 + "The correct option letter is ("
    assert extract(loop, ANGLES).answer == "(A) 30°"


def test_the_other_options_listed_are_not_a_mention():
    text = "The frogs would decrease, because they eat the insects. The other options (A, B, and D) are not affected."
    assert extract(text, ANIMALS).answer is None


@pytest.mark.parametrize(
    "answer, gold, choices, correct",
    [
        ("(E)", "(b)", ["(c)", "(a)", "(d)", "(e)", "(b)"], True),  # a capital letter names option E
        ("(e)", "(e)", ["(c)", "(a)", "(d)", "(e)", "(b)"], True),  # the option text itself
        ("(D) no", "no", ["yes", "no"], True),  # a letter past the last option, then an option's text
        ("(D) maybe", "no", ["yes", "no"], False),
        ("B - quarter", "quarter", TIMES, True),
        ("C - quarter to", "quarter", TIMES, False),  # letter C, text of D: two answers
    ],
)
def test_choice_comparisons(answer, gold, choices, correct):
    assert _check(f"The answer is {answer}.", gold, choices).correct is correct


@pytest.mark.parametrize(
    "value, gold, choices",
    [
        ("60 degrees", "60*\\degree", ["30*\\degree", "60*\\degree"]),
        ("4.40 meters", "4.40米", ["3.85米", "4.40米"]),
        ("around 31%", "Around 31%", ["Around 21%", "Around 31%"]),
    ],
)
def test_an_option_value_in_the_last_sentence_names_the_option(value, gold, choices):
    verdict = _check(f"Based on the figure, the measured value is {value}.", gold, choices)
    assert verdict.correct is True and verdict.extraction == "final_sentence", verdict


def _check(response, gold, choices):
    from qvq_ray.verify.spec import AnswerSpec
    from qvq_ray.verify.verifier import default_verifier

    return default_verifier().check_sync(response, AnswerSpec(choices=choices), gold=gold)


# ---------------------------------------------------------------- answers given by restating the question

GROWTH = ["lizards decrease", "lizards increase", "nothing changes"]
SHAPES = ["circle", "square", "triangle", "hexagon"]


def _assert_restated(text, question, answer):
    """`answer` read by the rule `restatement`; with None, the rule reads nothing (others may)."""
    found = extract(text, question=question)
    assert (found.answer, found.how) == (answer, "restatement") if answer else found.how != "restatement"


def _restated(text, question, choices=None):
    found = extract(text, choices or [], question=question)
    return found.answer if found.how == "restatement" else (found.answer, found.how)


@pytest.mark.parametrize(
    "text, answer",
    [
        ("Looking at the plot, the red curve is not the highest.", "no"),
        ("In the picture, the red curve is the highest.", "yes"),
        ("The red curve is the highest of all.", "yes"),
        ("The highest is the red curve, as it sits above the others.", "yes"),  # an identity read both ways
        ("The red curve is higher than the highest blue point.", None),  # another proposition
        ("It is unclear whether the red curve is the highest.", None),  # a hedge states nothing
        ("The red curve is the highest, not the blue one.", None),  # a negation after it: unclear
        ("The red curve is the highest. Later on, the red curve is not the highest.", None),  # two verdicts
    ],
)
def test_a_yes_no_question_restated_answers_it(text, answer):
    assert _restated(text, "Is the red curve the highest?", ["yes", "no"]) == (answer if answer else (None, None))


def test_a_reversed_comparison_denies_and_an_inserted_quantity_says_nothing():
    question = "Is the square smaller than the circle?"
    assert _restated("The square is larger than the circle.", question, YES_NO) == "No"
    assert _restated("The square is smaller than the circle.", question, YES_NO) == "Yes"
    # `smaller than half of` is no answer to `smaller than`; reversed, a word between is not allowed
    assert _restated("The square is larger than half the circle.", question, YES_NO) == (None, None)
    assert _restated("The square is smaller than half the circle.", question, YES_NO) == (None, None)
    assert extract("Yes, the square is smaller than the circle.", YES_NO, question=question).answer in ("Yes", "A")


def test_without_the_question_nothing_is_read_from_a_restatement():
    found = extract("Looking at the plot, the red curve is not the highest.", ["yes", "no"])
    assert found.answer is None


@pytest.mark.parametrize(
    "text, answer",
    [
        ("If hawks disappear, lizards would probably increase in number.", "lizards increase"),
        ("When the hawks disappear, the lizards would decrease over time.", "lizards decrease"),
        ("Lizards would increase if hawks disappear.", "lizards increase"),  # the question's own condition after it
        ("If hawks disappear, lizards would not increase.", None),  # negated
        ("If hawks disappear, lizards may increase or lizards may decrease.", None),  # two options
        ("Hawks eat many animals. Lizards would increase.", None),  # no sentence restates the question
    ],
)
def test_an_option_paired_with_the_question_answers_it(text, answer):
    expected = answer if answer else (None, None)
    assert _restated(text, "What happens if hawks disappear?", GROWTH) == expected


def test_options_named_by_letter_or_math_are_left_to_the_other_rules():
    text = "If hawks disappear, (C) lizards increase."  # a letter that contradicts the words: not for this rule
    assert extract(text, GROWTH, question="What happens if hawks disappear?").how != "restatement"
    math = ["$\\frac{1}{2}$ of the area", "$\\frac{1}{3}$ of the area"]
    assert extract("The shaded part is 1/2 of the area.", math, question="What part of the area is shaded?").how != "restatement"


@pytest.mark.parametrize(
    "text, answer",
    [
        ("Each box holds 5 pens, so there are 5 pens in every box.", "5"),
        ("There are five pens in every box.", "5"),
        ("There are 2.5 pens in every box.", "2.5"),  # a decimal is read whole
        ("There are 4 pens in every box, or 6 pens in every box.", None),  # two fillings
    ],
)
def test_a_blank_written_back_filled_answers_it(text, answer):
    question = "Fill in the blank. The 20 pens go into 4 boxes. There are (_) pens in every box."
    _assert_restated(text, question, answer)


def test_a_blank_copied_unfilled_is_no_answer():
    question = "Fill in the blank. The 20 pens go into 4 boxes. There are (_) pens in every box."
    assert extract("The box holds ___ pens, divided into 4 boxes.", question=question).answer is None
    assert extract("The box holds ___ pens, divided into 4 boxes.").answer is None


def test_a_filled_blank_that_also_reads_as_a_longer_option_is_no_answer():
    question = "What time is shown? It is (_) past four."
    assert _restated("The clock shows half past four.", question, TIMES) == "half"
    # `quarter past four`: `quarter` fills the blank, but `quarter past` is an option too
    assert _restated("The clock shows quarter past four.", question, TIMES) != "quarter"


@pytest.mark.parametrize(
    "text, answer",
    [
        ("There are 4 cubes left on the table. The 2 spheres were removed earlier.", "4"),
        ("Three cubes are left. That is all, since 1990.", "3"),
        ("There are 5 cubes in total. After removing them, 3 cubes are left.", "3"),
        ("Of the five cubes, only one is left.", None),  # a part of a whole is no count of the rest
        ("There are 4 cubes left. No, there are 2 cubes left.", None),  # two counts: the other rules decide
    ],
)
def test_how_many_answered_by_counting_the_things_asked_about(text, answer):
    question = "Subtract all spheres. How many cubes are left?"
    _assert_restated(text, question, answer)


def test_one_new_number_in_a_first_sentence_that_restates_the_question():
    question = "In which year was the export share lower than 12%?"
    text = "The export share was lower than 12% in 1994. It rose above 12% a few years later."
    assert _restated(text, question) == "1994"
    # an elaborating clause adds no second value; a range is no value
    text = "The export share was lower than 12% in 1994, with 40 countries reporting."
    assert _restated(text, question) == "1994"
    assert restated_answer("The range of the numbers is from 0 to 9.", "The log covers 9 days. What is the range of the numbers?", []) is None


def test_a_last_sentence_that_repeats_the_question_s_number_gives_way():
    question = "At which x does the curve first reach 7?"
    text = "When the curve first reaches 7, it happens at x = 4. This is the first point where the curve reaches 7."
    assert extract(text, question=question) == ("4", "restatement")


def test_a_first_and_a_last_value_that_differ_are_two_answers():
    question = "What is the mass of the block?"
    text = "The mass of the block is 12 kg. The block beside it is 9 kg."
    assert extract(text, question=question).answer is None
    # unless the last sentence concludes
    text = "The mass of the block is 12 kg. The scale reads 9.\n\nTherefore, the mass of the block is 9 kg."
    assert extract(text, question=question).answer == "9 kg"


def test_restatement_is_a_weak_extraction():
    from qvq_ray.verify.verdict import EXTRACTIONS, WEAK_EXTRACTIONS

    assert "restatement" in EXTRACTIONS and "restatement" in WEAK_EXTRACTIONS
    from qvq_ray.verify.spec import AnswerSpec
    from qvq_ray.verify.verifier import default_verifier

    verdict = default_verifier().check_sync(
        "The red curve is not the highest.", AnswerSpec(choices=["yes", "no"]), gold="no", question="Is the red curve the highest?"
    )
    assert verdict.correct is True and verdict.extraction == "restatement" and "weak_extraction" in verdict.issues


def test_the_question_comes_from_the_problem_when_not_given():
    from types import SimpleNamespace

    from qvq_ray.verify.spec import AnswerSpec
    from qvq_ray.verify.verifier import default_verifier

    problem = SimpleNamespace(question="Is the red curve the highest?", spec=AnswerSpec(choices=["yes", "no"]))
    verdict = default_verifier().check_sync("The red curve is the highest.", problem.spec, gold="yes", problem=problem)
    assert verdict.correct is True and verdict.extraction == "restatement"


def test_an_option_question_answered_with_its_letter_and_text_is_that_letter():
    options = ["Does the ice melt faster in salt water?", "Does the ice melt faster in fresh water?"]
    text = "The answer is (B) Does the ice melt faster in fresh water? By timing both cubes, we can tell."
    assert extract(text, options).answer.startswith("(B) Does the ice melt faster in fresh water")
    assert _check(text, options[1], options).correct is True


def test_an_option_named_with_its_letter_survives_a_later_list_of_others():
    text = "The animal with the most legs is option (D) Frogs.\n\nThe Owls have 2, the Insects 6 and the Frogs 4."
    assert extract(text, ANIMALS).answer == "D"


# ---------------------------------------------------------------- issue 21, the remaining misses


@pytest.mark.parametrize(
    "text, answer, how",
    [
        ("378}", "378", "whole_response"),  # a `\boxed{` the prompt opened, closed by the model
        ("\\text{The answer is B.}", "B", "statement"),  # the group around the statement closes after it
        ("The answer is \\frac{1}{2}}.", "\\frac{1}{2}", "statement"),
        ("The answer is \\{1, 2\\}.", "\\{1, 2\\}", "statement"),  # a literal brace is kept
        ("The answer is \\frac{1}{2}.", "\\frac{1}{2}", "statement"),  # a matched one too
    ],
)
def test_a_closing_brace_that_opens_nowhere_in_the_answer_is_dropped(text, answer, how):
    assert extract(text) == (answer, how)


ORGANISMS = ["Rabbit", "Fox", "Owl", "Beetle"]


@pytest.mark.parametrize(
    "text, answer",
    [
        ("C would suffer the most if the trees were cut down. Owls nest in trees.", "C"),
        ("If the trees were cut down, (B) would suffer the most.", "B"),
        ("C might suffer the most if the trees were cut down.", None),  # a hedge states nothing
        ("A lot of animals would suffer the most if the trees were cut down.", None),  # the article `A`
        ("D would suffer the most if the trees were cut down.", "D"),
    ],
)
def test_an_option_letter_as_the_subject_of_a_restatement_answers(text, answer):
    question = "Which animal would suffer the most if the trees were cut down?"
    found = extract(text, ORGANISMS, question=question)
    assert found.answer == answer
    assert extract(text, ORGANISMS).answer is None or text.startswith("If")  # the rule needs the question


@pytest.mark.parametrize(
    "text, answer",
    [
        ("The curve is not increasing at the point x = 2, where it peaks.", "No"),  # a counterexample denies `every`
        ("The curve is increasing at the point x = 2.", None),  # one point asserts nothing of every point
        ("The curve is increasing at every point.", "Yes"),
    ],
)
def test_a_universal_is_denied_by_a_counterexample_only(text, answer):
    assert _restated(text, "Is the curve increasing at every point?", YES_NO) == (answer if answer else (None, None))


@pytest.mark.parametrize(
    "text, answer",
    [
        ("The 20 pens go into 4 boxes, so every box holds 5 pens.", "5"),
        ("The 20 pens go into 4 boxes, and every box then holds five pens.", "5"),
        ("The 20 pens go into 4 boxes.", None),  # `20 pens` is counted, but not `in every box`
        ("Every box holds 5 pens, or perhaps every box holds 6 pens.", None),  # a hedge
    ],
)
def test_a_blank_restated_with_its_words_reordered_answers_it(text, answer):
    question = "Fill in the blank. The 20 pens go into 4 boxes. There are (_) pens in every box."
    _assert_restated(text, question, answer)


@pytest.mark.parametrize(
    "question, text, answer",
    [
        # the sides exchanged: asserting the swapped comparison denies, reversing it too asserts
        ("Are there more red cubes behind the sphere than blue cylinders?",
         "There are more blue cylinders behind the sphere than red cubes.", "No"),
        ("Are there more red cubes behind the sphere than blue cylinders?",
         "There are fewer blue cylinders behind the sphere than red cubes.", "Yes"),
        ("Are there more red cubes than blue cylinders?", "There are more blue cylinders than red cubes.", "No"),
        ("Is the square larger than the circle?", "The circle is larger than the square.", "No"),
        ("Is the square larger than the circle?", "The circle is smaller than the square.", "Yes"),
        # a relative clause on a side left out
        ("Is the number of balls that are left of the box greater than the number of cones?",
         "The number of balls is greater than the number of cones.", "Yes"),
        ("Is the number of balls that are left of the box greater than the number of cones?",
         "The number of balls is less than the number of cones.", "No"),
        # `X has a higher N than Y` written `the N of X is higher than Y`
        ("Does Ohio have a higher value than Utah?", "The value of Ohio is higher than that of Utah.", "Yes"),
        ("Does Ohio have a higher value than Utah?", "The value of Ohio is lower than Utah.", "No"),
        ("Does Ohio have a higher value than Utah?", "The value of Utah is higher than Ohio.", None),  # not this reading
    ],
)
def test_a_comparison_restated_another_way_answers_it(question, text, answer):
    assert _restated(text, question, YES_NO) == (answer if answer else (None, None))


def test_a_rate_s_whole_and_the_pronoun_one_are_no_answer():
    text = "The slowest runner is the one that finishes 1 out of 10 races."
    assert extract(text).answer is None  # `10 races` is the rate's whole; `one that` is no count
    assert extract("The share of defects is 0.2, which means two out of ten parts fail.").answer == "0.2"
    assert number_word_value("one that finishes last") is None
    assert number_word_value("two that are red") == "2"
