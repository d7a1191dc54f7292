"""VLMEvalKit TSV adapter: base64 image cells (lists, reuse by index), option columns, benchmark from the name."""

from __future__ import annotations

import ast
import base64
import csv
import io
from pathlib import Path

import pytest
from PIL import Image

from qvq_ray.config import ModelConfig
from qvq_ray.datasets import LoadError, detect_format, load_problems
from qvq_ray.datasets.vlmevalkit_tsv import benchmark_of
from qvq_ray.images import prepare_problem_images
from qvq_ray.problem import Problem



def vlmevalkit_view(file: Path) -> list[dict]:
    """The rows as VLMEvalKit itself reads them: pandas, short image cells resolved to the row they name."""
    import pandas as pd

    data = pd.read_csv(file, sep="\t", dtype=str)  # as text: pandas would turn option 194 into 194.0
    data["index"] = [str(x) for x in data["index"]]
    images = {i: str(x) for i, x in zip(data["index"], data["image"])}
    rows = []
    for record in data.to_dict("records"):
        cell = images[record["index"]]
        cell = images[cell] if len(cell) <= 64 else cell
        b64 = ast.literal_eval(cell) if cell.startswith("[") else [cell]
        record["images"] = [base64.b64decode(x) for x in b64]
        record["options"] = [record[c] for c in "ABCDE" if c in record and not pd.isna(record[c])]
        rows.append(record)
    return rows


def test_fixture_maps_every_native_column(vlmevalkit_tsv):
    """The 5-row MMMU_DEV_VAL.tsv built from the shared MMMU sample (conftest `vlmevalkit_tsv`)."""
    assert detect_format(vlmevalkit_tsv) == detect_format(vlmevalkit_tsv.parent) == "vlmevalkit"
    native = vlmevalkit_view(vlmevalkit_tsv)
    problems = list(load_problems(vlmevalkit_tsv))
    assert len(problems) == len(native) == 5 and all(isinstance(p, Problem) for p in problems)
    for p, r in zip(problems, native):
        assert p.id == r["index"] and p.source == "MMMU" and p.meta["dataset"] == "MMMU_DEV_VAL"
        assert p.question == r["question"] and p.subject == r["category"]
        assert p.spec.choices == r["options"]
        assert [im.bytes for im in p.images] == r["images"]
        for key in ("l2-category", "split", "id", "image_path"):
            assert p.meta[key] == str(r[key])
        if p.spec.choices:
            assert p.answer == r["answer"] and p.spec.answer_type == "choice"
        else:
            assert p.meta["answers"] == ast.literal_eval(r["answer"]) and p.answer == p.meta["answers"][0]
            assert p.spec.answer_type is None
    by_id = {p.id: p for p in problems}
    assert len(by_id["2"].images) == 3  # list-string cell
    assert by_id["3"].images[0].bytes == by_id["1"].images[0].bytes  # "1": reuses row 1's image
    assert by_id["5"].spec.choices[4] == "215" and by_id["4"].meta["answers"] == ["24/7", "3.429"]
    for p in problems:
        assert len(prepare_problem_images(p.images, ModelConfig())) == len(p.images)


