"""MathVision (MATH-V) adapter: data/test.jsonl + images/ -> Problem rows, checked against the native records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qvq_ray.config import ModelConfig
from qvq_ray.datasets import LoadError, detect_format, load_problems
from qvq_ray.images import ImageError, prepare_problem_images
from qvq_ray.problem import Problem
from tests.conftest import shared_data


@pytest.fixture
def shared() -> Path:
    """The shared MATH-V sample (data/test.jsonl + images/), read from ../shared/data; skips when absent."""
    return shared_data("mathvision/data/test.jsonl").parents[1]


def test_shared_sample_maps_every_native_field(shared):
    native = [json.loads(line) for line in (shared / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert detect_format(shared) == detect_format(shared / "data" / "test.jsonl") == "mathvision"
    problems = list(load_problems(shared))
    assert len(problems) == 50 and all(isinstance(p, Problem) for p in problems)
    for p, r in zip(problems, native):
        assert (p.id, p.question, p.spec.choices, p.answer, p.subject) == (
            r["id"], r["question"], r["options"], r["answer"], r["subject"]
        )
        assert p.spec.answer_type == ("choice" if r["options"] else None) and p.source == "MathVision"
        assert p.meta == {"level": r["level"], "solution": r["solution"]}
        assert [im.path for im in p.images] == [str(shared / r["image"])]
    assert len(prepare_problem_images(problems[0].images, ModelConfig())) == 1


def test_missing_image_and_bad_rows(tmp_path):
    rows = [
        json.dumps({"id": "1", "question": "Q <image1>", "options": [], "answer": "3", "solution": None, "level": 1,
                    "subject": "counting", "image": "images/1.jpg"}),
        json.dumps({"id": "2", "question": "Q", "options": "ABCDE", "answer": "A", "level": 1, "image": "images/2.jpg"}),
    ]
    (tmp_path / "data").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "data" / "test.jsonl").write_text("\n".join(rows) + "\n")
    one, two = load_problems(tmp_path)
    with pytest.raises(ImageError, match=f"image file not found: {tmp_path / 'images' / '1.jpg'}"):
        prepare_problem_images(one.images, ModelConfig())
    assert isinstance(two, LoadError) and two.ref == "2" and "'options' must be a list" in two.reason
