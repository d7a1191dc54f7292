"""Prompt templates and presets (`prompt:` in the config).

Each shipped preset is rendered on the shared benchmark samples (../shared/data, read with the
project's loaders) and compared with a port of the upstream code it names, run on the same
native records: lmms-eval's `create_one_query` / `mathvision_doc_to_text` / `construct_prompt`,
VLMEvalKit's Qwen2-VL `_build_mmmu_prompt` / `_build_vqa_prompt`, and MathVista's own `query`
strings. The default preset keeps the project's prompt as it was. Then: problem text is data
(hostile questions), bad templates are config errors, a preset changes what the real tiny engine
receives, and every output row of a real batch job records the prompt.
"""

from __future__ import annotations

import ast
import asyncio
import json

import pytest
from pydantic import ValidationError

from qvq_ray.config import HFEngineConfig, ModelConfig, PolicyConfig, QvqConfig, SamplingConfig, VerifierConfig
from qvq_ray.datasets import load_problems
from qvq_ray.problem import Problem
from qvq_ray.prompt import IMAGE_MARKER, build_messages, template_sha, user_text
from qvq_ray.prompt_config import PromptConfig
from qvq_ray.prompt_presets import PRESETS
from tests.conftest import shared_data

MATHVISTA = "mathvista/data/testmini.json"
MATHVISION = "mathvision"
MMMU = "mmmu/Math/validation-00000-of-00001.parquet"


def _images(n: int) -> list[bytes]:
    return [f"IMG{i}".encode() for i in range(n)]


def _user(problem: Problem, preset: str, **overrides) -> list[dict]:
    messages = build_messages(problem, _images(len(problem.images)), system_prompt="SYS", prompt=PromptConfig(preset=preset, **overrides))
    assert messages[0] == {"role": "system", "content": [{"type": "text", "text": "SYS"}]}
    return messages[-1]["content"]


def _images_then(problem: Problem, text: str) -> list[dict]:
    """The 'first' layout: every image, then one text part."""
    return [{"type": "image", "image": data} for data in _images(len(problem.images))] + [{"type": "text", "text": text}]


def _paired(relative: str, native: list[dict], key: str) -> list[tuple[dict, Problem]]:
    problems = {p.id: p for p in load_problems(str(shared_data(relative)))}
    pairs = [(doc, problems[str(doc[key])]) for doc in native]
    assert len(pairs) == len(problems) > 0
    return pairs


def _mathvista() -> list[tuple[dict, Problem]]:
    data = json.loads(shared_data(MATHVISTA).read_text())
    return _paired(MATHVISTA, list(data.values()), "pid")


def _mathvision() -> list[tuple[dict, Problem]]:
    lines = (shared_data(MATHVISION) / "data" / "test.jsonl").read_text().splitlines()
    return _paired(MATHVISION, [json.loads(line) for line in lines if line.strip()], "id")


def _mmmu() -> list[tuple[dict, Problem]]:
    import pyarrow.parquet as pq

    table = pq.read_table(shared_data(MMMU), columns=["id", "question", "options", "question_type"])
    return _paired(MMMU, table.to_pylist(), "id")


# ---------------------------------------------------------------- ports of the upstream prompt code


def lmms_mathvista(doc: dict, shot_type: str) -> str:
    """lmms_eval/tasks/mathvista/mathvista_evals.py MathVistaEvaluator.create_one_query (shot 0, no caption/OCR)."""
    question, unit, choices = doc["question"], doc.get("unit") or "", doc.get("choices")
    precision, question_type, answer_type = doc.get("precision"), doc["question_type"], doc["answer_type"]
    hint_text = ""
    if shot_type == "format-prompt":
        if question_type == "multi_choice":
            hint_text = "Answer with the option's letter from the given choices directly."
        elif answer_type == "integer":
            hint_text = "Answer the question using a single integer number."
        elif answer_type == "float" and precision == 1:
            hint_text = "Answer the question using a single floating-point number with one decimal place."
        elif answer_type == "float" and precision == 2:
            hint_text = "Answer the question using a single floating-point number with two decimal places."
        elif answer_type == "list":
            hint_text = "Answer the question using a Python list."
    else:  # step-by-step
        if question_type == "multi_choice":
            hint_text = "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
        elif answer_type == "integer":
            hint_text = "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end."
        elif answer_type == "float" and precision == 1:
            hint_text = "Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end."
        elif answer_type == "float" and precision == 2:
            hint_text = "Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end."
        elif answer_type == "list":
            hint_text = "Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end."
    question_text = f"{question}" if shot_type == "format-prompt" else f"Question: {question}"
    if unit:
        question_text += f" (Unit: {unit})"
    if choices:
        if shot_type == "format-prompt":
            choices_text = "\n".join(f"{chr(ord('A') + i)}. {choice}" for i, choice in enumerate(choices))
        else:
            choices_text = "\n".join(["Choices:"] + [f"({chr(ord('A') + i)}) {choice}" for i, choice in enumerate(choices)])
    else:
        choices_text = ""
    test_query = "\n".join(e for e in [question_text, choices_text, hint_text] if e != "")
    return ("" + "\n\n" + test_query).strip()


