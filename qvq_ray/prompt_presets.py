"""Shipped prompt presets: this project's default, and VLMEvalKit's and lmms-eval's per benchmark.

Each preset is transcribed from the code that builds the prompt in its toolkit, named below (repo,
path, function) and in README "Prompts"; tests/test_prompt_templates.py renders each one on the
shared benchmark samples and compares it with a port of that code. A preset sets the user message
only: the system message stays `model.system_prompt` (QVQ's, as VLMEvalKit's QVQ-72B-Preview
entry in vlmeval/config.py also sends).

What the index of public code could not show is said in the preset's `notes`, never filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A named template: every PromptConfig field, with where it comes from."""

    source: str
    template: dict[str, Any]
    notes: str = ""
    benchmarks: tuple[str, ...] = field(default=())


# MathVista's own answer-format hints, one per answer type (lupantech/MathVista
# evaluation/build_query.py `create_one_query`, shot_type 'solution'; the same sentences open every
# `query` of data/query.json and of the HF dataset's `query` column).
MATHVISTA_HINTS = {
    "choice": "Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
    "integer": "Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.",
    "float_1": "Please answer the question requiring a floating-point number with one decimal place and provide the "
    "final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float_2": "Please answer the question requiring a floating-point number with two decimal places and provide the "
    "final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Please answer the question requiring a Python list as an answer and provide the final list, e.g., "
    "[1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}
# vlmeval/vlm/qwen2_vl/prompt.py `Qwen2VLPromptMixin._build_vqa_prompt`: VQA_PROMPT.
VLMEVALKIT_VQA_SUFFIX = "Please try to answer the question with short words or phrases if possible."

PRESETS: dict[str, Preset] = {
    "qvq": Preset(
        source="QVQ model card (huggingface.co/Qwen/QVQ-72B-Preview): system prompt, images before the text "
        "(here: at the question's <image k> tags); the options and answer lines are this project's",
        notes="The model card's example sends the bare question: its options list and the '\\boxed{}' line are ours "
        "(the verifier reads the last \\boxed{}). Options that are only letters (drawn in the image) are not listed.",
        template=dict(
            parts=["{question}", "Choices:\n{choices}", "{instruction}", "Please put your final answer within \\boxed{{}}."],
            joiner="\n",
            choice_format="{letter}. {text}",
            choice_joiner="\n",
            letter_choices="omit",
            strip_choices=True,
            instructions={"choice": "Answer with the option's letter from the given choices."},
            unit_format="",
            images="inline",
            strip_question=True,
            strip=True,
        ),
    ),
    "vlmevalkit-mmmu": Preset(
        source="open-compass/VLMEvalKit vlmeval/vlm/qwen2_vl/prompt.py Qwen2VLPromptMixin._build_mmmu_prompt "
        "(QVQ-72B-Preview is a Qwen2VLChat with use_custom_prompt=True in vlmeval/config.py)",
        notes="All images first, '<image k>' tags left in the text. The dataset's own MMMUDataset.build_prompt "
        "(vlmeval/dataset/image_mcq.py) would interleave the images instead; the Qwen2-VL mixin overrides it.",
        benchmarks=("MMMU",),
        template=dict(
            parts=["Hint: {hint}", "Question: {question}", "Options:\n{choices}", "{instruction}"],
            joiner="\n",
            choice_format="{letter}. {text}",
            choice_joiner="\n",
            letter_choices="list",
            strip_choices=False,
            instructions={"choice": "Please select the correct answer from the options above."},
            unit_format="",
            images="first",
            strip_question=False,
            strip=True,
        ),
    ),
    "vlmevalkit-mathvista": Preset(
        source="open-compass/VLMEvalKit vlmeval/vlm/qwen2_vl/prompt.py Qwen2VLPromptMixin._build_vqa_prompt "
        "(MathVista_MINI is a VQA dataset, vlmeval/dataset/image_vqa.py) over MathVista's query "
        "(lupantech/MathVista data/query.json)",
        notes="The MathVista_MINI TSV is not in the index, so its `question` column could not be read. It is taken "
        "to be MathVista's own `query` (Hint / Question (Unit) / Choices), the shape VLMEvalKit's answer-extraction "
        "prompt feeds it in (vlmeval/dataset/utils/mathvista.py build_mathvista_gpt4_prompt); the query is rebuilt "
        "here from the native fields. A float answer with neither 1 nor 2 decimals gets no hint line (MathVista "
        "defines none).",
        benchmarks=("MathVista",),
        template=dict(
            parts=["Hint: {instruction}", "Question: {question}{unit}", "Choices:\n{choices}", VLMEVALKIT_VQA_SUFFIX],
            joiner="\n",
            choice_format="({letter}) {text}",
            choice_joiner="\n",
            letter_choices="list",
            strip_choices=False,
            instructions=dict(MATHVISTA_HINTS),
            unit_format=" (Unit: {unit})",
            images="first",
            strip_question=False,
            strip=False,
        ),
    ),
    "vlmevalkit-mathvision": Preset(
        source="open-compass/VLMEvalKit vlmeval/vlm/qwen2_vl/prompt.py Qwen2VLPromptMixin._build_vqa_prompt "
        "(MathVision is a VQA dataset, vlmeval/dataset/image_vqa.py)",
        notes="The MathVision TSV is not in the index, so what its `question` column holds could not be read: this "
        "preset sends MATH-V's question as written and does NOT list the options (VLMEvalKit's MATH-V extraction "
        "examples, vlmeval/dataset/utils/mathv.py, suggest the TSV may add a 'Hint: ... Choices: ...' text that "
        "could not be checked, so none is invented). For problems whose options are not drawn in the image, "
        "override `parts` to add 'Choices:\\n{choices}'.",
        benchmarks=("MathVision",),
        template=dict(
            parts=["{question}", VLMEVALKIT_VQA_SUFFIX],
            joiner="\n",
            choice_format="({letter}) {text}",
            choice_joiner="\n",
            letter_choices="list",
            strip_choices=False,
            instructions={},
            unit_format="",
            images="first",
            strip_question=False,
            strip=False,
        ),
    ),
    "lmms-eval-mathvista": Preset(
        source="EvolvingLMMs-Lab/lmms-eval lmms_eval/tasks/mathvista/mathvista_evals.py "
        "MathVistaEvaluator.create_one_query, shot_type 'format-prompt' (task mathvista_testmini, "
        "lmms_eval/tasks/mathvista/mathvista_testmini.yaml)",
        notes="Images first (lmms_eval/models/qwen2_vl.py puts the visuals before the text). lmms-eval defines no "
        "instruction for a float with neither 1 nor 2 decimals (it fails on one); here it gets none.",
        benchmarks=("MathVista",),
        template=dict(
            parts=["{question}{unit}", "{choices}", "{instruction}"],
            joiner="\n",
            choice_format="{letter}. {text}",
            choice_joiner="\n",
            letter_choices="list",
            strip_choices=False,
            instructions={
                "choice": "Answer with the option's letter from the given choices directly.",
                "integer": "Answer the question using a single integer number.",
                "float_1": "Answer the question using a single floating-point number with one decimal place.",
                "float_2": "Answer the question using a single floating-point number with two decimal places.",
                "list": "Answer the question using a Python list.",
            },
            unit_format=" (Unit: {unit})",
            images="first",
            strip_question=False,
            strip=True,
        ),
    ),
    "lmms-eval-mathvista-cot": Preset(
        source="EvolvingLMMs-Lab/lmms-eval lmms_eval/tasks/mathvista/mathvista_evals.py "
        "MathVistaEvaluator.create_one_query, shot_type 'step-by-step' (task mathvista_testmini_cot, "
        "lmms_eval/tasks/mathvista/mathvista_testmini_cot.yaml)",
        notes="The hint comes last, after the options. Images first, as in lmms-eval-mathvista.",
        benchmarks=("MathVista",),
        template=dict(
            parts=["Question: {question}{unit}", "Choices:\n{choices}", "{instruction}"],
            joiner="\n",
            choice_format="({letter}) {text}",
            choice_joiner="\n",
            letter_choices="list",
            strip_choices=False,
            instructions={key: f"Hint: {text}" for key, text in MATHVISTA_HINTS.items()},
            unit_format=" (Unit: {unit})",
            images="first",
            strip_question=False,
            strip=True,
        ),
    ),
    "lmms-eval-mathvision": Preset(
        source="EvolvingLMMs-Lab/lmms-eval lmms_eval/tasks/mathvision/utils.py mathvision_doc_to_text with "
        "mc_prompt from lmms_eval/tasks/mathvision/mathvision_test.yaml (and mathvision_testmini.yaml)",
        notes="The instruction is glued to the question with no space, as lmms-eval does. Letter-only options are "
        "listed ('A. A'), as lmms-eval does. Images first; MATH-V's <imageN> tags stay in the text.",
        benchmarks=("MathVision",),
        template=dict(
            parts=[
                'Please solve the problem step by step and put your answer in one "\\boxed{{}}".{question}',
                "Choices: {choices}",
                "{instruction}",
            ],
            joiner="\n",
            choice_format="{letter}. {text}",
            choice_joiner="\n",
            letter_choices="list",
            strip_choices=False,
            instructions={"choice": "Answer the question with the option's letter from the given choices directly."},
            unit_format="",
            images="first",
            strip_question=False,
            strip=False,
        ),
    ),
    "lmms-eval-mmmu": Preset(
        source="EvolvingLMMs-Lab/lmms-eval lmms_eval/tasks/mmmu/utils.py construct_prompt / mmmu_doc_to_text "
        "(task mmmu_val, lmms_eval/tasks/mmmu/mmmu_val.yaml: multiple_choice_prompt, open_ended_prompt)",
        notes="Images first, '<image k>' tags left in the text (lmms_eval/models/qwen2_vl.py).",
        benchmarks=("MMMU",),
        template=dict(
            parts=["{question}", "{choices}", "\n{instruction}"],
            joiner="\n",
            choice_format="{letter}. {text}",
            choice_joiner="\n",
            letter_choices="list",
            strip_choices=False,
            instructions={
                "choice": "Answer with the option's letter from the given choices directly.",
                "free": "Answer the question using a single word or phrase.",
            },
            unit_format="",
            images="first",
            strip_question=False,
            strip=False,
        ),
    ),
}
