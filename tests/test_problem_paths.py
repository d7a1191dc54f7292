"""A problem set may not read the host (issue 20): image paths stay inside the dataset's folder.

A downloaded problem file names its own image paths. Every way out of the dataset folder (an
absolute path, `..`, `file://`, a symlink leaving it, /proc, a device, a FIFO) must become that
row's error without the file being opened, and no error may quote a file's bytes; the user's
`--allow-paths-outside` lets outside regular files through. FIFO canaries prove "never opened":
opening one for reading blocks, so a stage that opened one would never return.

Also here, the batch job's other faults that used to end in tracebacks after Ray started: an
output folder that cannot be written or is full, a judge cache that is not SQLite (each one line on
stderr, exit 2, Ray never imported), and `qvq-ray report --problems` over a file with a bad line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from qvq_ray.config import QvqConfig
from tests.conftest import REPO_ROOT, png_bytes
from tests.test_cli_user_view import assert_user_error, qvq

CONFIG_JSON = QvqConfig.preset("tiny-cpu").model_dump_json()
#: What a leaked file would show: /etc/passwd's and the fake passwd's first bytes, /proc/version's.
LEAKS = ("root:", "Linux version", "b'", 'b"', "\\x")

GOOD = ["good-0", "good-1", "good-2", "ok-link"]
OUTSIDE = [
    "dotdot", "abs", "proc", "zero", "file-url", "outside-png", "outside-png-rel",
    "symlink-escape", "symlink-passwd", "fifo", "fifo-rel", "fifo-link",
]


def hostile_set(root: Path) -> tuple[Path, Path]:
    """(dataset folder, a folder beside it) for a problems.jsonl whose rows name every way out of the
    dataset folder, good rows, and three inside traps (a FIFO, a text file named .png, `~`)."""
    data, outside = root / "set", root / "outside"
    (data / "images").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes("7 + 7"))
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    os.mkfifo(outside / "canary.fifo")
    for i in range(3):
        (data / "images" / f"good-{i}.png").write_bytes(png_bytes(f"{i} + 1"))
    (data / "images" / "escape.png").symlink_to(outside / "secret.png")
    (data / "images" / "passwd.png").symlink_to(outside / "passwd")
    (data / "images" / "fifo.png").symlink_to(outside / "canary.fifo")
    (data / "images" / "ok-link.png").symlink_to(data / "images" / "good-0.png")  # inside -> inside: fine
    os.mkfifo(data / "images" / "inside.fifo")
    (data / "images" / "notimage.png").write_text("root:x:0:0:root:/root:/bin/bash\n")
    paths = {
        **{f"good-{i}": f"images/good-{i}.png" for i in range(3)},
        "ok-link": "images/ok-link.png",
        "dotdot": "../../../../../../../../../etc/passwd",
        "abs": "/etc/passwd",
        "proc": "/proc/version",
        "zero": "/dev/zero",
        "file-url": "file:///etc/passwd",
        "outside-png": str(outside / "secret.png"),
        "outside-png-rel": "../outside/secret.png",
        "symlink-escape": "images/escape.png",
        "symlink-passwd": "images/passwd.png",
        "fifo": str(outside / "canary.fifo"),
        "fifo-rel": "../outside/canary.fifo",
        "fifo-link": "images/fifo.png",
        "inside-fifo": "images/inside.fifo",
        "not-image": "images/notimage.png",
        "tilde": "~/.ssh/id_rsa",
    }
    with open(data / "problems.jsonl", "w") as f:
        for pid, path in paths.items():
            f.write(json.dumps({"id": pid, "question": "What is shown? <image1>", "images": [path], "answer": "2"}) + "\n")
    return data, outside


def prepare_all(data: Path, roots) -> dict[str, str | None]:
    """id -> the error the job's prepare stage writes for each row of the set (None: prepared), run on
    a daemon thread: a stage that opened a FIFO would block forever, and the test fails instead."""
    from qvq_ray.batch.stages import PrepareImages
    from qvq_ray.datasets import load_problems
    from qvq_ray.problem import problem_to_row

    stage = PrepareImages(CONFIG_JSON, roots)
    rows = [{**problem_to_row(p), "error": None} for p in load_problems(data)]
    result: dict[str, str | None] = {}

    def work():
        for row in rows:
            out = asyncio.run(stage._one(row))
            result[row["id"]] = out["error"]

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), f"the prepare stage blocked (a FIFO was opened?) after {sorted(result)}"
    return result


def roots_of(data: Path):
    from qvq_ray.datasets import image_roots
    from qvq_ray.image_files import ImageRoots

    return ImageRoots.of(image_roots(data))


def test_every_way_out_of_the_dataset_folder_is_an_error_row_without_opening_the_file(tmp_path):
    from qvq_ray.report.stats import error_kind

    data, _ = hostile_set(tmp_path)
    errors = prepare_all(data, roots_of(data))
    assert [pid for pid in GOOD if errors[pid] is not None] == []
    for pid in OUTSIDE:
        error = errors[pid]
        assert error and error.startswith("bad image: ImageError: image path "), (pid, error)
        assert f"is outside the dataset folder {data.resolve()}" in error and "--allow-paths-outside" in error, error
        assert error_kind(error) == ("bad image", "image outside the dataset folder")
    assert "/etc/passwd is outside" in errors["dotdot"]  # `..` resolved: the message says where it leads
    assert "images/escape.png is outside" in errors["symlink-escape"]  # the path as named, not its target
    assert "image path is not a file" in errors["inside-fifo"]  # inside, but a FIFO: stat says so, never opened
    assert "not a recognized image" in errors["not-image"]
    assert "image file not found" in errors["tilde"] and str(data / "~" / ".ssh") in errors["tilde"]  # not $HOME
    for pid, error in errors.items():
        assert not any(leak in (error or "") for leak in LEAKS), (pid, error)


def test_allow_paths_outside_reads_outside_regular_files_but_never_devices_or_fifos(tmp_path):
    data, _ = hostile_set(tmp_path)
    errors = prepare_all(data, None)  # what batch.allow_paths_outside gives the prepare stage
    for pid in GOOD + ["outside-png", "outside-png-rel", "symlink-escape"]:
        assert errors[pid] is None, (pid, errors[pid])
    for pid in ("zero", "fifo", "fifo-rel", "fifo-link", "inside-fifo"):
        assert "image path is not a file" in errors[pid], (pid, errors[pid])
    for pid in ("abs", "dotdot", "file-url", "symlink-passwd", "proc"):  # read, and said not to be images
        assert "not a recognized image" in errors[pid], (pid, errors[pid])
    for pid, error in errors.items():
        assert not any(leak in (error or "") for leak in LEAKS), (pid, error)


def test_the_loaders_own_folders_are_the_roots(tmp_path):
    """MATH-V's root is the folder above data/ (its images/ there); MathVista's the images folder given,
    else images/ beside the JSON; any other input's, its own folder."""
    from qvq_ray.datasets import image_roots

    mathv = tmp_path / "MathVision"
    (mathv / "data").mkdir(parents=True)
    (mathv / "images").mkdir()
    (mathv / "data" / "test.jsonl").write_text(json.dumps(
        {"id": "1", "question": "q <image1>", "options": [], "answer": "2", "level": 1, "subject": "s", "image": "images/1.jpg"}) + "\n")
    assert image_roots(mathv) == [mathv.resolve()]
    assert image_roots(mathv / "data" / "test.jsonl") == [mathv.resolve()]
    vista = tmp_path / "mathvista"
    vista.mkdir()
    (vista / "testmini.json").write_text(json.dumps({"1": {
        "pid": "1", "question": "q", "image": "images/1.png", "question_type": "free_form", "answer_type": "integer", "answer": "2"}}))
    assert image_roots(vista / "testmini.json") == [vista.resolve() / "images"]
    assert image_roots(vista / "testmini.json", images_dir=str(tmp_path / "pics")) == [(tmp_path / "pics").resolve()]
    data, _ = hostile_set(tmp_path / "h")
    assert image_roots(data) == image_roots(data / "problems.jsonl") == [data.resolve()]