def lmms_mathvision(doc: dict) -> str:
    """lmms_eval/tasks/mathvision/utils.py mathvision_doc_to_text, mc_prompt of mathvision_test.yaml."""
    question, choices = doc["question"], doc["options"]
    options = [chr(ord("A") + i) for i in range(len(choices))]
    choices_str = "\n".join([f"{option}. {choice}" for option, choice in zip(options, choices)])
    mc_prompt = "\n" + "Answer the question with the option's letter from the given choices directly."
    query_prompt = 'Please solve the problem step by step and put your answer in one "\\boxed{}".'
    if choices_str:
        query_prompt += f"{question}\nChoices: {choices_str}" + mc_prompt
    else:
        query_prompt += question
    return query_prompt


def lmms_mmmu(doc: dict) -> str:
    """lmms_eval/tasks/mmmu/utils.py construct_prompt with mmmu_val.yaml's prompts."""
    question = doc["question"]
    if doc["question_type"] == "multiple-choice":
        options = ast.literal_eval(doc["options"])
        parsed = "\n".join(f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options))
        return f"{question}\n{parsed}\n\nAnswer with the option's letter from the given choices directly."
    return f"{question}\n\nAnswer the question using a single word or phrase."


def vlmevalkit_mmmu(doc: dict) -> str:
    """vlmeval/vlm/qwen2_vl/prompt.py Qwen2VLPromptMixin._build_mmmu_prompt (the TSV's A, B, ... columns = the options)."""
    options = {chr(ord("A") + i): option for i, option in enumerate(ast.literal_eval(doc["options"]))}
    options_prompt = "Options:\n"
    for key, item in options.items():
        options_prompt += f"{key}. {item}\n"
    prompt = f"Question: {doc['question']}\n"
    if len(options):
        prompt += options_prompt
        prompt += "Please select the correct answer from the options above. \n"
    return prompt.rstrip()


def vlmevalkit_vqa(question: str) -> str:
    """vlmeval/vlm/qwen2_vl/prompt.py Qwen2VLPromptMixin._build_vqa_prompt."""
    return question + "\nPlease try to answer the question with short words or phrases if possible."


# MathVista's own `query` for three of the shared pids, verbatim from lupantech/MathVista data/query.json
# (commit 1d27dac): multiple choice, an integer with a unit, a float with one decimal.
MATHVISTA_QUERY = {
    "33": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
    "Question: Use a sector paper sheet with a central angle of 120.0 and a radius of 6.0 to roll into a conical "
    "bottomless paper cap (as shown in the picture), then the bottom perimeter of the paper cap is ()\n"
    "Choices:\n(A) 2\u03c0cm\n(B) 3\u03c0cm\n(C) 4\u03c0cm\n(D) 5\u03c0cm",
    "36": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at "
    "the end.\nQuestion: What is the age gap between these two people in image? (Unit: years)",
    "104": "Hint: Please answer the question requiring a floating-point number with one decimal place and provide the "
    "final value, e.g., 1.2, 1.3, 1.4, at the end.\nQuestion: What is the fraction of females facing the camera?",
}


# ---------------------------------------------------------------- presets vs upstream, on the shared samples


