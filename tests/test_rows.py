"""Row schemas come from the records: every field of a Solution survives Parquet, `None` scores
stay None, and every batch stage keeps the error-row rule (one output row per input row)."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qvq_ray.arrow_rows import arrow_schema
from qvq_ray.config import QvqConfig, SamplingConfig
from qvq_ray.problem import (
    Attempt,
    ImageRef,
    Problem,
    PromptRecord,
    Solution,
    error_row,
    input_schema,
    problem_from_row,
    problem_schema,
    problem_to_row,
    solution_from_row,
    solution_schema,
    solution_to_row,
)
from qvq_ray.verify.spec import AnswerSpec
from qvq_ray.verify.verdict import Verdict


def _every_field_set() -> tuple[Solution, Problem]:
    problem = Problem(
        id="p1",
        question="How far? <image1>",
        images=[ImageRef(path="a.png")],
        answer="2.47",
        spec=AnswerSpec(choices=["1 m", "2.47 m"], answer_type="float", unit="m", tolerance=[0.01], precision=2,
                        alternatives=["247 cm"]),
        source="bench",
        subject="physics",
        language="en",
        meta={"level": 3, "nested": {"k": [1, 2]}},
    )
    wrong = Verdict(answer="34", canonical="34", correct=False, issues=["false_calculation"],
                    false_claims=["97-73 = 34"], elapsed_s=0.25)
    right = Verdict(answer="2.47 m", canonical="2.47", correct=True, issues=[], false_claims=[], elapsed_s=0.5)
    attempts = [
        Attempt(text="97-73=34 so \\boxed{34}", sampling=SamplingConfig(temperature=0.7, seed=3, stop=["</s>"], top_k=5),
                prompt_tokens=11, completion_tokens=22, latency_s=1.5, finish_reason="abort", verdict=wrong,
                cut_off=True, tokens_saved=100),
        Attempt(text="\\boxed{2.47 m}", sampling=SamplingConfig(max_tokens=64), prompt_tokens=11, completion_tokens=5,
                latency_s=0.5, finish_reason="stop", verdict=right),
    ]
    solution = Solution(id="p1", answer="2.47 m", verdict=right, confidence=0.5, mode="oracle", chosen_attempt=1,
                        attempts=attempts, prompt_tokens=22, completion_tokens=27, tokens_saved=100, latency_s=2.0,
                        error="engine failed on attempt 3: boom", stop_reason="the same failed answer came back",
                        prompt=PromptRecord(preset="qvq", overrides=["instructions"], template_sha="0123456789abcdef",
                                            text="<image>How far? {question} $x\nPlease put your final answer within \\boxed{}."))
    return solution, problem


def test_a_solution_round_trips_through_parquet_with_every_field(tmp_path):
    solution, problem = _every_field_set()
    unset = [name for name, value in solution if value == Solution.model_fields[name].default]
    assert unset == [], f"the fixture should set every field: {unset}"
    table = pa.Table.from_pylist([solution_to_row(solution, problem)], schema=solution_schema())
    pq.write_table(table, tmp_path / "part.parquet")
    (row,) = pq.read_table(tmp_path / "part.parquet").to_pylist()
    assert solution_from_row(row) == solution
    assert row["false_claims"] == []  # flat columns: the chosen verdict's (attempt 1 made no false claim)
    assert row["attempts"][0]["verdict"]["false_claims"] == ["97-73 = 34"]  # which claim was false, kept
    assert row["attempts"][0]["sampling"]["seed"] == 3
    wrong_chosen = solution.model_copy(update={"chosen_attempt": 0, "verdict": solution.attempts[0].verdict})
    flat = solution_to_row(wrong_chosen, problem)
    assert flat["issues"] == ["false_calculation"] and flat["false_claims"] == ["97-73 = 34"]


def test_a_problem_round_trips_through_its_row_and_parquet(tmp_path):
    _, problem = _every_field_set()
    table = pa.Table.from_pylist([problem_to_row(problem)], schema=problem_schema())
    pq.write_table(table, tmp_path / "p.parquet")
    assert problem_from_row(pq.read_table(tmp_path / "p.parquet").to_pylist()[0]) == problem


def test_schemas_follow_the_records():
    """A field added to a record is a column at once: the verdict struct has every Verdict field."""
    attempt_type = solution_schema().field("attempts").type.value_type
    verdict_type = attempt_type.field("verdict").type
    assert [verdict_type.field(i).name for i in range(verdict_type.num_fields)] == list(Verdict.model_fields)
    assert input_schema().names == [*problem_schema().names, "error"]
    assert arrow_schema(AnswerSpec).field("tolerance").type == pa.list_(pa.float64())


def test_all_null_blocks_concatenate():
    """Blocks whose optional columns are all null still share one schema."""
    empty = pa.Table.from_pylist([error_row("x", "bad input row: no question")], schema=solution_schema())
    solution, problem = _every_field_set()
    full = pa.Table.from_pylist([solution_to_row(solution, problem)], schema=solution_schema())
    assert pa.concat_tables([empty, full]).num_rows == 2


# ---------------------------------------------------------------- the stage base class



@pytest.fixture()
def stage():
    from qvq_ray.batch.stages import RowStage

    class Halving(RowStage):
        failure_label = "halving failed"

        def output_schema(self):
            return pa.schema([("id", pa.string()), ("value", pa.int64()), ("error", pa.string())])

        async def process(self, row):
            if row["value"] % 2:
                raise ValueError(f"{row['value']} is odd")
            return {**row, "value": row["value"] // 2}

    return Halving(QvqConfig().model_dump_json())


def test_the_stage_base_class_owns_the_error_row_rule(stage):
    rows = [
        {"id": "a", "value": 4, "error": None},
        {"id": "b", "value": 3, "error": None},
        {"id": "c", "value": 8, "error": "bad input row: earlier failure"},
    ]
    out = asyncio.run(stage(pa.Table.from_pylist(rows, schema=stage.output_schema()))).to_pylist()
    assert [r["id"] for r in out] == ["a", "b", "c"]  # one output row per input row, in order
    assert out[0] == {"id": "a", "value": 2, "error": None}
    assert out[1]["error"] == "halving failed: ValueError: 3 is odd" and out[1]["value"] == 3
    assert out[2] == rows[2]  # an error row passes through untouched


# ---------------------------------------------------------------- fuzzed records

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_text = st.text(max_size=40)  # any Unicode, surrogates excluded by hypothesis' default alphabet
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_specs = st.builds(
    AnswerSpec,
    choices=st.lists(_text, max_size=5),
    answer_type=st.none() | _text,
    unit=st.none() | _text,
    tolerance=st.none() | st.lists(st.none() | st.floats(0, 1e6), max_size=3),
    precision=st.none() | st.integers(0, 10),
    alternatives=st.lists(_text, max_size=3),
)
_problems = st.builds(
    Problem,
    id=_text.filter(bool),
    question=_text,
    images=st.lists(st.builds(ImageRef, bytes=st.none() | st.binary(max_size=16), path=st.none() | _text), max_size=2),
    answer=st.none() | _text,
    spec=_specs,
    source=st.none() | _text,
    meta=st.dictionaries(_text, _json_value, max_size=4),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(problems=st.lists(_problems, min_size=1, max_size=4))
def test_fuzzed_problems_round_trip_through_parquet(tmp_path_factory, problems):
    """Records nobody here wrote (any Unicode, nested meta, empty and missing parts) survive the
    derived schema and Parquet unchanged, several to a block."""
    path = tmp_path_factory.mktemp("fuzz") / "p.parquet"
    pq.write_table(pa.Table.from_pylist([problem_to_row(p) for p in problems], schema=problem_schema()), path)
    assert [problem_from_row(row) for row in pq.read_table(path).to_pylist()] == problems


def test_the_problem_crosses_stages_as_a_struct_and_older_json_parts_still_read(tmp_path):
    """An output row keeps its problem as a typed struct (no text to parse between solve and score);
    a folder that also holds a part file of an older version (the problem as JSON text, e.g. a run
    resumed after an upgrade) still reads as one table and summarizes every row."""
    import json

    from qvq_ray.problem import problem_of_output_row
    from qvq_ray.report.summary import read_output, summarize_output

    problem = Problem(id="p1", question="What is 2+2?", answer="4", spec=AnswerSpec(unit="m"), meta={"level": 3})
    new = solution_to_row(Solution(id="p1", answer="4"), problem)
    assert isinstance(new["problem"], dict) and new["problem"]["num_images"] == 0
    assert problem_of_output_row(new["problem"]) == problem.model_copy(update={"images": []})
    pq.write_table(pa.Table.from_pylist([new], schema=solution_schema()), tmp_path / "part-new.parquet")
    old = dict(new, id="p0", problem=json.dumps({"id": "p0", "question": "q", "answer": "1", "source": "old", "num_images": 1}))
    old_schema = solution_schema().set(solution_schema().get_field_index("problem"), pa.field("problem", pa.string()))
    pq.write_table(pa.Table.from_pylist([old], schema=old_schema), tmp_path / "part-old.parquet")
    rows = {r["id"]: r for r in read_output(tmp_path).to_pylist()}
    assert rows["p0"]["problem"]["source"] == "old" and rows["p0"]["problem"]["num_images"] == 1
    assert problem_of_output_row(rows["p1"]["problem"]).spec.unit == "m"
    assert summarize_output(tmp_path, rows_in=2, seconds=0).rows_out == 2


def test_a_jsonl_part_file_has_one_line_per_row_whatever_the_text(tmp_path):
    """U+2028 / U+0085 in a chain of thought stay escaped (qvq_ray/json_lines.py): a reader that
    splits lines like str.splitlines still sees one row per line."""
    import json

    import pyarrow as pa

    from qvq_ray.results.parts import write_part

    texts = ["plain", "a\u2028b\x85c\u2029d 数"]
    path = write_part(pa.table({"id": ["1", "2"], "text": texts}), tmp_path / "part-x.jsonl", "jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in lines] == texts