def test_a_symlinked_dataset_folder_is_its_target(tmp_path):
    """A dataset folder that is itself a link (storage mounted elsewhere) reads its own images."""
    data, _ = hostile_set(tmp_path / "real")
    link = tmp_path / "linked-set"
    link.symlink_to(data)
    errors = prepare_all(link, roots_of(link))
    assert [pid for pid in GOOD if errors[pid] is not None] == []
    assert all("is outside the dataset folder" in errors[pid] for pid in OUTSIDE)


# ------------------------------------------------------------------ before Ray: one line, exit 2


def test_a_set_whose_every_image_is_outside_is_refused_before_ray(tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    rows = [{"id": "a", "question": "q", "images": ["/etc/passwd"]}, {"id": "b", "question": "q", "images": ["../../x.png"]}]
    (data / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = assert_user_error(["solve", data, "--out", tmp_path / "out"],
                             "2 of 2 problems name image files outside the dataset folder", "--allow-paths-outside")
    assert "root:" not in line and not (tmp_path / "out").exists()


def test_an_unwritable_or_full_output_folder_is_refused_before_ray(tmp_path):
    data, _ = hostile_set(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_user_error(["solve", data, "--out", blocker / "out"], "cannot write to output directory", str(blocker / "out"))
    if Path("/proc/self").is_dir():  # a filesystem that takes no folders, even for root
        assert_user_error(["solve", data, "--out", "/proc/qvq-ray-out"], "cannot write to output directory")
    full = tmp_path / "full.yaml"
    full.write_text("batch:\n  min_free_space_mb: 1000000000000\n")  # more than any disk: "full"
    assert_user_error(["solve", data, "--out", tmp_path / "out", "--config", full],
                      "MiB free, under batch.min_free_space_mb", "choose another --out")


@pytest.mark.parametrize("kind", ["text", "folder"])
def test_a_judge_cache_that_is_not_sqlite_is_refused_before_ray(tmp_path, kind):
    data, _ = hostile_set(tmp_path)
    cache = tmp_path / "judge.sqlite3"
    if kind == "text":
        cache.write_text("these are my notes, not a database\n")
    else:
        cache.mkdir()
    needle = "is not an SQLite database" if kind == "text" else "is a folder"
    assert_user_error(["solve", data, "--out", tmp_path / "out", "--judge-cache", cache], "judge cache", needle)
    assert_user_error(["rescore", data / "problems.jsonl", "--problems", data, "--out", tmp_path / "re",
                       "--judge-cache", cache], "judge cache", needle)
    if kind == "text":
        assert cache.read_text() == "these are my notes, not a database\n"  # left as it was


def test_a_real_sqlite_or_new_judge_cache_passes_the_check(tmp_path):
    import sqlite3

    from qvq_ray.judge.cache import JudgeCache, check_cache_path

    check_cache_path(tmp_path / "new" / "judge.sqlite3")  # created later, by the job
    JudgeCache(tmp_path / "made.sqlite3").put("k", "v")
    check_cache_path(tmp_path / "made.sqlite3")
    (tmp_path / "empty.sqlite3").write_bytes(b"")  # SQLite takes an empty file as an empty database
    check_cache_path(tmp_path / "empty.sqlite3")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)")
    check_cache_path(tmp_path / "other.db")


# ------------------------------------------------------------------ report --problems


def test_report_problems_with_a_bad_line_warns_and_goes_on(tmp_path):
    """The bad line's own error row is shown first in the report (errors first): reading the problem
    set for its thumbnail used to crash ('LoadError' object has no attribute 'images')."""
    from qvq_ray.problem import ImageRef, Problem
    from tests.test_report_explain import failed, solved, write_run

    data, outside = hostile_set(tmp_path)
    lines = (data / "problems.jsonl").read_text().splitlines()
    lines.insert(1, '{"id": "broken", "question": "unterminated')  # problems.jsonl:2
    (data / "problems.jsonl").write_text("\n".join(lines) + "\n")
    good = Problem(id="good-0", question="q", images=[ImageRef(path=str(data / "images" / "good-0.png"))], answer="1")
    escape = Problem(id="outside-png", question="q", images=[ImageRef(path=str(outside / "secret.png"))], answer="1")
    rows = [
        failed(Problem(id="problems.jsonl:2", question=""), "bad input row: invalid JSON on line 2"),
        solved(good, [("1", True)]),
        failed(escape, "bad image: ImageError: image path ... is outside the dataset folder"),
    ]
    run = write_run(tmp_path / "run", rows)
    rc, err, _ = qvq("report", run, "--problems", data)
    assert rc == 0, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"qvq-ray report: warning: 1 row of {data} could not be read and have no thumbnail "
                           f"(first: problems.jsonl:2: invalid JSON on line 2: "), err
    page = (tmp_path / "run.report" / "report.html").read_text(encoding="utf-8")
    assert page.count('class="thumb"') == 1  # good-0's; the outside PNG is never read
    assert "image not shown: image outside the dataset folder" in page
    rc, err, _ = qvq("report", run, "--problems", data, "--allow-paths-outside")
    assert rc == 0, err
    assert (tmp_path / "run.report" / "report.html").read_text(encoding="utf-8").count('class="thumb"') == 2


# ------------------------------------------------------------------ the whole job (Ray)


@pytest.mark.slow
def test_a_hostile_problem_set_solves_its_good_rows_and_reads_nothing_outside(tmp_path, tiny_model_dir, ray_address):
    """A real `qvq-ray solve` over the hostile set plus two rows `x` and a real `x#dup1`: exit 0, one
    row per input row under distinct ids, every hostile row an error row, no file's bytes anywhere
    in the output or the report; the FIFO canaries were never opened (the job would hang)."""
    from qvq_ray.report.summary import read_output

    data, _ = hostile_set(tmp_path)
    first = "".join(json.dumps({"id": pid, "question": "What is 1 + 1?", "answer": "2"}) + "\n" for pid in ("x", "x", "x#dup1"))
    (data / "problems.jsonl").write_text(first + (data / "problems.jsonl").read_text())  # the repeat is row 1: x#dup1
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "solve", data, "--out", out, "--model", str(tiny_model_dir),
         "--max-attempts", "1", "--max-tokens", "4", "--address", ray_address],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"12 of 22 problems name image files outside the dataset folder {data.resolve()}" in result.stderr
    rows = {r["id"]: r for r in read_output(out).to_pylist()}
    input_rows = sum(1 for line in (data / "problems.jsonl").read_text().splitlines() if line.strip())
    assert len(rows) == input_rows == 22
    assert {"x", "x#dup1", "x#dup1'"} <= set(rows) and rows["x#dup1"]["error"] is None
    assert rows["x#dup1'"]["error"] == "duplicate id 'x'"
    for pid in GOOD + ["x"]:
        assert rows[pid]["error"] is None and rows[pid]["attempts"], rows[pid]
    for pid in OUTSIDE:
        assert "is outside the dataset folder" in rows[pid]["error"] and rows[pid]["attempts"] == [], rows[pid]
    text = json.dumps(list(rows.values()), default=str)
    assert not any(leak in text for leak in ("root:", "Linux version")), "a file's bytes reached the output"

    report = subprocess.run([sys.executable, "-m", "qvq_ray.cli", "report", out, "--problems", data],
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert report.returncode == 0, report.stderr
    for name in ("report.md", "report.html"):
        page = (tmp_path / "out.report" / name).read_text(encoding="utf-8")
        assert "root:" not in page and "Linux version" not in page