@pytest.mark.parametrize("preset, shot_type", [("lmms-eval-mathvista", "format-prompt"), ("lmms-eval-mathvista-cot", "step-by-step")])
def test_lmms_eval_mathvista_presets_match_create_one_query_on_every_sample(preset, shot_type):
    pairs = _mathvista()
    for doc, problem in pairs:
        assert _user(problem, preset) == _images_then(problem, lmms_mathvista(doc, shot_type)), doc["pid"]
    # the sample covers every kind of instruction the preset has
    kinds = {(d["question_type"], d["answer_type"], d.get("precision")) for d, _ in pairs}
    assert {("multi_choice", "text", None), ("free_form", "integer", None), ("free_form", "float", 1),
            ("free_form", "float", 2), ("free_form", "list", None)} <= kinds


def test_vlmevalkit_mathvista_sends_mathvistas_own_query_then_the_vqa_line():
    pairs = {doc["pid"]: problem for doc, problem in _mathvista()}
    for pid, query in MATHVISTA_QUERY.items():
        assert _user(pairs[pid], "vlmevalkit-mathvista") == _images_then(pairs[pid], vlmevalkit_vqa(query)), pid


def test_lmms_eval_mathvision_preset_matches_doc_to_text_on_every_sample():
    pairs = _mathvision()
    for doc, problem in pairs:
        assert _user(problem, "lmms-eval-mathvision") == _images_then(problem, lmms_mathvision(doc)), doc["id"]
    assert any(doc["options"] for doc, _ in pairs) and any(not doc["options"] for doc, _ in pairs)


def test_vlmevalkit_mathvision_preset_is_the_vqa_prompt_on_the_question():
    for doc, problem in _mathvision():
        assert _user(problem, "vlmevalkit-mathvision") == _images_then(problem, vlmevalkit_vqa(doc["question"])), doc["id"]


@pytest.mark.parametrize("preset, port", [("lmms-eval-mmmu", lmms_mmmu), ("vlmevalkit-mmmu", vlmevalkit_mmmu)])
def test_mmmu_presets_match_upstream_on_every_sample(preset, port):
    pairs = _mmmu()
    for doc, problem in pairs:
        assert _user(problem, preset) == _images_then(problem, port(doc)), doc["id"]
    assert {doc["question_type"] for doc, _ in pairs} == {"multiple-choice", "open"}
    assert any(len(problem.images) > 1 for _, problem in pairs)


def _qvq_as_it_was(problem: Problem) -> str:
    """The project's prompt before templates existed, for a question without image tags (images go first)."""
    choices = problem.spec.choices
    lines = []
    if choices:
        letters_only = all(c.strip("() .:").upper() == chr(ord("A") + i) for i, c in enumerate(choices))
        if not letters_only:
            lines += ["Choices:"] + [f"{chr(ord('A') + i)}. {c.strip()}" for i, c in enumerate(choices)]
        lines.append("Answer with the option's letter from the given choices.")
    lines.append("Please put your final answer within \\boxed{}.")
    return problem.question.strip() + "\n" + "\n".join(lines)


def test_default_preset_is_the_projects_prompt_on_every_sample():
    checked = 0
    for relative in (MATHVISTA, MATHVISION, MMMU):
        for problem in load_problems(str(shared_data(relative))):
            default = build_messages(problem, _images(len(problem.images)), system_prompt="SYS")
            assert default == build_messages(problem, _images(len(problem.images)), system_prompt="SYS", prompt=PromptConfig(preset="qvq"))
            if "<image" not in problem.question.lower():
                assert default[-1]["content"] == _images_then(problem, _qvq_as_it_was(problem)), problem.id
                checked += 1
    assert checked >= 40  # MathVista (no tags) and the MMMU rows without tags; tagged rows: tests/test_images_prompt_datasets.py


def test_every_preset_names_its_source_and_renders_every_sample():
    problems = [p for rel in (MATHVISTA, MATHVISION, MMMU) for p in load_problems(str(shared_data(rel)))]
    assert set(PRESETS) >= {"qvq", "vlmevalkit-mathvista", "vlmevalkit-mathvision", "vlmevalkit-mmmu",
                            "lmms-eval-mathvista", "lmms-eval-mathvision", "lmms-eval-mmmu"}
    texts = {}
    for name, preset in PRESETS.items():
        assert ".py" in preset.source or "model card" in preset.source, name
        texts[name] = [user_text(build_messages(p, _images(len(p.images)), system_prompt="", prompt=PromptConfig(preset=name))) for p in problems]
        assert all(t.strip() for t in texts[name])
    assert len({tuple(t) for t in texts.values()}) == len(PRESETS)  # no two presets send the same prompts


