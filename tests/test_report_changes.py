"""Reports that say what changed: the run's settings in the header, the response in each problem
card, a comparison that starts with what differs and the problems that flipped, a rescore report
without solving figures, and plots only where they carry information (issue 22 item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qvq_ray.cli import main
from qvq_ray.config import QvqConfig
from qvq_ray.report import compare as cmp
from qvq_ray.report import problems as rp
from qvq_ray.report.render import render_html
from qvq_ray.report.runinfo import RUN_FILE, read_run_records, run_facts, solve_record, write_run_record
from qvq_ray.report.summary import read_output, report_blocks, write_report
from tests.test_report_explain import dom, problem, solved, write_run

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SCRIPT = "<script>alert(1)</script>"


def with_prompt(row, preset="qvq", sha="0123456789abcdef"):
    return {**row, "prompt": {"preset": preset, "overrides": [], "template_sha": sha, "text": row["question"]}}


def record(tmp_path, **overrides):
    config = QvqConfig.preset("tiny-cpu")
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        setattr(getattr(config, section), field, value)
    return solve_record(config, argv=["solve", "in.jsonl", "--out", str(tmp_path)], input_path="in.jsonl", resume=False)


# ---------------------------------------------------------------- the header


def test_the_header_names_model_engine_prompt_sampling_and_policy(tmp_path):
    run = write_run(tmp_path / "run", [with_prompt(solved(problem(f"p{i}"), [("1", True)])) for i in range(3)])
    write_run_record(run, record(tmp_path, **{"policy.max_attempts": 3}))
    written = write_report(run, plots=False)
    facts = {f[0]: f[1] for f in run_facts(read_output(run).to_pylist(), read_run_records(run))}
    assert facts["model"] == "tiny" and facts["engine"].startswith("hf")
    assert facts["prompt preset"] == "qvq" and facts["template hash"] == "0123456789abcdef"
    assert facts["sampling"].startswith("temperature 0.0, max_tokens")
    assert "max_attempts 3" in facts["policy"] and "mode self" in facts["policy"]
    page = dom(written["report.html"].read_text(encoding="utf-8"))
    assert [h["attrs"].get("id") for h in page.find("h3")][:2] == ["run", "headline"]
    assert "| model | tiny | _run.json |" in written["report.md"].read_text(encoding="utf-8")


def test_without_a_run_record_the_header_says_what_is_not_recorded(tmp_path):
    run = write_run(tmp_path / "run", [with_prompt(solved(problem("p"), [("1", True)]), "lmms-eval-mathvista")])
    facts = {f[0]: f[1] for f in run_facts(read_output(run).to_pylist(), [])}
    assert facts["prompt preset"] == "lmms-eval-mathvista"  # the rows say it
    assert "model" not in facts and "no _run.json" in facts["not recorded"]


def test_the_run_record_is_skipped_by_parquet_readers_and_keeps_every_invocation(tmp_path):
    pd = pytest.importorskip("pandas")
    run = write_run(tmp_path / "run", [solved(problem(f"p{i}"), [("1", True)]) for i in range(2)])
    write_run_record(run, record(tmp_path))
    write_run_record(run, record(tmp_path, **{"sampling.temperature": 0.6}))  # a resume with another setting
    assert len(pd.read_parquet(run)) == 2  # `_run.json` is not read as data
    runs = read_run_records(run)
    assert len(runs) == 2 and "api_key" not in json.dumps(runs)
    facts = {f[0]: f[1] for f in run_facts(read_output(run).to_pylist(), runs)}
    assert "sampling.temperature" in facts["invocations"]
    (run / RUN_FILE).write_text("{not json")
    assert read_run_records(run) == []  # unreadable: the report goes on without it


# ---------------------------------------------------------------- the response in each card


def test_answer_span_is_the_last_occurrence_and_tolerates_spaces():
    assert rp.answer_span("x is 3, so \\boxed{3}", "3") == (18, 19)
    assert rp.answer_span("so x=3 at the end", "x = 3") == (3, 6)
    assert rp.answer_span("nothing here", "42") is None
    assert rp.answer_span("anything", None) is None


def test_a_long_response_keeps_its_start_its_end_and_the_answer_found_in_the_cut():
    text = "A" * 2000 + " answer 77 " + "B" * 20000
    view = rp.response_view(text, "77")
    kinds = [kind for kind, _ in view.pieces]
    assert kinds.count("cut") == 2 and "answer" in kinds and view.chars == len(text)
    shown = sum(len(t) for k, t in view.pieces if k != "cut")
    assert shown <= rp.RESPONSE_CHARS + 2 * rp.SPAN_CONTEXT + 2


def test_the_card_shows_the_response_escaped_and_collapsed_with_the_answer_marked(tmp_path):
    prob = problem("w")
    row = solved(prob, [("5", False)])
    row["attempts"][0]["text"] = f"Reasoning {SCRIPT} & more. The answer is \\boxed{{5}}."
    run = write_run(tmp_path / "run", [row])
    page = write_report(run, plots=False)["report.html"].read_text(encoding="utf-8")
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    d = dom(page)
    responses = d.find("details", "response")
    assert len(responses) == 1 and "open" not in responses[0]["attrs"]  # collapsed
    assert [ "".join(m["text"]) for m in d.find("mark", "answer")] == ["5"]
    assert "answer highlighted" in page and "response of attempt 1 (chosen)" in page


def test_a_response_without_an_extracted_answer_says_so():
    html = render_html("t", [], [rp.ProblemList([rp.card(r, v) for r, v in _one_card("no box here")], 1, "")])
    assert "no answer extracted" in html and "<mark" not in html


def _one_card(text):
    from qvq_ray.report import stats as st

    row = solved(problem("n"), [(None, False)])
    row["attempts"][0]["text"] = text
    return list(zip([row], st.views([row])))


# ---------------------------------------------------------------- a comparison


def test_a_comparison_lists_what_differs_then_the_flips_then_the_tables(tmp_path):
    a_rows = [with_prompt(solved(problem(f"p{i}"), [("1", True)] if i < 3 else [("2", False)])) for i in range(5)]
    b_rows = [with_prompt(solved(problem(f"p{i}"), [("1", True)] if i in (0, 3) else [("2", False)]),
                          "lmms-eval-mathvista", "fedcba9876543210") for i in range(5)]
    for r in b_rows:
        r["attempts"][0]["text"] = f"B thinks {SCRIPT} \\boxed{{{r['answer']}}}"
    a, b = write_run(tmp_path / "a", a_rows), write_run(tmp_path / "b", b_rows)
    write_run_record(a, record(tmp_path))
    write_run_record(b, record(tmp_path, **{"policy.max_attempts": 1}))
    blocks, _, _ = cmp.comparison_blocks(a_rows, b_rows, "a", "b", read_run_records(a), read_run_records(b))
    differs = blocks[0]
    assert differs.title == "What differs between the runs"
    assert {r[0]: r[1:] for r in differs.rows} == {
        "prompt preset": ["qvq", "lmms-eval-mathvista"], "template hash": ["0123456789abcdef", "fedcba9876543210"],
        "policy.max_attempts": ["2", "1"]}
    lost, gained = [blk for blk in blocks if isinstance(blk, cmp.FlipList)]
    assert [f.id for f in lost.flips] == ["p1", "p2"] and [f.id for f in gained.flips] == ["p3"]
    assert lost.flips[0].response_a is not None and lost.flips[0].response_b.chars > 0
    titles = [getattr(blk, "title", getattr(blk, "text", "")) for blk in blocks]
    assert titles.index("Right in A, wrong in B") < titles.index("B vs A by benchmark")
    assert main(["report", str(a), str(b)]) == 0
    page = (tmp_path / "b.vs-a.report" / "report.html").read_text(encoding="utf-8")
    assert SCRIPT not in page
    flips = dom(page).find("details", "flip")
    assert len(flips) == 3 and all("open" not in f["attrs"] for f in flips)
    assert len(dom(page).find("div", "side-by-side")) == 3


def test_same_settings_say_none_differ(tmp_path):
    rows = [with_prompt(solved(problem("p"), [("1", True)]))]
    table = cmp.differences_table(rows, [], rows, [])
    assert table.rows == [] and table.note.startswith("None found") and "not recorded for run A and B" in table.note


# ---------------------------------------------------------------- plots only where they carry information


def test_one_attempt_each_draws_no_curve_and_says_why(tmp_path):
    pytest.importorskip("matplotlib")
    from qvq_ray.report.plots import Plot

    one = [solved(problem(f"p{i}"), [("1", i % 2 == 0)], tokens=100 + i) for i in range(4)]
    blocks, _ = report_blocks(one)
    plots = [blk.filename for blk in blocks if isinstance(blk, Plot)]
    assert plots == ["tokens.png"]
    curve = next(blk for blk in blocks if getattr(blk, "anchor", "") == "self-curve")
    assert "No plot: every problem had one attempt" in curve.note
    two = [solved(problem(f"p{i}"), [("2", False), ("1", True)], tokens=100) for i in range(4)]
    blocks, _ = report_blocks(two)
    assert [blk.filename for blk in blocks if isinstance(blk, Plot)] == ["attempts_self.png"]  # same tokens: no histogram
    tokens = next(blk for blk in blocks if getattr(blk, "anchor", "") == "tokens")
    assert "No histogram" in tokens.note


# ---------------------------------------------------------------- a rescore report


def test_the_rescore_report_says_where_outputs_came_from_and_how_verdicts_agree(tmp_path):
    problems = tmp_path / "problems.jsonl"
    with problems.open("w") as f:
        for i in range(4):
            f.write(json.dumps({"id": f"q{i}", "question": f"{i}+1?", "answer": str(i + 1)}) + "\n")
    results = tmp_path / "results.jsonl"
    with results.open("w") as f:  # q0, q1 right; q2 wrong; q3 right but the tool said wrong
        for i, (answer, tool) in enumerate([("1", True), ("2", True), ("9", False), ("4", False)]):
            f.write(json.dumps({"id": f"q{i}", "response": f"so \\boxed{{{answer}}}", "correct": tool}) + "\n")
    out = tmp_path / "out"
    assert main(["rescore", str(results), "--problems", str(problems), "--out", str(out)]) == 0
    records = read_run_records(out)
    assert records[-1]["kind"] == "rescore" and records[-1]["results"] == str(results.resolve())
    md = (tmp_path / "out.report" / "report.md").read_text(encoding="utf-8")
    page = (tmp_path / "out.report" / "report.html").read_text(encoding="utf-8")
    assert "outputs from" in md and str(results.resolve()) in md and "mathvision" in md
    assert "gold never read" not in md and "gold never read" not in page
    assert "self mode" not in md and "Accuracy by benchmark (rescored mode)" in md
    assert "<dt>mode</dt><dd>rescored</dd>" in page and "<dd>self</dd>" not in page  # the problem cards too
    ids = [h["attrs"].get("id") for h in dom(page).find("h3")]
    assert ids[:4] == ["run", "headline", "agreement", "disagreements"]
    for solving_only in ("tokens", "attempts", "self-curve"):
        assert solving_only not in ids
    agreement = {r[0]: r[1] for r in next(b for b in report_blocks(read_output(out).to_pylist(),
                                                                     records=records)[0]
                                          if getattr(b, "anchor", "") == "agreement").rows}
    assert agreement["ours correct, tool's wrong"] == "1" and agreement["agree"] == "75.0% (3/4)"
    assert "| q3 | 4 | 4 | correct | wrong |" in md
