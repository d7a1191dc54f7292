"""Telling a problem set's format from its path, forcing one with `format=`, and adapter options."""

from __future__ import annotations

import json
import shutil

import pytest

from qvq_ray.datasets import FORMATS, detect_format, load_problems
from qvq_ray.problem import Problem
from tests.conftest import shared_data



def test_every_benchmark_has_an_adapter():
    assert set(FORMATS) == {"problems", "mathvision", "mathvista", "mmmu", "olympiadbench", "vlmevalkit"}


@pytest.mark.parametrize(
    "relative,expected,count",
    [
        ("mathvision", "mathvision", 50),
        ("mathvision/data/test.jsonl", "mathvision", 50),
        ("mathvista", "mathvista", 40),
        ("mathvista/data/testmini.json", "mathvista", 40),
        ("mmmu", "mmmu", 30),
        ("mmmu/Math", "mmmu", 30),
        ("mmmu/Math/validation-00000-of-00001.parquet", "mmmu", 30),
        ("olympiadbench", "olympiadbench", 42),
        ("olympiadbench/data", "olympiadbench", 42),
        ("olympiadbench/data/English_Olympiad_Physics.json", "olympiadbench", 10),
    ],
)
def test_detected_from_the_path(relative, expected, count):
    path = shared_data(relative)
    assert detect_format(path) == expected
    rows = list(load_problems(path))
    assert len(rows) == count and all(isinstance(r, Problem) for r in rows)
    assert {r.source for r in rows} == {
        "mathvision": {"MathVision"}, "mathvista": {"MathVista"}, "mmmu": {"MMMU"}, "olympiadbench": {"OlympiadBench"}
    }[expected]


def test_vlmevalkit_detected_by_suffix_and_forced_otherwise(tmp_path, vlmevalkit_tsv):
    tsv = vlmevalkit_tsv
    assert detect_format(tsv) == "vlmevalkit"
    renamed = tmp_path / "MMMU_DEV_VAL.txt"
    shutil.copy(tsv, renamed)
    with pytest.raises(ValueError, match="cannot tell the format"):
        detect_format(renamed)
    assert len(list(load_problems(renamed, format="vlmevalkit"))) == 5


def test_format_forces_an_adapter_over_detection(tmp_path):
    # A MathVista-shaped file read as our own rows: the fields Problem does not know land in meta.
    file = tmp_path / "set.json"
    file.write_text(json.dumps({"7": {"pid": "7", "question": "Q?", "question_type": "free_form",
                                      "answer_type": "integer", "answer": "3", "choices": None}}))
    assert detect_format(file) == "mathvista"
    (forced,) = load_problems(file, format="problems")
    assert forced.source is None and forced.meta["question_type"] == "free_form"
    (native,) = load_problems(file)
    assert native.source == "MathVista" and native.spec.answer_type == "integer"
    with pytest.raises(ValueError, match="takes no option 'images_dir'"):
        load_problems(file, format="problems", images_dir=tmp_path)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{"id": "a", "question": "Q"}]))
    assert detect_format(plain) == "problems"


def test_every_adapters_rows_fit_the_arrow_row_form(vlmevalkit_tsv):
    """What the batch job does with each loaded problem: its fixed-schema Arrow row, and back
    (on the shared benchmark samples and the VLMEvalKit TSV built from them: skipped without them)."""
    import pyarrow as pa

    from qvq_ray.problem import problem_from_row, problem_schema, problem_to_row

    paths = [shared_data(name) for name in ("mathvision", "mathvista", "mmmu", "olympiadbench")] + [vlmevalkit_tsv]
    for path in paths:
        problems = list(load_problems(path))
        table = pa.Table.from_pylist([problem_to_row(p) for p in problems], schema=problem_schema())
        assert [problem_from_row(row) for row in table.to_pylist()] == problems, path
