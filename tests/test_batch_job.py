"""The batch solve job on a real local Ray cluster with the real tiny Qwen2-VL (in-process driver)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qvq_ray.config import QvqConfig
from tests.conftest import png_bytes, shared_data

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "problems"
COLUMNS = {"id", "answer", "correct", "attempts", "error", "gold", "verified", "num_attempts", "mode"}


@pytest.fixture()
def config(tiny_model_dir) -> QvqConfig:
    config = QvqConfig.preset("tiny-cpu")
    config.model.path = str(tiny_model_dir)
    config.sampling.max_tokens = 16
    config.policy.max_attempts = 2
    config.resources.num_cpus = 1
    return config


def _run(input_path, out_dir, config):
    from qvq_ray.jobs import run_solve_job

    return run_solve_job(str(input_path), str(out_dir), config)


def _rows(out_dir) -> list[dict]:
    from qvq_ray.report.summary import read_output

    assert list(Path(out_dir).glob("*.parquet")), "the job should write Parquet"
    table = read_output(out_dir)
    assert COLUMNS <= set(table.column_names)
    return table.to_pylist()


def test_solve_bundled_examples_one_row_per_problem(ray_cluster, config, tmp_path):
    input_ids = [json.loads(line)["id"] for line in (EXAMPLES / "problems.jsonl").read_text().splitlines() if line.strip()]
    out = tmp_path / "out"
    summary = _run(EXAMPLES, out, config)
    rows = _rows(out)

    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(input_ids)
    assert set(ids) == set(input_ids)
    for row in rows:
        assert row["error"] is None, row["error"]
        assert row["gold"] not in (None, "")
        assert row["correct"] in (True, False), row["id"]
        assert row["mode"] == "self"
        assert 1 <= row["num_attempts"] == len(row["attempts"]) <= 2
        for attempt in row["attempts"]:
            assert isinstance(attempt["text"], str)  # may be empty: a random model can stop at once
            assert attempt["completion_tokens"] > 0 and attempt["prompt_tokens"] > 0
            assert attempt["verdict"] is not None and attempt["verdict"]["issues"] is not None
            assert attempt["sampling"]["max_tokens"] == 16
        assert row["completion_tokens"] == sum(a["completion_tokens"] for a in row["attempts"])
        if row["answer"] is None:
            assert row["correct"] is False

    assert any(a["text"] for r in rows for a in r["attempts"])

    assert summary.rows_in == summary.rows_out == len(input_ids)
    assert summary.rows_out == summary.solved + summary.errors
    assert summary.errors == 0
    assert summary.with_gold == len(input_ids)
    assert summary.correct == sum(1 for r in rows if r["correct"] is True)
    assert summary.attempts == sum(r["num_attempts"] for r in rows)
    assert summary.mode == "self"


def _write_messy_set(root: Path) -> None:
    images = root / "images"
    images.mkdir()
    for i in range(3):
        (images / f"good-{i}.png").write_bytes(png_bytes(f"{i} + 1"))
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image at all")
    (images / "nogold.png").write_bytes(png_bytes("5 + 5"))
    lines = [json.dumps({"id": f"good-{i}", "question": f"What is {i} + 1? <image1>", "images": [f"images/good-{i}.png"], "answer": str(i + 1)}) for i in range(3)]
    lines.append(json.dumps({"id": "corrupt", "question": "What is shown? <image1>", "images": ["images/corrupt.png"], "answer": "1"}))
    lines.append(json.dumps({"id": "missing", "question": "What is shown? <image1>", "images": ["images/missing.png"], "answer": "2"}))
    lines.append('{"id": "broken", "question": "unterminated')
    lines.append(json.dumps({"id": "nogold", "question": "What is 5 + 5? <image1>", "images": ["images/nogold.png"]}))
    (root / "problems.jsonl").write_text("\n".join(lines) + "\n")


def test_bad_rows_become_error_rows_and_the_job_completes(ray_cluster, config, tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    _write_messy_set(data)
    out = tmp_path / "out"
    summary = _run(data, out, config)
    rows = {r["id"]: r for r in _rows(out)}

    assert len(rows) == 7  # one row per input line: six problems plus the broken line's error row
    good = [rows[f"good-{i}"] for i in range(3)]
    for row in good + [rows["nogold"]]:
        assert row["error"] is None, row["error"]
        assert row["attempts"]
    for row in good:
        assert row["correct"] in (True, False)
    assert rows["nogold"]["gold"] is None and rows["nogold"]["correct"] is None

    corrupt, missing = rows["corrupt"], rows["missing"]
    assert corrupt["error"].startswith("bad image"), corrupt["error"]
    assert any(why in corrupt["error"] for why in ("not a recognized image", "corrupt")), corrupt["error"]
    assert missing["error"].startswith("bad image"), missing["error"]
    assert "not found" in missing["error"] and "missing.png" in missing["error"], missing["error"]
    for row in (corrupt, missing):
        assert row["attempts"] == [] and row["answer"] is None and row["verified"] is False
        assert row["gold"] is not None and row["correct"] is False

    broken = [r for r in rows.values() if r["id"] not in {"good-0", "good-1", "good-2", "corrupt", "missing", "nogold"}]
    assert len(broken) == 1
    assert broken[0]["error"].startswith("bad input row") and "JSON" in broken[0]["error"], broken[0]["error"]
    assert "problems.jsonl:6" in broken[0]["id"]

    assert summary.rows_in == summary.rows_out == 7
    assert summary.errors == 3 and summary.solved == 4
    # accuracy counts rows with gold only: 3 good + corrupt + missing (errors with gold count as wrong)
    assert summary.with_gold == 5
    assert summary.correct == sum(1 for r in rows.values() if r["correct"] is True)
    assert summary.accuracy == pytest.approx(summary.correct / 5)


def test_refuses_a_non_empty_output_dir(config, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"earlier results")
    with pytest.raises(FileExistsError):
        _run(EXAMPLES, out, config)
    assert (out / "part-0.parquet").read_bytes() == b"earlier results"


def test_duplicate_ids_become_error_rows(tmp_path):
    from qvq_ray.batch.pipeline import _input_rows

    path = tmp_path / "dups.jsonl"
    path.write_text('{"id": "a", "question": "1+1?", "answer": "2"}\n{"id": "a", "question": "2+2?", "answer": "4"}\n')
    rows = _input_rows(str(path), None, None)
    assert len(rows) == 2
    assert rows[0]["id"] == "a" and rows[0]["error"] is None
    assert rows[1]["id"] != "a" and "duplicate id 'a'" in rows[1]["error"]


def test_hostile_input_lines_are_error_rows_and_ids_stay_unique(tmp_path):
    """A line nested 100,000 deep or holding a 5,000-digit integer is that line's error row; a row that
    failed to load and a valid row with the same id never both keep the id."""
    from qvq_ray.batch.pipeline import _input_rows

    path = tmp_path / "hostile.jsonl"
    lines = [
        "[" * 100_000 + "]" * 100_000,
        '{"id": "big", "question": "q", "answer": ' + "9" * 5000 + "}",
        '{"id": "b", "question": ""}',  # fails to load, with its id
        '{"id": "b", "question": "1+1?", "answer": "2"}',
        '{"id": "c", "question": "2+2?", "answer": "4"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    rows = _input_rows(str(path), None, None)
    assert len(rows) == 5
    assert "nested too deeply" in rows[0]["error"] and "digits" in rows[1]["error"]
    assert [r["id"] for r in rows].count("b") == 1 and rows[2]["id"] == "b" and rows[2]["error"]
    # a repeated id's error row comes last (named once every id of the file is known)
    assert rows[3]["id"] == "c" and rows[3]["error"] is None and "duplicate id 'b'" in rows[4]["error"]


@pytest.mark.parametrize(
    "ids",
    [["x", "x", "x#dup1"], ["x#dup1", "x", "x"], ["x", "x#dup1", "x"], ["x", "x", "x#dup1", "x#dup1'", "x"]],
    ids=["real-id-after", "real-id-first", "real-id-between", "primed-too"],
)
def test_a_real_id_that_looks_generated_keeps_its_id(tmp_path, ids):
    """Two rows `x` and a real `x#dup1`: one output row per input row, all ids distinct, and every id
    that occurs once in the file is solved under that id, never renamed or called a duplicate."""
    from collections import Counter

    from qvq_ray.batch.pipeline import _input_rows
    from qvq_ray.batch.source import count_input

    path = tmp_path / "dups.jsonl"
    path.write_text("".join(json.dumps({"id": i, "question": "1+1?", "answer": "2"}) + "\n" for i in ids))
    rows = _input_rows(str(path), None, None)
    out_ids = [r["id"] for r in rows]
    assert len(rows) == len(ids) and len(set(out_ids)) == len(ids), out_ids
    first_of_each = list(dict.fromkeys(ids))
    assert [r["id"] for r in rows if r["error"] is None] == first_of_each
    repeats = sum(n - 1 for n in Counter(ids).values())
    errors = [r for r in rows if r["error"]]
    assert len(errors) == repeats and all(r["error"] == "duplicate id 'x'" for r in errors)
    # the driver's pass and a resumed run name them the same way
    assert _input_rows(str(path), None, None) == rows
    assert count_input(str(path), None, None, skip_ids=set(out_ids[:2])).todo == len(ids) - 2


SAMPLES = [
    # (sample dir, format, rows, expected error for rows whose images cannot be had here)
    ("mathvision", "mathvision", 50, None),
    ("mathvista", "mathvista", 40, "image file not found"),  # the repo ships no images
    ("mmmu", "mmmu", 30, None),
    ("olympiadbench", "olympiadbench", 42, "URL images are disabled"),  # figures are remote URLs
]


@pytest.mark.parametrize("name, fmt, count, image_error", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_shared_benchmark_samples_end_to_end(ray_cluster, config, tmp_path, name, fmt, count, image_error):
    """Each native sample (../shared/data, skipped when absent) through the whole job: one row per
    native record, errors that say why."""
    from qvq_ray.jobs import run_solve_job
    from qvq_ray.datasets import load_problems

    path = shared_data(name)
    config.sampling.max_tokens = 4
    config.policy.max_attempts = 1
    config.batch.rows_per_batch = 16
    native = [p for p in load_problems(str(path), format=fmt)]
    assert len(native) == count
    if name == "mathvision":  # one job also shows that every row records the prompt it was sent
        from qvq_ray.prompt_config import PromptConfig

        config.prompt = PromptConfig(preset="lmms-eval-mathvision", instructions={"free": "Answer with a number."})
    summary = run_solve_job(str(path), str(tmp_path / "out"), config, input_format=fmt, printer=lambda _: None)
    rows = _rows(tmp_path / "out")
    assert summary.rows_in == summary.rows_out == count == len(rows) == len({r["id"] for r in rows})
    assert summary.solved + summary.errors == count
    errors = [r["error"] for r in rows if r["error"]]
    if image_error is None:
        assert not errors, errors[:3]
    else:
        assert errors and all(image_error in e for e in errors), errors[:3]
    for row in rows:
        if not row["error"]:
            assert row["attempts"] and row["attempts"][0]["completion_tokens"] > 0
            assert row["problem"]["source"]  # a typed struct, not text
    if name == "mathvision":
        from qvq_ray.prompt import template_sha

        sha = template_sha(config.prompt, config.model.system_prompt)
        by_id = {p.id: p for p in native}
        for row in rows:
            prompt = row["prompt"]
            assert prompt["preset"] == "lmms-eval-mathvision" and prompt["overrides"] == ["instructions"]
            assert prompt["template_sha"] == sha
            last = "Answer the question with the option's letter from the given choices directly." if by_id[row["id"]].spec.choices else "Answer with a number."
            assert prompt["text"].endswith("\n" + last)
        assert {bool(by_id[r["id"]].spec.choices) for r in rows} == {True, False}  # both kinds of instruction


def test_a_judge_runs_on_the_engine_actors_and_decides_what_rules_cannot(ray_cluster, config, tmp_path):
    """verifier.judge with no endpoint: the judge is the solving engine itself, called from the solve
    actors. Free-text golds cannot be decided by the string rules, so every such row is the judge's
    (or not judged, when the random tiny model answers nothing readable), never 'rules'."""
    import sqlite3

    from qvq_ray.config import JudgeConfig

    problems = tmp_path / "free-text.jsonl"
    problems.write_text("".join(
        json.dumps({"id": f"organelle-{i}", "question": f"Which organelle makes ATP? ({i})", "answer": "the mitochondria"}) + "\n"
        for i in range(3)
    ))
    cache = tmp_path / "judge.sqlite3"
    config.verifier.judge = JudgeConfig(cache_path=str(cache), max_tokens=8)
    config.policy.max_attempts = 1
    out = tmp_path / "out"
    summary = _run(problems, out, config)
    rows = _rows(out)
    assert summary.rows_out == 3 and summary.errors == 0
    for row in rows:
        assert row["decided_by"] in ("judge", None), row["decided_by"]
        assert row["correct"] is (None if row["decided_by"] is None else row["correct"])
        assert row["pass_at_1"] is not None  # scored in the solve actor, next to its engine
    assert "rules" not in summary.decided_by
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM judge").fetchone()[0] >= 3  # each row asked at least once


def test_progress_moves_per_row_between_part_files(ray_cluster, tmp_path):
    """One part file for the whole job (rows_per_batch above the rows), rows solved one at a time
    at a simulated endpoint (benchmarks/sim_endpoint.py: ~0.3-0.6 s a completion, in this process):
    the progress lines count rows as they are solved, not only when the part file lands. With
    `resources.num_cpus: 0.25` and no custom resource, Ray Data fuses the prepare task into the
    engine actor: preparing must work inside its running event loop (it raised, failing every row)."""
    from qvq_ray.jobs import run_solve_job
    from tests.conftest import sim_endpoint_module, sim_job_config

    sim = sim_endpoint_module()
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + 7?", "answer": str(i + 7)}) + "\n" for i in range(6)))
    lines: list[str] = []
    with sim.SimEndpoint(in_process=True, tokens_per_s=1000.0, server_options={"median": 400, "sigma": 0.2, "cap": 600}) as endpoint:
        config = QvqConfig.model_validate(sim_job_config(
            endpoint.base_url, resources={"num_cpus": 0.25}, batch={"num_replicas": 1, "max_concurrent_solves": 1, "rows_per_batch": 16}
        ))
        summary = run_solve_job(str(problems), str(tmp_path / "out"), config, printer=lines.append, progress_every_s=0.0)
    assert summary.rows_out == 6 and len(list((tmp_path / "out").glob("part-*"))) == 1
    done = [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("progress ")]
    assert [d for d in done if 0 < d < 6], f"progress only moved when the part file landed: {lines}"
    assert done == sorted(done) and done[-1] == 6, lines
