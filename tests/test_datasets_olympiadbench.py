"""OlympiadBench adapter: data/<Category>.json lists -> Problem rows (answers, units, tolerances, URL figures)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qvq_ray.config import ImageLimits, ModelConfig
from qvq_ray.datasets import LoadError, detect_format, load_problems
from qvq_ray.images import ImageError, prepare_problem_images
from qvq_ray.problem import Problem
from tests.conftest import shared_data

FIGURE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture
def shared() -> Path:
    """The shared OlympiadBench sample (data/<Category>.json), read from ../shared/data; skips when absent."""
    return shared_data("olympiadbench/data").parent


def native_records(shared: Path) -> list[dict]:
    out = []
    for file in sorted((shared / "data").glob("*.json")):
        out.extend(json.loads(file.read_text(encoding="utf-8")))
    return out


def test_shared_sample_maps_every_native_field(shared):
    assert detect_format(shared) == "olympiadbench"
    assert detect_format(shared / "data" / "Gaokao_Physics.json") == "olympiadbench"
    native = native_records(shared)
    problems = list(load_problems(shared))
    assert len(problems) == 42 and all(isinstance(p, Problem) for p in problems)
    assert [p.id for p in problems] == [str(r["id"]) for r in native]
    for p, r in zip(problems, native):
        assert p.source == "OlympiadBench" and p.spec.answer_type == r["answer_type"]
        assert p.meta["final_answer"] == r["final_answer"] and p.meta["error"] == r["error"]
        for key in ("subfield", "solution", "is_multiple_answer", "label", "source", "support_auto_scoring",
                    "classification"):
            assert p.meta[key] == r[key]
        proof = r["label"] == "Theorem_Proving"
        assert p.answer == (None if proof else ", ".join(r["final_answer"]))
        assert p.language == ("en" if r["classification"].startswith("English") else "zh")
        assert p.subject == ("Physics" if "Physics" in r["classification"] else "Math")
        urls = list(dict.fromkeys(FIGURE.findall(r["question"])))
        assert [im.path for im in p.images] == urls
        assert "![" not in p.question and len(re.findall(r"<image_\d+>", p.question)) >= len(urls)
        assert p.meta.get("question_markdown", p.question) == r["question"]
        units = [u.strip() for u in (r["unit"] or "").split(",")]
        if r["unit"] is None:
            assert p.spec.unit is None
        elif len(set(units)) == 1:
            assert p.spec.unit == units[0]
        else:
            assert p.spec.unit == ",".join(units) and p.meta["units"] == units and p.meta["unit"] == r["unit"]
    assert sum(bool(p.images) for p in problems) == sum(bool(FIGURE.search(r["question"])) for r in native) == 19


@pytest.mark.parametrize(
    "pid,answer,unit,tolerance,tolerances",
    [
        ("853", "$13.1$", "m/s", [0.1], [0.1]),  # single unit, single tolerance
        ("1096", "$F_{n}=387$ , $M=9.892 \\times 10^{4}$", ",kg", [1.0, 100.0], [1.0, 100.0]),  # per answer: "1e0,1e2", ",kg"
        ("356", "$\\hat{y}=0.28 x-0.64, 37.29$", None, [None, 0.01], [None, 0.01]),  # ",1e-2": none for the first answer
        ("1349", "$294.04$, $293.81 $", "K", [0.1], [0.1]),  # two answers share one unit and one tolerance
        ("1510", "$\\frac{4}{5}$", None, [0.0], [0.0]),  # "0": exact
        ("5823", "$56$", "万", [1.0], [1.0]),
        ("2472", "19,0,1", None, None, None),
        ("2110", None, None, None, None),  # theorem proving: "证明题，略" is no gold
        ("5385", None, None, None, None),  # is_multiple_answer null, proof
    ],
)
def test_answers_units_and_tolerances(shared, pid, answer, unit, tolerance, tolerances):
    p = next(p for p in load_problems(shared) if p.id == pid)
    assert (p.answer, p.spec.unit, p.spec.tolerance, p.meta.get("tolerances")) == (answer, unit, tolerance, tolerances)


def test_url_figures_are_error_rows_unless_urls_are_allowed(shared):
    problems = list(load_problems(shared))
    with_figures = [p for p in problems if p.images]
    assert all(im.path.startswith("https://") for p in with_figures for im in p.images)
    two = next(p for p in problems if p.id == "5823")  # two figures, placed at <image_1>, <image_2>
    assert len(two.images) == 2 and two.images[0].path.endswith("M_76a56600c139886b1b8ac28533c9be0a.jpg")
    assert two.question.index("<image_1>") < two.question.index("<image_2>")
    with pytest.raises(ImageError, match="URL images are disabled"):
        prepare_problem_images(two.images, ModelConfig())
    # Allowed, the fetch is attempted (and refused here for the host, not for the policy): no network needed.
    refused_host = two.model_copy(update={"images": [two.images[0].model_copy(update={"path": "http://127.0.0.1:9/a.jpg"})]})
    with pytest.raises(ImageError, match="non-public"):
        prepare_problem_images(refused_host.images, ModelConfig(), limits=ImageLimits(allow_urls=True, url_timeout_s=1))
    # Problems without figures prepare to no images at all.
    assert prepare_problem_images(next(p for p in problems if not p.images).images, ModelConfig()) == []


def test_figures_context_alt_text_and_bad_rows(tmp_path):
    records = [
        {"id": 1, "question": "See ![图甲](https://x.test/a.jpg) and ![](https://x.test/b.png) and ![](https://x.test/a.jpg)",
         "final_answer": ["$1$"], "is_multiple_answer": False, "unit": None, "answer_type": "Numerical",
         "error": None, "context": "Context ![Image](https://x.test/c.jpg)", "language": "English", "subject": "Physics"},
        {"id": 2, "question": "Q", "final_answer": "$2$", "is_multiple_answer": False, "error": "abc"},
        {"id": 3, "question": "Q", "final_answer": [{"x": 1}], "is_multiple_answer": False},
        {"question": "no id", "final_answer": ["1"], "is_multiple_answer": False},
        ["not", "an", "object"],
        {"id": 6, "question": "Q6", "final_answer": ["$3$", "$4$"], "is_multiple_answer": True,
         "unit": "m, m", "error": "1e-2"},
    ]
    file = tmp_path / "Mixed.json"
    file.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert detect_format(file) == "olympiadbench"
    out = list(load_problems(file))
    assert len(out) == 6
    first = out[0]
    assert first.question == "Context <image_3>\n\nSee 图甲 <image_1> and <image_2> and <image_1>"
    assert [im.path for im in first.images] == ["https://x.test/a.jpg", "https://x.test/b.png", "https://x.test/c.jpg"]
    assert first.language == "en" and first.subject == "Physics" and first.meta["context"] == records[0]["context"]
    assert isinstance(out[1], LoadError) and out[1].ref == "2" and "'error' tolerance 'abc'" in out[1].reason
    assert isinstance(out[2], LoadError) and "'final_answer'" in out[2].reason
    assert isinstance(out[3], LoadError) and out[3].ref == "Mixed.json[3]" and "'id'" in out[3].reason
    assert isinstance(out[4], LoadError) and out[4].ref == "Mixed.json[4]"
    six = out[5]
    assert six.answer == "$3$, $4$" and six.meta["final_answer"] == ["$3$", "$4$"]
    assert six.spec.unit == "m" and six.spec.tolerance == [0.01]


@pytest.mark.parametrize(
    "final_answer, reason",
    [
        (["$$"], "empty gold answer"),
        ([" $ $ "], "empty gold answer"),
        (["$3$", "$$"], "empty gold answer"),  # one part of a multi-part gold missing
        (["$\\frac{1}{2$"], "unbalanced braces"),
        (["$x^{2}}$"], "unbalanced braces"),
    ],
)
def test_an_unusable_gold_is_no_gold_with_a_warning_naming_the_id(tmp_path, caplog, final_answer, reason):
    from qvq_ray.datasets.olympiadbench import row_to_problem

    record = {"id": 4242, "question": "Find x.", "final_answer": final_answer, "is_multiple_answer": len(final_answer) > 1}
    with caplog.at_level("WARNING", logger="qvq_ray.datasets.base"):
        problem = row_to_problem(record, ref="f.json[0]", base_dir=tmp_path)
    assert isinstance(problem, Problem) and problem.answer is None
    assert reason in problem.meta["gold_warning"]
    assert any("4242" in r.getMessage() and reason in r.getMessage() for r in caplog.records)


def test_a_usable_gold_loads_without_a_warning(tmp_path, caplog):
    from qvq_ray.datasets.olympiadbench import row_to_problem

    record = {"id": 7, "question": "Find x.", "final_answer": ["$\\frac{1}{2}$", "$3$"], "is_multiple_answer": True}
    with caplog.at_level("WARNING", logger="qvq_ray.datasets.base"):
        problem = row_to_problem(record, ref="f.json[0]", base_dir=tmp_path)
    assert problem.answer == "$\\frac{1}{2}$, $3$" and "gold_warning" not in problem.meta
    assert not caplog.records


@pytest.mark.parametrize("final_answer, doubtful", [("$2 3\\sqrt{2}$", True), ("$2\\sqrt{3}$", False), ("$12 \\sqrt{5}$", False)])
def test_digits_juxtaposed_before_a_root_keep_the_gold_with_a_warning(tmp_path, caplog, final_answer, doubtful):
    """`2 3\\sqrt{2}` reads as a degenerate product: kept as the gold (compared as text), with a
    load warning naming the id; `2\\sqrt{3}` and `12 \\sqrt{5}` are ordinary math."""
    from qvq_ray.datasets.olympiadbench import row_to_problem

    record = {"id": 99, "question": "Find x.", "final_answer": [final_answer], "is_multiple_answer": False}
    with caplog.at_level("WARNING", logger="qvq_ray.datasets.base"):
        problem = row_to_problem(record, ref="f.json[0]", base_dir=tmp_path)
    assert problem.answer == final_answer
    assert ("juxtaposed" in problem.meta.get("gold_warning", "")) is doubtful
    assert any("99" in r.getMessage() and "juxtaposed" in r.getMessage() for r in caplog.records) is doubtful
