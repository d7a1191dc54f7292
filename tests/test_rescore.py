"""`qvq-ray rescore`: other tools' result files re-scored against a benchmark, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import shared_data


def run_cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "rescore", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def read_rows(out: Path) -> dict[str, dict]:
    files = sorted(out.glob("*.parquet"))
    assert files and all(f.name.startswith("part-") for f in files)
    table = pq.read_table(files)
    assert table.schema.field("tool_correct").type == "bool"
    rows = table.to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "one id, one row"
    return {r["id"]: r for r in rows}


def write_jsonl(path: Path, records: list) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(record if isinstance(record, str) else json.dumps(record))
            f.write("\n")
    return path


def test_rescore_jsonl_results_against_problems(tmp_path):
    problems = write_jsonl(
        tmp_path / "problems.jsonl",
        [
            {"id": "p1", "question": "What is 6 * 7?", "answer": "42"},
            {"id": "p2", "question": "What is 1/2 as a decimal?", "answer": "0.5"},
            {"id": "p3", "question": "Pick the square.", "answer": "B", "choices": ["circle", "square", "triangle"]},
            {"id": "p4", "question": "What is 2 + 2?", "answer": "4"},
            {"id": "p5", "question": "No result is given for this one.", "answer": "1"},
        ],
    )
    results = write_jsonl(
        tmp_path / "outputs.jsonl",
        [
            {"id": "p1", "response": "6 * 7 = 42. The answer is \\boxed{42}.", "correct": True},
            {"id": "p2", "response": "So the final answer is \\boxed{\\frac{1}{2}}.", "correct": False},  # the tool was wrong
            {"id": "p3", "response": "The shape with four equal sides is the square. The answer is (B).", "correct": True},
            {"id": "p4", "response": "2 + 2 = 5, so the answer is \\boxed{5}."},  # no tool verdict
            {"id": "ghost", "response": "\\boxed{3}", "correct": True},  # not in the benchmark
            "{this line is not JSON",
        ],
    )
    out = tmp_path / "rescored"
    result = run_cli(str(results), "--problems", str(problems), "--out", str(out), "--workers", "2", "--timeout", "10")
    rows = read_rows(out)

    assert set(rows) == {"p1", "p2", "p3", "p4", "p5", "ghost", "outputs.jsonl:line 6"}
    for rid, expected in {"p1": True, "p2": True, "p3": True, "p4": False}.items():
        row = rows[rid]
        assert row["error"] is None, row["error"]
        assert row["correct"] is expected and row["pass_at_1"] is expected and row["pass_at_k"] is expected, rid
        assert row["chosen_attempt"] == 0 and row["num_attempts"] == 1
        assert row["attempts"][0]["correct"] is expected
        assert row["gold"] is not None and row["problem"]
    assert rows["p1"]["answer"] == "42"
    assert [rows[r]["tool_correct"] for r in ("p1", "p2", "p3", "p4")] == [True, False, True, None]

    assert rows["p5"]["error"] == "no result for this problem" and rows["p5"]["gold"] == "1"
    assert rows["p5"]["correct"] is None  # not judged: nothing was given to judge
    assert rows["ghost"]["error"] == "result id not in the benchmark" and rows["ghost"]["tool_correct"] is True
    assert "unreadable JSON" in rows["outputs.jsonl:line 6"]["error"]

    # the disagreement table (p2: the tool said wrong, we say right) beside the output, never among its parts
    table = (tmp_path / "rescored.disagreements.md").read_text()
    assert "| p2 |" in table and "| p1 |" not in table
    assert "p2" in result.stdout and "agreement 2/3" in result.stdout
    assert (out.with_name(out.name + ".report") / "report.md").is_file()  # beside OUT, never inside
    assert not [p for p in out.iterdir() if p.suffix in (".md", ".html")]

    # a second run into the same directory is refused, nothing overwritten
    again = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "rescore", str(results), "--problems", str(problems), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 2 and "already holds" in again.stderr


def test_rescore_our_parquet_and_mathvista_json(tmp_path):
    problems = write_jsonl(tmp_path / "problems.jsonl", [
        {"id": "1", "question": "6 * 7?", "answer": "42"},
        {"id": "2", "question": "3 + 4?", "answer": "7"},
    ])
    mathvista = tmp_path / "output_model.json"
    mathvista.write_text(json.dumps({
        "1": {"pid": "1", "response": "The answer is 42.", "true_false": "True"},
        "2": {"pid": "2", "response": "Hence the answer is \\boxed{8}.", "true_false": "True"},
    }))
    first = tmp_path / "first"
    run_cli(str(mathvista), "--problems", str(problems), "--out", str(first), "--no-report")
    rows = read_rows(first)
    assert rows["1"]["correct"] is True and rows["2"]["correct"] is False
    assert rows["1"]["tool_correct"] is True and rows["2"]["tool_correct"] is True

    # our own output, read back: its earlier `correct` becomes the tool verdict
    second = tmp_path / "second"
    run_cli(str(first), "--problems", str(problems), "--out", str(second), "--no-report")
    again = read_rows(second)
    assert {k: (r["correct"], r["tool_correct"]) for k, r in again.items()} == {"1": (True, True), "2": (False, False)}


def test_rescore_vlmevalkit_tsv_and_xlsx_without_openpyxl(tmp_path):
    problems = write_jsonl(tmp_path / "problems.jsonl", [{"id": "0", "question": "1+1?", "answer": "2"}])
    tsv = tmp_path / "model_MathVista_MINI.tsv"
    tsv.write_text("index\tquestion\tprediction\thit\n0\t1+1?\tThe answer is 2.\t1\n")
    out = tmp_path / "tsv"
    run_cli(str(tsv), "--problems", str(problems), "--out", str(out), "--no-report")
    row = read_rows(out)["0"]
    assert row["correct"] is True and row["tool_correct"] is True

    try:
        import openpyxl  # noqa: F401
    except ImportError:
        xlsx = tmp_path / "model.xlsx"
        xlsx.write_bytes(b"not really a workbook")
        result = subprocess.run(
            [sys.executable, "-m", "qvq_ray.cli", "rescore", str(xlsx), "--problems", str(problems), "--out", str(tmp_path / "x")],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 2 and "openpyxl" in result.stderr


def test_rescore_real_mathvista_outputs_against_the_shared_sample(tmp_path):
    outputs = shared_data("model_outputs/mathvista/output_gpt4_2shot_solution.json")
    benchmark = shared_data("mathvista")
    records = json.loads(outputs.read_text())
    first = dict(list(records.items())[:50])
    results = tmp_path / "output_first50.json"
    results.write_text(json.dumps(first))
    sample_ids = set(json.loads((benchmark / "data" / "testmini.json").read_text()))

    out = tmp_path / "mathvista"
    run_cli(str(results), "--problems", str(benchmark), "--out", str(out), "--workers", "2")
    rows = read_rows(out)

    both = set(first) & sample_ids
    assert both, "the first outputs should meet the shared sample somewhere"
    assert set(rows) == set(first) | sample_ids  # every result and every problem, once
    for rid in both:
        assert rows[rid]["error"] is None and rows[rid]["tool_correct"] == (first[rid]["true_false"] == "True")
        assert rows[rid]["correct"] is not None
    for rid in set(first) - sample_ids:
        assert rows[rid]["error"] == "result id not in the benchmark"
    for rid in sample_ids - set(first):
        assert rows[rid]["error"] == "no result for this problem"
    assert (tmp_path / "mathvista.disagreements.md").is_file()
    assert (out.with_name(out.name + ".report") / "report.md").is_file()  # beside OUT, never inside


def test_rescore_honours_the_config_verifier_section(tmp_path):
    """`rescore --config` scores with the config's whole verifier section (here missing_unit), so
    re-scoring a run with its own config agrees with that run; --workers/--timeout still override."""
    problems = write_jsonl(
        tmp_path / "problems.jsonl",
        [{"id": "u1", "question": "How long is the rod?", "answer": "5 cm"}],
    )
    results = write_jsonl(tmp_path / "outputs.jsonl", [{"id": "u1", "response": "The rod is \\boxed{5}."}])
    config = tmp_path / "assume.yaml"
    config.write_text("verifier:\n  missing_unit: assume_gold\n")
    verdicts = {}
    for name, extra in (("default", []), ("assume", ["--config", str(config), "--workers", "1"])):
        out = tmp_path / name
        run_cli(str(results), "--problems", str(problems), "--format", "problems", "--out", str(out), "--no-report", *extra)
        verdicts[name] = read_rows(out)["u1"]["correct"]
    assert verdicts == {"default": False, "assume": True}
