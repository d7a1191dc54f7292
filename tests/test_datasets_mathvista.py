"""MathVista adapter: testmini.json keyed by pid (and the HF parquet form) -> Problem rows."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from qvq_ray.config import ModelConfig
from qvq_ray.datasets import LoadError, detect_format, load_problems
from qvq_ray.datasets.mathvista import ENV_IMAGES
from qvq_ray.images import ImageError, prepare_problem_images
from qvq_ray.problem import Problem
from tests.conftest import shared_data


@pytest.fixture
def shared() -> Path:
    """The shared MathVista sample (data/testmini.json, no images), read from ../shared/data; skips when absent."""
    return shared_data("mathvista/data/testmini.json").parents[1]


def png(size=(60, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, format="PNG")
    return buf.getvalue()


def sample_copy(shared: Path, tmp_path: Path, *, with_images: dict[str, bytes] | None = None) -> Path:
    """The shared layout (data/testmini.json) copied to tmp_path, optionally with an images/ folder."""
    (tmp_path / "data").mkdir()
    shutil.copy(shared / "data" / "testmini.json", tmp_path / "data" / "testmini.json")
    if with_images is not None:
        (tmp_path / "images").mkdir()
        for name, data in with_images.items():
            (tmp_path / "images" / name).write_bytes(data)
    return tmp_path


def test_shared_sample_maps_every_native_field(shared):
    native = json.loads((shared / "data" / "testmini.json").read_text(encoding="utf-8"))
    assert detect_format(shared) == detect_format(shared / "data" / "testmini.json") == "mathvista"
    problems = list(load_problems(shared))
    assert len(problems) == 40 and all(isinstance(p, Problem) for p in problems)
    assert [p.id for p in problems] == list(native)
    for p in problems:
        rec = native[p.id]
        assert p.source == "MathVista" and p.question == rec["question"]
        assert p.spec.choices == (rec["choices"] or [])
        assert p.answer == rec["answer"]  # multiple choice: the choice text, never a letter
        assert p.spec.unit == rec["unit"]
        assert p.subject == rec["metadata"]["task"]
        assert p.language == {"english": "en", "chinese": "zh", "persian": "fa"}[rec["metadata"]["language"]]
        assert p.meta["metadata"] == rec["metadata"] and p.meta["question_type"] == rec["question_type"]
        assert p.meta["answer_type"] == rec["answer_type"] and p.meta["precision"] == rec["precision"]
        assert p.meta["image"] == rec["image"]
        if rec["question_type"] == "multi_choice":
            assert p.spec.answer_type == "choice"
            assert p.spec.choices["ABCDEFGH".index(p.meta["answer_letter"])] == rec["answer"]
        else:
            assert p.spec.answer_type == rec["answer_type"] and "answer_letter" not in p.meta
        if rec["precision"] is None:
            assert p.spec.tolerance is None
        else:
            assert p.spec.tolerance == [pytest.approx(0.5 * 10 ** -rec["precision"])] and p.spec.precision == rec["precision"]
        # Nothing native is lost: every field is a Problem field or in meta.
        assert set(rec) - {"pid", "question", "choices", "answer", "unit"} <= set(p.meta)
        (image,) = p.images
        assert image.bytes is None and image.path == str(shared / rec["image"])
    kinds = {p.spec.answer_type for p in problems}
    assert kinds == {"choice", "integer", "float", "list"}
    by_id = {p.id: p for p in problems}
    assert by_id["84"].spec.tolerance == [0.05] and by_id["199"].spec.tolerance == [0.005]
    assert by_id["33"].answer == "4πcm" and by_id["33"].meta["answer_letter"] == "C"
    assert by_id["506"].answer == "[2014, 2016]"  # list answers as written


def test_missing_image_file_is_that_rows_error_with_the_expected_path(shared):
    problem = next(iter(load_problems(shared)))
    expected = shared / "images" / f"{problem.id}.jpg"
    assert not expected.exists()  # the repo ships no images
    with pytest.raises(ImageError, match=f"image file not found: {expected}"):
        prepare_problem_images(problem.images, ModelConfig())


def test_images_dir_option_env_and_sibling_folder(shared, tmp_path, monkeypatch):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "19.jpg").write_bytes(png())
    # images_dir= : the folder holding the files.
    by_id = {p.id: p for p in load_problems(shared, images_dir=pictures)}
    assert len(prepare_problem_images(by_id["19"].images, ModelConfig())) == 1
    with pytest.raises(ImageError, match=f"image file not found: {pictures / '33.jpg'}"):
        prepare_problem_images(by_id["33"].images, ModelConfig())
    # The environment variable when no option is given; the option wins over it.
    monkeypatch.setenv(ENV_IMAGES, str(pictures))
    assert next(iter(load_problems(shared / "data" / "testmini.json"))).images[0].path == str(pictures / "19.jpg")
    other = tmp_path / "other"
    other.mkdir()
    assert next(iter(load_problems(shared / "data" / "testmini.json", images_dir=other))).images[0].path == str(other / "19.jpg")
    monkeypatch.delenv(ENV_IMAGES)
    # A sibling images/ folder (upstream layout: data/testmini.json + images/).
    (tmp_path / "copy").mkdir()
    root = sample_copy(shared, tmp_path / "copy", with_images={"19.jpg": png()})
    problems = list(load_problems(root))
    assert problems[0].images[0].path == str(root / "images" / "19.jpg")
    assert prepare_problem_images(problems[0].images, ModelConfig())
    with pytest.raises(ValueError, match="takes no option 'image_dir'"):
        load_problems(root, image_dir=pictures)


def test_hf_parquet_form_with_decoded_image(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"pid": "1", "question": "How many?", "image": "images/1.jpg", "decoded_image": {"bytes": png(), "path": None},
         "choices": None, "unit": None, "precision": None, "answer": "3", "question_type": "free_form",
         "answer_type": "integer", "metadata": {"language": "english", "task": "figure question answering"},
         "query": "Hint: ... Question: How many?"},
        {"pid": "2", "question": "Which?", "image": "images/2.jpg", "decoded_image": {"bytes": png(), "path": None},
         "choices": ["x", "y"], "unit": "cm", "precision": 2.0, "answer": "y", "question_type": "multi_choice",
         "answer_type": "text", "metadata": {"language": "chinese", "task": "geometry problem solving"},
         "query": "Hint: ..."},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "testmini-00000-of-00001.parquet")
    assert detect_format(tmp_path) == "mathvista"
    assert detect_format(tmp_path / "testmini-00000-of-00001.parquet") == "mathvista"
    one, two = load_problems(tmp_path)
    assert one.images[0].bytes == rows[0]["decoded_image"]["bytes"] and one.meta["query"] == rows[0]["query"]
    assert two.answer == "y" and two.meta["answer_letter"] == "B" and two.spec.answer_type == "choice"
    assert two.meta["precision"] == 2 and two.spec.tolerance == [0.005] and two.spec.precision == 2 and two.spec.unit == "cm" and two.language == "zh"


@pytest.mark.parametrize(
    "record,reason",
    [
        ({"question": "", "question_type": "free_form", "answer_type": "integer"}, "'question'"),
        ({"question": "Q", "choices": "a,b", "question_type": "multi_choice", "answer_type": "text"}, "'choices'"),
        ({"question": "Q", "image": 7, "question_type": "free_form", "answer_type": "integer"}, "'image'"),
        ("not an object", "expected an object"),
    ],
)
def test_bad_record_is_a_load_error_and_the_rest_loads(tmp_path, record, reason):
    good = {"question": "Q?", "image": "images/9.jpg", "choices": None, "unit": None, "precision": None,
            "answer": "1", "question_type": "free_form", "answer_type": "integer", "pid": "9", "metadata": {}}
    (tmp_path / "testmini.json").write_text(json.dumps({"8": record, "9": good}))
    bad, ok = load_problems(tmp_path / "testmini.json", format="mathvista")
    assert isinstance(bad, LoadError) and reason in bad.reason and bad.ref in ("8", "testmini.json['8']")
    assert isinstance(ok, Problem) and ok.id == "9" and ok.images[0].path == str(tmp_path / "images" / "9.jpg")