def _tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _b64_png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (28, 28), "white").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_bad_rows_are_load_errors_and_the_rest_loads(tmp_path):
    img = _b64_png()
    header = ["index", "image", "question", "hint", "A", "B", "C", "answer", "category", "choices", "task"]
    rows = [
        ["10", img, "Which?\nSecond line\twith tab", "Look closely", "x", "y", "", "B", "cat", "", "t1"],
        ["11", "!!notbase64" * 10, "Q", "", "x", "y", "", "A", "", "", ""],  # invalid base64
        ["12", "99", "Q", "", "x", "y", "", "A", "", "", ""],  # reuses a row that does not exist
        ["13", "10", "Reuse", "", "x", "", "z", "A", "", "", ""],  # option B empty before C
        ["14", "10", "", "", "", "", "", "A", "", "", ""],  # no question
        ["15", f"['{img}', 'bad!']", "Q", "", "", "", "", "1", "", "", ""],  # second image of the list broken
        ["16", "['unclosed" + "A" * 80 + "]", "Q", "", "", "", "", "1", "", "", ""],  # list string that is no literal
        ["17", "10"],  # too few fields
        ["18", "10", "Pick", "", "", "", "", "C", "", "['p', 'q', 'r']", ""],  # choices column (MathVista style)
        ["", img, "no index", "", "", "", "", "", "", "", ""],
    ]
    file = _tsv(tmp_path / "MathVista_MINI.tsv", header, rows)
    out = list(load_problems(file))
    assert len(out) == len(rows)
    errors = {e.ref: e.reason for e in out if isinstance(e, LoadError)}
    assert set(errors) == {"11", "12", "13", "14", "15", "16", "MathVista_MINI.tsv:10", "MathVista_MINI.tsv:12"}
    assert "not valid base64" in errors["11"] and "row index 99" in errors["12"]
    assert "option B is empty" in errors["13"] and "'question'" in errors["14"]
    assert "image 2 of row 15" in errors["15"] and "Python-literal" in errors["16"]
    assert "has 2 fields" in errors["MathVista_MINI.tsv:10"] and "'index'" in errors["MathVista_MINI.tsv:12"]
    ok = {p.id: p for p in out if isinstance(p, Problem)}
    ten = ok["10"]
    assert ten.source == "MathVista" and ten.question == "Hint: Look closely\nWhich?\nSecond line\twith tab"
    assert ten.meta["hint"] == "Look closely" and ten.meta["task"] == "t1" and ten.spec.choices == ["x", "y"]
    assert ten.subject == "cat" and base64.b64encode(ten.images[0].bytes).decode() == img
    eighteen = ok["18"]
    assert eighteen.spec.choices == ["p", "q", "r"] and eighteen.spec.answer_type == "choice" and "choices" not in eighteen.meta
    assert eighteen.images[0].bytes == ten.images[0].bytes


def test_benchmark_specific_columns(tmp_path):
    header = ["index", "image", "question", "answer", "final_answer", "answer_type", "unit", "error", "source",
              "precision", "image_path"]
    rows = [
        ["1", "", "Olympiad?", "", "['$3$', '$4$']", "Numerical", "m", "1e-1", "OE_MM_physics_en_COMP", "", "1.jpg"],
        ["2", "", "Vista?", "2.5", "", "float", "", "", "", "1.0", "['2--1.jpg', '2--2.jpg']"],
    ]
    file = _tsv(tmp_path / "OlympiadBench_EN.tsv", header, rows)
    one, two = load_problems(file)
    assert (one.source, one.answer, one.spec.unit, one.spec.tolerance, one.language) == ("OlympiadBench", "$3$, $4$", "m", [0.1], "en")
    assert one.spec.answer_type == "Numerical" and one.meta["source"] == "OE_MM_physics_en_COMP"
    # No image cell: the files VLMEvalKit dumps under images/<dataset>/ beside the TSV.
    assert one.images[0].path == str(tmp_path / "images" / "OlympiadBench_EN" / "1.jpg")
    assert [im.path.rsplit("/", 1)[-1] for im in two.images] == ["2--1.jpg", "2--2.jpg"]
    assert two.spec.tolerance == [0.05] and two.spec.precision == 1
    assert load_problems(file, source="Mine").__next__().source == "Mine"


@pytest.mark.parametrize(
    "name,benchmark",
    [("MMMU_DEV_VAL.tsv", "MMMU"), ("MathVision_MINI.tsv", "MathVision"), ("MathVista_MINI.tsv", "MathVista"),
     ("OlympiadBench_CN.tsv", "OlympiadBench"), ("MyOwnSet.tsv", "MyOwnSet")],
)
def test_benchmark_from_file_name(name, benchmark):
    assert benchmark_of(Path(name)) == benchmark
