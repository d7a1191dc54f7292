"""MMMU adapter: the Hugging Face parquet (image_1..image_7 PNG structs, options as a list string)."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
from PIL import Image

from qvq_ray.config import ModelConfig
from qvq_ray.datasets import LoadError, detect_format, load_problems
from qvq_ray.images import prepare_problem_images
from qvq_ray.problem import Problem
from qvq_ray.prompt import build_messages
from tests.conftest import shared_data


@pytest.fixture
def shared() -> Path:
    """The shared MMMU sample (validation, subject Math: HF parquet), read from ../shared/data; skips when absent."""
    return shared_data("mmmu/Math/validation-00000-of-00001.parquet").parents[1]


def native_rows(file: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(file).to_pylist()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (30, 30), "white").save(buf, format="PNG")
    return buf.getvalue()


def test_shared_sample_maps_every_native_field(shared):
    assert detect_format(shared) == detect_format(shared / "Math" / "validation-00000-of-00001.parquet") == "mmmu"
    native = native_rows(shared / "Math" / "validation-00000-of-00001.parquet")
    problems = list(load_problems(shared))
    assert len(problems) == 30 and all(isinstance(p, Problem) for p in problems)
    assert [p.id for p in problems] == [r["id"] for r in native]
    for p, r in zip(problems, native):
        assert p.source == "MMMU" and p.subject == "Math" and p.language == "en"
        assert p.question == r["question"]  # <image k> kept for the prompt
        assert p.spec.choices == ast.literal_eval(r["options"])
        images = [r[f"image_{k}"] for k in range(1, 8) if r[f"image_{k}"] is not None]
        assert [im.bytes for im in p.images] == [im["bytes"] for im in images]
        assert p.meta["image_paths"] == [im["path"] for im in images]
        for key in ("explanation", "topic_difficulty", "question_type", "subfield"):
            assert p.meta[key] == r[key]
        assert p.meta["img_type"] == ast.literal_eval(r["img_type"]) and p.meta["split"] == "validation"
        if r["question_type"] == "multiple-choice":
            assert p.answer == r["answer"] and p.spec.answer_type == "choice"
            assert "ABCDEFGHI".index(p.answer) < len(p.spec.choices)
        else:
            alternatives = ast.literal_eval(r["answer"])
            assert p.answer == alternatives[0] and p.meta["answers"] == alternatives and p.spec.answer_type is None
    by_id = {p.id: p for p in problems}
    assert by_id["validation_Math_15"].meta["answers"] == ["24/7", "3.429"]
    three = by_id["validation_Math_3"]
    assert len(three.images) == 3 and three.spec.choices == ["<image 1>", "<image 2>", "<image 3>"]


def test_embedded_images_prepare_and_land_at_their_placeholders(shared):
    problem = next(p for p in load_problems(shared / "Math" / "validation-00000-of-00001.parquet") if p.id == "validation_Math_9")  # "Is <image 1> Hamiltonian?"
    prepared = prepare_problem_images(problem.images, ModelConfig())
    parts = build_messages(problem, prepared, system_prompt="")[-1]["content"]
    assert [part["type"] for part in parts] == ["text", "image", "text"] and parts[0]["text"] == "Is "


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema(
        [("id", pa.string()), ("question", pa.string()), ("options", pa.string()), ("explanation", pa.string())]
        + [(f"image_{k}", image) for k in range(1, 8)]
        + [(n, pa.string()) for n in ("img_type", "answer", "topic_difficulty", "question_type", "subfield")]
    )
    full = [{name: row.get(name) for name in schema.names} for row in rows]
    (tmp_path / "Art_Theory").mkdir()
    file = tmp_path / "Art_Theory" / "validation-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(full, schema=schema), file)
    return file


def test_bad_rows_are_load_errors_and_the_rest_loads(tmp_path):
    img = {"bytes": png(), "path": "x.png"}
    base = {"question": "Q <image 1>", "options": "['a', 'b']", "answer": "A", "question_type": "multiple-choice",
            "image_1": img, "img_type": "['Paintings']"}
    rows = [
        {**base, "id": "validation_Art_Theory_1"},
        {**base, "id": "validation_Art_Theory_2", "options": "['a', 'b'"},  # not a literal
        {**base, "id": "validation_Art_Theory_3", "options": "[__import__('os').system('exit 3')]"},  # never evaluated
        {**base, "id": "validation_Art_Theory_4", "image_1": None, "image_2": img},  # image numbering gap
        {**base, "id": None},
        {**base, "id": "validation_Art_Theory_6", "question": ""},
        {**base, "id": "validation_Art_Theory_7", "options": "[]", "question_type": "open", "answer": "[0, 1)"},
        {**base, "id": "test_Art_Theory_8", "answer": "?"},
    ]
    file = _write(tmp_path, rows)
    assert detect_format(tmp_path) == "mmmu" and detect_format(file) == "mmmu"
    out = list(load_problems(tmp_path))
    assert len(out) == len(rows)
    errors = {e.ref: e.reason for e in out if isinstance(e, LoadError)}
    assert set(errors) == {"validation_Art_Theory_2", "validation_Art_Theory_3", "validation_Art_Theory_4",
                           "validation-00000-of-00001.parquet:row 4", "validation_Art_Theory_6"}
    assert "not a valid Python-literal list" in errors["validation_Art_Theory_3"]
    assert "image_1 is empty" in errors["validation_Art_Theory_4"]
    ok = {p.id: p for p in out if isinstance(p, Problem)}
    assert ok["validation_Art_Theory_1"].subject == "Art_Theory" and ok["validation_Art_Theory_1"].spec.choices == ["a", "b"]
    assert ok["validation_Art_Theory_7"].answer == "[0, 1)"  # bracketed math, not a list of alternatives
    hidden = ok["test_Art_Theory_8"]
    assert hidden.answer is None and hidden.meta["answer"] == "?" and hidden.meta["split"] == "test"


def test_directory_without_the_split_says_which_splits_exist(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "Math").mkdir()
    pq.write_table(pa.table({"id": ["dev_Math_1"]}), tmp_path / "Math" / "dev-00000-of-00001.parquet")
    with pytest.raises(FileNotFoundError, match="splits present: dev"):
        load_problems(tmp_path, format="mmmu")