# ---------------------------------------------------------------- problem text is data


HOSTILE = "What is {question} {0} {} {{x}} ${y} $x %s {choices.__class__} {instruction!r} \\boxed{}?"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_hostile_question_is_inserted_as_written(preset):
    choices = ["{letter}", "${text}", "{0} and {{1}}"]
    problem = Problem(id="h", question=HOSTILE, choices=choices, unit="{unit}$", meta={"hint": "{hint} $hint"})
    text = user_text(build_messages(problem, [], system_prompt="", prompt=PromptConfig(preset=preset)))
    assert HOSTILE in text
    if "{choices}" in "".join(PRESETS[preset].template["parts"]):
        assert all(choice in text for choice in choices)
    if "{hint}" in "".join(PRESETS[preset].template["parts"]):
        assert "Hint: {hint} $hint\n" in text
    if PRESETS[preset].template["unit_format"]:
        assert f"{HOSTILE} (Unit: {{unit}}$)" in text


def test_a_custom_template_inserts_values_once_and_never_reads_them():
    problem = Problem(id="h", question="{choices}", choices=["{question}", "b"], answer_type="integer")
    config = PromptConfig(parts=["Q: {question}", "{choices}", "[{instruction}]", "{{literal}} \\boxed{{}}"],
                          choice_format="{letter}) {text}", instructions={"choice": "pick {one}"})
    text = user_text(build_messages(problem, [], system_prompt="", prompt=config))
    assert text == "Q: {choices}\nA) {question}\nB) b\n[pick {one}]\n{literal} \\boxed{}"


# ---------------------------------------------------------------- config: presets, overrides, errors


