"""`qvq-ray report`: known output rows -> known tables, a parseable self-contained page, honest oracle labels."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import pytest

from qvq_ray.report import stats as st
from qvq_ray.report import tables as tb
from qvq_ray.report.summary import headline_table, read_output, summarize_output, write_report

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SCRIPT = "<script>alert('pwned')</script>"


def attempt(answer, correct, tokens=100, issues=()):
    return {
        "text": f"Thinking... {SCRIPT} \\boxed{{{answer}}}",
        "sampling": {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "max_tokens": 64, "seed": None, "stop": [], "n": 1, "repetition_penalty": 1.0},
        "prompt_tokens": 50,
        "completion_tokens": tokens,
        "latency_s": 0.5,
        "finish_reason": "stop",
        "verdict": {"answer": answer, "canonical": answer, "correct": None, "issues": list(issues), "elapsed_s": 0.01},
        "cut_off": False,
        "tokens_saved": 0,
        "correct": correct,
    }


def C(tokens=100):  # a correct attempt (gold is "1")
    return attempt("1", True, tokens)


def W(answer, tokens=100):  # a wrong attempt
    return attempt(answer, False, tokens, issues=("no_final_answer",) if answer is None else ())


def row(id, source, subject, level, attempts, flags, *, gold="1", mode="self", error=None, tokens=None, problem=True):
    """flags: (correct, pass@1, maj@k, pass@k) as the score stage writes them."""
    correct, p1, maj, pk = flags
    meta = {} if level is None else {"level": level}
    return {
        "id": id,
        "source": source,
        "question": f"question {id}",
        "choices": [],
        "gold": gold,
        "answer": None if error else "1",
        "canonical": None,
        "verified": error is None,
        "issues": [],
        "correct": correct,
        "pass_at_1": p1,
        "maj_at_k": maj,
        "pass_at_k": pk,
        "confidence": None,
        "mode": mode,
        "chosen_attempt": 0 if attempts else None,
        "attempts": attempts,
        "num_attempts": len(attempts),
        "prompt_tokens": 50 * len(attempts),
        "completion_tokens": tokens if tokens is not None else sum(a["completion_tokens"] for a in attempts),
        "tokens_saved": 0,
        "latency_s": 0.5 * len(attempts),
        "error": error,
        "problem": {"id": id, "source": source, "subject": subject, "meta": json.dumps(meta)} if problem else None,
    }


T, F = True, False
SELF_ROWS = [
    row("r1", "MathVision", "algebra", 1, [C()], (T, T, T, T), tokens=100),
    row("r2", "MathVision", "algebra", 2, [W("5"), C()], (F, F, F, T), tokens=200),
    row("r3", "MathVision", "geometry", 1, [W("5"), W("5"), C()], (F, F, F, T), tokens=300),
    row("r4", "MathVista", "geometry", "2", [C(), C(), W("7")], (T, T, T, T), tokens=400),
    row("r5", "MathVista", "algebra", None, [W("3"), C(), C()], (T, F, T, T), tokens=500),
    row("r6", "MathVista", "geometry", 1.0, [], (F, F, F, F), gold="2", error="solve failed: EngineError: boom"),
    row("r7", "MathVista", None, None, [attempt("4", None)], (None, None, None, None), gold=None, tokens=600, problem=False),
    row("r8", "MathVision", "<b>bold</b>", None, [], (F, F, F, F), gold="3", error=f"bad image: cannot identify {SCRIPT}"),
]
ORACLE_ROWS = [
    row("o1", "MathVision", "algebra", 1, [W("2"), C()], (T, F, F, T), mode="oracle"),
    row("o2", "MathVision", "algebra", 1, [C()], (T, T, T, T), mode="oracle"),
    row("o3", "MathVision", "geometry", 2, [W("2"), W("3"), W("4")], (F, F, F, F), mode="oracle"),
    # the pipeline writes error rows with the default mode, even in an oracle job
    row("o4", "MathVision", "geometry", 2, [], (F, F, F, F), error="bad image: truncated file"),
]


def write_parquet(directory, rows, name="part-0.parquet"):
    from qvq_ray.problem import solution_schema

    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=solution_schema()), directory / name)
    return directory


def write_jsonl(directory, rows):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "part-0.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return directory


@pytest.fixture(params=["parquet", "jsonl"])
def self_dir(request, tmp_path):
    writer = write_parquet if request.param == "parquet" else write_jsonl
    return writer(tmp_path / f"self-{request.param}", SELF_ROWS)


@pytest.fixture
def oracle_dir(tmp_path):
    return write_parquet(tmp_path / "oracle", ORACLE_ROWS)


def table_rows(table):
    return {cells[0]: cells[1:] for cells in table.rows}


# ---------------------------------------------------------------- numbers


# group -> [n, errors, with gold, accuracy, pass@1, maj@k, pass@k] (the 95% CI column is checked apart)
EXPECTED_BY_BENCHMARK = {
    "MathVision": ["4", "1", "4", "25.0% (1/4)", "25.0% (1/4)", "25.0% (1/4)", "75.0% (3/4)"],
    "MathVista": ["4", "1", "3", "66.7% (2/3)", "33.3% (1/3)", "66.7% (2/3)", "66.7% (2/3)"],
    "all": ["8", "2", "7", "42.9% (3/7)", "28.6% (2/7)", "42.9% (3/7)", "71.4% (5/7)"],
}
# subjects and levels within their benchmark, never pooled across benchmarks
EXPECTED_WITHIN = {
    ("MathVision", "subject"): {
        "<b>bold</b>": ["1", "1", "1", "0.0% (0/1)", "0.0% (0/1)", "0.0% (0/1)", "0.0% (0/1)"],
        "algebra": ["2", "0", "2", "50.0% (1/2)", "50.0% (1/2)", "50.0% (1/2)", "100.0% (2/2)"],
        "geometry": ["1", "0", "1", "0.0% (0/1)", "0.0% (0/1)", "0.0% (0/1)", "100.0% (1/1)"],
        "all": EXPECTED_BY_BENCHMARK["MathVision"],
    },
    ("MathVista", "subject"): {
        "algebra": ["1", "0", "1", "100.0% (1/1)", "0.0% (0/1)", "100.0% (1/1)", "100.0% (1/1)"],
        "geometry": ["2", "1", "2", "50.0% (1/2)", "50.0% (1/2)", "50.0% (1/2)", "50.0% (1/2)"],
        "(none)": ["1", "0", "0", "n/a", "n/a", "n/a", "n/a"],
        "all": EXPECTED_BY_BENCHMARK["MathVista"],
    },
    ("MathVision", "level"): {  # numeric order, (none) last
        "1": ["2", "0", "2", "50.0% (1/2)", "50.0% (1/2)", "50.0% (1/2)", "100.0% (2/2)"],
        "2": ["1", "0", "1", "0.0% (0/1)", "0.0% (0/1)", "0.0% (0/1)", "100.0% (1/1)"],
        "(none)": ["1", "1", "1", "0.0% (0/1)", "0.0% (0/1)", "0.0% (0/1)", "0.0% (0/1)"],
        "all": EXPECTED_BY_BENCHMARK["MathVision"],
    },
    ("MathVista", "level"): {  # 2 and "2" are one level, 1 and 1.0 too
        "1": ["1", "1", "1", "0.0% (0/1)", "0.0% (0/1)", "0.0% (0/1)", "0.0% (0/1)"],
        "2": ["1", "0", "1", "100.0% (1/1)", "100.0% (1/1)", "100.0% (1/1)", "100.0% (1/1)"],
        "(none)": ["2", "0", "1", "100.0% (1/1)", "0.0% (0/1)", "100.0% (1/1)", "100.0% (1/1)"],
        "all": EXPECTED_BY_BENCHMARK["MathVista"],
    },
}


def without_ci(table):
    ci = table.headers.index("95% CI")
    return {cells[0]: cells[1:ci] + cells[ci + 1:] for cells in table.rows}


def test_accuracy_by_benchmark_gives_known_numbers_errors_and_intervals():
    table = tb.accuracy_by(st.views(SELF_ROWS), "self", "source", "benchmark")
    assert table.headers == ["benchmark", "n", "errors", "with gold", "accuracy", "95% CI", "pass@1", "maj@k", "pass@k"]
    assert without_ci(table) == EXPECTED_BY_BENCHMARK
    assert list(without_ci(table)) == list(EXPECTED_BY_BENCHMARK)
    # Wilson intervals (checked against Newcombe 1998 in test_report_explain.py), over rows with gold
    assert [cells[5] for cells in table.rows] == ["[4.6%, 69.9%]", "[20.8%, 93.9%]", "[15.8%, 75.0%]"]
    assert "Wilson" in table.note


def test_subject_and_level_tables_stay_within_their_benchmark():
    tables = tb.accuracy_tables(st.views(SELF_ROWS))
    assert [t.title for t in tables] == [
        "Accuracy by benchmark (self mode)",
        "Accuracy by subject: MathVision (self mode)",
        "Accuracy by level: MathVision (self mode)",
        "Accuracy by subject: MathVista (self mode)",
        "Accuracy by level: MathVista (self mode)",
    ]
    for table in tables[1:]:
        source, key = table.title.split(": ")[1].split(" (")[0], table.title.split(" by ")[1].split(":")[0]
        assert without_ci(table) == EXPECTED_WITHIN[(source, key)]
        assert list(without_ci(table)) == list(EXPECTED_WITHIN[(source, key)])
    assert len({t.anchor for t in tables}) == len(tables)  # one anchor per table


def test_curve_from_attempts_in_order():
    points = st.attempts_curve(st.views(SELF_ROWS))
    # pass@j: any of the first j correct; maj@j: most common of the first j (ties: the first seen)
    assert [(p.j, round(p.pass_at_j * 7), round(p.maj_at_j * 7)) for p in points] == [(1, 2, 2), (2, 4, 2), (3, 5, 3)]
    last = points[-1]  # at j = k the curve agrees with the rows' own pass@k and maj@k
    rates = st.rates(st.views(SELF_ROWS))
    assert (last.pass_at_j, last.maj_at_j) == (rates.share(rates.pass_at_k), rates.share(rates.maj_at_k))


def test_attempts_tokens_and_errors():
    views = st.views(SELF_ROWS)
    assert table_rows(tb.attempts_table(views)) == {"0": ["2", "25.0%"], "1": ["2", "25.0%"], "2": ["1", "12.5%"], "3": ["3", "37.5%"]}
    tokens = table_rows(tb.tokens_table(views))
    # tokens of the rows that reached the engine: 100..600; p90 interpolates 500..600
    assert tokens["all"][:5] == ["6", "350", "350", "550", "600"]
    assert tokens["MathVision"][:5] == ["3", "200", "200", "280", "300"]
    errors = tb.errors_table(views)
    assert errors.headers[:5] == ["stage", "reason", "rows", "benchmarks", "example id"]
    assert [r[:5] for r in errors.rows] == [["bad image", "other image error", "1", "MathVision", "r8"],
                                            ["solve failed", "EngineError", "1", "MathVista", "r6"]]
    assert st.error_reason("solve failed: EngineError: boom") == "solve failed"
    assert st.percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)  # numpy's default (linear)
    assert table_rows(tb.issues_table(views)) == {}  # no issue on final answers or attempts here


def test_headline_table_text():
    text = headline_table(SELF_ROWS)
    lines = text.splitlines()
    assert lines[1].split()[:13] == ["mode", "problems", "errors", "verified", "with", "gold", "not", "judged", "accuracy",
                                     "95%", "CI", "pass@1", "maj@k"]
    # 13 attempts / 8 rows; the Wilson interval of 3/7 is two tokens
    assert lines[3].split() == ["self", "8", "2", "6", "7", "0", "42.9%", "[15.8%,", "75.0%]", "28.6%", "42.9%", "71.4%", "1.62", "350"]
    assert "gold never read while solving" in text and "Wilson" in text


def test_a_comparison_that_was_not_judged_is_shown_as_such(tmp_path):
    """The score stage leaves `correct` None when the verifier timed out: the report counts it apart."""
    timed_out = row("t1", "MathVision", "algebra", 1, [attempt("9^{9^{9}}", None)], (None, False, False, False))
    rows = SELF_ROWS[:5] + [timed_out]
    cells = table_rows(tb.headline(st.views(rows)))["self"]
    assert cells[3:6] == ["6", "1", "50.0%"]  # with gold, not judged, accuracy (3 of 6: not judged is not correct)
    write_parquet(tmp_path, rows)
    summary = summarize_output(tmp_path, rows_in=6, seconds=1.0)
    assert summary.not_judged == 1 and summary.correct == 3 and "1 not judged" in "\n".join(summary.lines())


def test_headline_agrees_with_job_summary(self_dir):
    summary = summarize_output(self_dir, rows_in=8, seconds=1.0)
    cells = table_rows(tb.headline(st.views(read_output(self_dir).to_pylist())))["self"]
    assert cells[:4] == [str(summary.rows_out), str(summary.errors), str(summary.verified), str(summary.with_gold)]
    assert cells[4] == str(summary.not_judged)
    assert cells[5] == f"{summary.accuracy:.1%}" and cells[9] == f"{summary.pass_at_k:.1%}"
    assert cells[6] == tb.ci(summary.correct, summary.with_gold)


# ---------------------------------------------------------------- oracle honesty


def test_oracle_rows_are_labelled_pass_at_k_never_accuracy():
    views = st.views(ORACLE_ROWS)
    assert {v.mode for v in views} == {"oracle"}  # the error row joins its job's mode
    table = tb.headline(views)
    assert "accuracy" not in table.headers  # an oracle-only job has no accuracy column at all
    assert table_rows(table)["ORACLE"][3:8] == ["4", "0", "25.0%", "25.0%", "50.0%"]
    tables = tb.accuracy_tables(views)
    assert len(tables) == 3  # benchmark; subject and level within MathVision
    for table in tables:
        assert "accuracy" not in table.headers and "Accuracy" not in table.title
        assert "ORACLE" in table.title and "pass@k" in table.title
        assert table.headers[-1] == "pass@k 95% CI"  # the interval is on pass@k, never called accuracy
        assert table_rows(table)["all"] == ["4", "1", "4", "25.0% (1/4)", "25.0% (1/4)", "50.0% (2/4)", "[15.0%, 85.0%]"]
    curve = tb.curve_table(views, "oracle")
    assert "ORACLE" in curve.title and "not accuracy" in curve.note


def test_modes_are_never_pooled():
    views = st.views(SELF_ROWS + ORACLE_ROWS)
    with pytest.raises(ValueError):
        st.rates(views)
    with pytest.raises(ValueError):
        st.attempts_curve(views)
    headline = table_rows(tb.headline(views))
    assert list(headline) == ["self", "ORACLE", "all"]
    assert headline["ORACLE"][5] == "n/a: oracle"  # the accuracy column holds no oracle figure
    assert headline["all"][3:10] == ["", "", "", "", "", "", ""]  # totals carry no accuracy figure
    # with two modes there is no job mode to give the attempt-less error row o4: it stays `self` (3/8)
    assert headline["self"][3:6] == ["8", "0", "37.5%"]
    titles = [t.title for t in tb.accuracy_tables(views)]
    assert sum("ORACLE" in t for t in titles) == 3 and sum("self mode" in t for t in titles) == 5


# ---------------------------------------------------------------- rendered files


class BalancedParser(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags, self.images, self.problems = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def parse_html(text):
    parser = BalancedParser()
    parser.feed(text)
    parser.close()
    assert not parser.problems and not parser.stack, (parser.problems, parser.stack)
    return parser


def png_images(parser):
    out = []
    for img in parser.images:
        match = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", img["src"])
        assert match, img["src"][:60]
        data = base64.b64decode(match.group(1), validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        out.append((img["alt"], data))
    return out


def test_report_files_self(self_dir, tmp_path):
    written = write_report(self_dir, tmp_path / "rep")
    page = written["report.html"].read_text(encoding="utf-8")
    parser = parse_html(page)
    assert "script" not in parser.tags  # model text stayed text
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert not re.search(r"(src|href)=\"(?!data:)", page) and "<link" not in page  # no external assets
    images = png_images(parser)
    assert [alt for alt, _ in images] == ["pass@j vs attempts (self mode)", "Tokens per problem"]
    assert written["attempts_self.png"].read_bytes() == images[0][1]

    md = written["report.md"].read_text(encoding="utf-8")
    assert SCRIPT not in md and "&lt;script&gt;" in md
    assert "| MathVista | 4 | 1 | 3 | 66.7% (2/3) | \\[20.8%, 93.9%\\] | 33.3% (1/3) | 66.7% (2/3) | 66.7% (2/3) |" in md
    assert "![pass@j vs attempts (self mode)](attempts_self.png)" in md
    assert "| bad image | other image error | 1 | MathVision | r8 |" in md


def test_report_files_oracle(oracle_dir):
    written = write_report(oracle_dir)  # default: DIR.report beside DIR
    assert written["report.html"].parent == oracle_dir.with_name("oracle.report")
    page = written["report.html"].read_text(encoding="utf-8")
    images = png_images(parse_html(page))
    assert [alt for alt, _ in images] == ["pass@j vs attempts (ORACLE mode)", "Tokens per problem"]
    md = written["report.md"].read_text(encoding="utf-8")
    assert "Accuracy by" not in md and "| accuracy |" not in md
    assert "### ORACLE mode: pass@1, maj@k, pass@k by benchmark" in md
    # nothing was written among the part files
    assert sorted(p.name for p in oracle_dir.iterdir()) == ["part-0.parquet"]
    assert read_output(oracle_dir).num_rows == len(ORACLE_ROWS)


def test_cli_report(self_dir, tmp_path, capsys):
    from qvq_ray.cli import main

    assert main(["report", str(self_dir), "--out", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "42.9%" in out and str(tmp_path / "cli" / "report.html") in out
    assert (tmp_path / "cli" / "report.md").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2


@pytest.mark.parametrize("rows", [SELF_ROWS, ORACLE_ROWS, SELF_ROWS + ORACLE_ROWS], ids=["self", "oracle", "both"])
def test_the_headline_read_a_part_file_at_a_time_equals_the_one_of_all_rows(tmp_path, rows):
    """The CLI's headline after a job sums part files one at a time (a million-row job is never held);
    it must be the table of all rows at once, error rows of an oracle job counted in the oracle line."""
    from qvq_ray.report.summary import headline_table, output_headline, read_output, summarize_output

    out = tmp_path / "out"
    for index, one in enumerate(rows):  # one row per part file: the worst case for the per-file reading
        write_parquet(out, [one], name=f"part-{index:03d}.parquet")
    assert output_headline(out) == headline_table(read_output(out))
    # the job's summary carries the same headline from its own single pass (what `solve` prints)
    assert summarize_output(out, rows_in=len(rows), seconds=0).headline == headline_table(read_output(out))