def test_a_yaml_config_selects_a_preset_and_overrides_one_instruction(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('prompt:\n  preset: lmms-eval-mmmu\n  instructions:\n    free: "Answer with a number."\n')
    config = QvqConfig.from_yaml(path)
    assert config.prompt.preset == "lmms-eval-mmmu" and config.prompt.overrides() == ["instructions"]
    assert QvqConfig.model_validate_json(config.model_dump_json()).prompt == config.prompt  # what Ray actors get
    resolved = config.prompt.resolved()
    assert resolved.instructions == {"choice": PRESETS["lmms-eval-mmmu"].template["instructions"]["choice"], "free": "Answer with a number."}
    open_question = Problem(id="o", question="How many?", answer_type="integer")
    assert user_text(build_messages(open_question, [], system_prompt="", prompt=config.prompt)) == "How many?\n\nAnswer with a number."
    assert QvqConfig().prompt.preset == "qvq"


def test_an_instruction_dropped_with_an_empty_string_stays_dropped_through_the_solver_path():
    problem = Problem(id="c", question="Which?", choices=["1", "2"])
    config = PromptConfig(instructions={"choice": ""})
    resolved = config.resolved()
    assert resolved.resolved() == resolved  # the solver resolves once, build_messages again
    for prompt in (config, resolved):
        text = user_text(build_messages(problem, [], system_prompt="", prompt=prompt))
        assert text == "Which?\nChoices:\nA. 1\nB. 2\nPlease put your final answer within \\boxed{}."


def test_the_recipe_hash_follows_the_template_and_the_system_prompt():
    base = template_sha(PromptConfig(), "SYS")
    assert base == template_sha(PromptConfig(preset="qvq"), "SYS") and len(base) == 16
    assert base != template_sha(PromptConfig(), "other system prompt")
    assert base != template_sha(PromptConfig(preset="lmms-eval-mmmu"), "SYS")
    assert base != template_sha(PromptConfig(joiner="\n\n"), "SYS")
    assert template_sha(PromptConfig(joiner="\n"), "SYS") == base  # overriding with the preset's own value


@pytest.mark.parametrize(
    "prompt, message",
    [
        ({"preset": "vlmevalkit"}, "unknown prompt preset 'vlmevalkit'; shipped: "),
        ({"parts": ["{question.__class__}"]}, "unknown field {question.__class__}"),
        ({"parts": ["{question[0]}"]}, "unknown field {question[0]}"),
        ({"parts": ["{0}"]}, "unknown field {0}"),
        ({"parts": ["put it in \\boxed{}"]}, "a literal '{}' is written '{{}}'"),
        ({"parts": ["{question!r}"]}, "takes no format spec or conversion"),
        ({"parts": ["{question:>40}"]}, "takes no format spec or conversion"),
        ({"parts": ["{question"]}, "write a literal brace as '{{' or '}}'"),
        ({"choice_format": "{letter}. {question}"}, "prompt.choice_format: unknown field {question}"),
        ({"unit_format": "{text}"}, "prompt.unit_format: unknown field {text}"),
        ({"instructions": {"multiple_choice": "x"}}, "instructions: unknown kind 'multiple_choice'"),
        ({"images": "last"}, "'inline' or 'first'"),
        ({"template": "{question}"}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_prompt_config_is_refused_at_load_naming_what_to_fix(prompt, message):
    with pytest.raises(ValidationError) as info:
        QvqConfig.model_validate({"prompt": prompt})
    assert message in str(info.value)
    assert "prompt" in str(info.value)


# ---------------------------------------------------------------- the engine receives it, the rows record it


class RecordingEngine:
    """The real engine, recording the messages of each request."""

    def __init__(self, real):
        self.real = real
        self.model_name = real.model_name
        self.messages: list[list[dict]] = []

    async def generate(self, messages, sampling):
        self.messages.append(messages)
        return await self.real.generate(messages, sampling)

    async def stream(self, messages, sampling):
        self.messages.append(messages)
        async for item in self.real.stream(messages, sampling):
            yield item


def test_a_config_preset_changes_what_the_real_engine_receives(tiny_model_dir):
    from qvq_ray.engines.hf_engine import HFEngine
    from qvq_ray.images import prepare_problem_images
    from qvq_ray.solver import Solver
    from qvq_ray.verify import Verifier

    problem = next(p for p in load_problems(str(shared_data(MMMU))) if p.id == "validation_Math_9")  # "Is <image 1> Hamiltonian?"
    model = ModelConfig(path=tiny_model_dir)
    images = prepare_problem_images(problem.images, model)
    engine = HFEngine(model, HFEngineConfig(max_batch_size=2, batch_wait_ms=1, torch_threads=1))
    verifier = Verifier(VerifierConfig(workers=1))
    try:
        sent, solutions = {}, {}
        for preset in ("qvq", "vlmevalkit-mmmu"):
            config = QvqConfig(model=model, prompt={"preset": preset}, sampling=SamplingConfig(max_tokens=4),
                               policy=PolicyConfig(max_attempts=1))
            recorder = RecordingEngine(engine)
            solutions[preset] = asyncio.run(Solver.from_config(recorder, verifier, config).solve(problem, image_bytes=images))
            (sent[preset],) = recorder.messages
            assert sent[preset] == build_messages(problem, images, system_prompt=model.system_prompt, prompt=config.prompt)
            assert solutions[preset].attempts and solutions[preset].attempts[0].prompt_tokens > 0
    finally:
        asyncio.run(engine.close())
        verifier.close()

    default_parts = [p["type"] for p in sent["qvq"][-1]["content"]]
    preset_parts = [p["type"] for p in sent["vlmevalkit-mmmu"][-1]["content"]]
    assert default_parts == ["text", "image", "text"]  # the image at its tag
    assert preset_parts == ["image", "text"]  # every image first, the tag kept in the text
    assert sent["vlmevalkit-mmmu"][-1]["content"][-1]["text"].startswith("Question: Is <image 1> Hamiltonian?")
    record = solutions["vlmevalkit-mmmu"].prompt
    assert record.preset == "vlmevalkit-mmmu" and record.overrides == []
    assert record.text == user_text(sent["vlmevalkit-mmmu"]) and record.text.startswith(IMAGE_MARKER + "Question: ")
    assert record.template_sha != solutions["qvq"].prompt.template_sha
    assert solutions["qvq"].model_dump(mode="json")["prompt"]["preset"] == "qvq"  # what /v1/solve returns
