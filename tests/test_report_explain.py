"""`qvq-ray report` explains a run: where its files go, why rows failed, how sure a figure is,
what each problem got, and how two runs differ.

Rows are built with the project's records (Problem, Solution, `solution_to_row`, `error_row`) and
error rows with the pipeline's own stages and image loader, so the messages the report classifies
are the ones a job writes. Everything is written as Parquet and read back through the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest

from qvq_ray.results.metrics import score_unanswered
from qvq_ray.batch.stages import PrepareImages, RowStage, ScoreAgainstGold, SolveProblems
from qvq_ray.cli import main
from qvq_ray.config import ImageLimits, QvqConfig, SamplingConfig
from qvq_ray.engines.base import EngineError
from qvq_ray.image_files import ImageRoots
from qvq_ray.images import ImageError, decode_image, load_image_bytes
from qvq_ray.problem import Attempt, ImageRef, Problem, Solution, error_row, problem_to_row, solution_schema, solution_to_row
from qvq_ray.report import compare as cmp
from qvq_ray.report import problems as rp
from qvq_ray.report import stats as st
from qvq_ray.report import tables as tb
from qvq_ray.verify.verdict import Verdict

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

CONFIG_JSON = QvqConfig.preset("tiny-cpu").model_dump_json()
INJECTION = "<script>document.body.setAttribute('data-pwned','1')</script><img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"


# ---------------------------------------------------------------- rows from the project's records


def problem(pid, source="MathVision", subject="algebra", level=1, question=None, images=(), answer="1"):
    return Problem(id=pid, question=question or f"What is {pid}?", images=[ImageRef(path=str(p)) for p in images],
                   answer=answer, source=source, subject=subject, meta={"level": level} if level is not None else {})


def solved(prob: Problem, answers, *, mode="self", tokens=120):
    """The output row of a solved problem: `answers` is [(answer, correct)], the last one chosen;
    scores filled as the score stage does (pass@1: first; maj@k: most common; pass@k: any)."""
    attempts = [Attempt(text=f"reasoning... \\boxed{{{a}}}", sampling=SamplingConfig(), prompt_tokens=40,
                        completion_tokens=tokens, finish_reason="stop", verdict=Verdict(answer=a, canonical=a))
                for a, _ in answers]
    solution = Solution(id=prob.id, answer=answers[-1][0], verdict=attempts[-1].verdict, mode=mode,
                        chosen_attempt=len(attempts) - 1, attempts=attempts, prompt_tokens=40 * len(attempts),
                        completion_tokens=tokens * len(attempts), latency_s=1.0)
    row = solution_to_row(solution, prob)
    for attempt, (_, correct) in zip(row["attempts"], answers):
        attempt["correct"] = correct
    given = [a for a, _ in answers]
    majority = max(given, key=given.count)
    row.update(correct=answers[-1][1], pass_at_1=answers[0][1] is True,
               maj_at_k=dict(answers).get(majority) is True, pass_at_k=any(c is True for _, c in answers))
    return row


def run_stage(stage: RowStage, prob: Problem) -> str:
    """The error a pipeline stage writes for this problem (RowStage's own failure labelling)."""
    row = {**problem_to_row(prob), "error": None}
    out = asyncio.run(stage._one(row))
    assert out["error"], out
    return out["error"]


class Failing(RowStage):
    """A stage whose work raises, labelled like the solve or score stage."""

    def __init__(self, label, exc):
        super().__init__(CONFIG_JSON)
        self.failure_label, self.exc = label, exc

    def carry(self, row):
        return row

    async def process(self, row):
        raise self.exc


def failed(prob: Problem, reason: str, mode="self"):
    """The error row the pipeline writes: the solve stage's carry, then the score stage's."""
    return score_unanswered(error_row(prob.id, reason, prob, mode=mode))


def write_run(directory: Path, rows, name="part-00000.parquet") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=solution_schema()), directory / name)
    return directory


def png(path: Path, size=(400, 300), color=(200, 30, 30)) -> Path:
    from PIL import Image

    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def pipeline_errors(tmp_path):
    """One error message per kind, each produced by the code that writes it in a job."""
    prepare = PrepareImages(CONFIG_JSON, ImageRoots.of([tmp_path]))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image, whatever its name says" * 4)
    return {
        "missing": run_stage(prepare, problem("m", images=[tmp_path / "nowhere" / "1.jpg"])),
        "url": run_stage(prepare, problem("u", images=["https://example.com/1.png"])),
        "decode": run_stage(prepare, problem("d", images=[garbage])),
        "solve": run_stage(Failing(SolveProblems.failure_label, EngineError("engine died")), problem("s")),
        "score": run_stage(Failing(ScoreAgainstGold.failure_label, TimeoutError("verifier hung")), problem("c")),
    }


# ---------------------------------------------------------------- 1. report files never among the part files


def test_report_never_lands_among_the_part_files(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    import pyarrow.dataset as pads

    rows = [solved(problem(f"p{i}"), [("1", True)], tokens=100 + i) for i in range(3)]  # tokens vary: a histogram
    run = write_run(tmp_path / "run", rows)
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    report = tmp_path / "run.report"
    assert str(report / "report.html") in out
    assert {p.name for p in report.iterdir()} >= {"report.md", "report.html", "tokens.png"}
    assert [p.name for p in run.iterdir()] == ["part-00000.parquet"]
    # what users do next with the output directory
    assert len(pd.read_parquet(run)) == 3
    assert pads.dataset(run, format="parquet").to_table().num_rows == 3


def test_an_underscore_folder_inside_the_output_is_skipped_by_readers(tmp_path):
    pd = pytest.importorskip("pandas")
    import pyarrow.dataset as pads

    run = write_run(tmp_path / "run", [solved(problem(f"p{i}"), [("1", True)], tokens=100 + i) for i in range(2)])
    assert main(["report", str(run), "--report-dir", str(run / "_report")]) == 0
    assert (run / "_report" / "report.html").is_file() and (run / "_report" / "tokens.png").is_file()
    assert len(pd.read_parquet(run)) == 2
    assert pads.dataset(str(run)).to_table().num_rows == 2


@pytest.mark.parametrize("inside", ["report", "plots/report", "."])
def test_a_report_folder_parquet_readers_would_read_is_refused(tmp_path, capsys, inside):
    run = write_run(tmp_path / "run", [solved(problem("p"), [("1", True)])])
    assert main(["report", str(run), "--report-dir", str(run / inside)]) == 2
    err = capsys.readouterr().err
    assert "qvq-ray report:" in err and "Traceback" not in err and "output directory" in err
    assert [p.name for p in run.iterdir()] == ["part-00000.parquet"]


# ---------------------------------------------------------------- 2. why rows failed


def test_error_messages_are_told_apart_by_reason(pipeline_errors, tmp_path):
    assert st.error_kind(pipeline_errors["missing"]) == ("bad image", "image file missing")
    assert st.error_kind(pipeline_errors["url"]) == ("bad image", "image URLs disabled")
    assert st.error_kind(pipeline_errors["decode"]) == ("bad image", "image decode error")
    assert st.error_kind(pipeline_errors["solve"]) == ("solve failed", "EngineError")
    assert st.error_kind(pipeline_errors["score"]) == ("score failed", "TimeoutError")

    # more of the image loader's own messages, raised by the loader itself
    def kind(call):
        with pytest.raises(ImageError) as info:
            call()
        return st.error_kind(f"bad image: ImageError: {info.value}")[1]

    small = ImageLimits(max_bytes=64, max_pixels_decoded=100)
    big = png(tmp_path / "big.png", size=(50, 50))
    assert kind(lambda: load_image_bytes(str(big), limits=small)) == "image over limits"
    assert kind(lambda: decode_image(big.read_bytes(), ImageLimits(max_pixels_decoded=100))) == "image over limits"
    assert kind(lambda: load_image_bytes("data:text/plain;base64,aGVsbG8=")) == "image decode error"
    assert kind(lambda: load_image_bytes(str(tmp_path))) == "image file missing"  # a folder, not a file
    assert kind(lambda: decode_image(big.read_bytes()[:80])) == "image decode error"  # truncated
    # loader and other messages keep their stage
    assert st.error_kind("bad input row: line 3: not JSON") == ("bad input row", "unreadable row")
    assert st.error_kind("duplicate id 'x'") == ("bad input row", "duplicate id")
    assert st.error_kind("engine failed on attempt 2: boom")[0] == "solve failed"


def test_per_benchmark_tables_show_errors_and_their_reasons(pipeline_errors, tmp_path):
    """MathVista run without its images folder: 0% is explained, not silent; reasons stay apart."""
    rows = [solved(problem("v1", "MathVision"), [("1", True)]),
            solved(problem("v2", "MathVision"), [("2", False)]),
            failed(problem("v3", "MathVision"), pipeline_errors["url"]),
            failed(problem("v4", "MathVision"), pipeline_errors["solve"])]
    rows += [failed(problem(f"m{i}", "MathVista", subject="geometry"), pipeline_errors["missing"]) for i in range(3)]
    run = write_run(tmp_path / "run", rows)
    assert main(["report", str(run)]) == 0
    views = st.views(rows)

    by_benchmark = {r[0]: r for r in tb.accuracy_by(views, "self", "source", "benchmark").rows}
    assert by_benchmark["MathVista"][1:5] == ["3", "3", "3", "0.0% (0/3)"]  # n, errors, with gold, accuracy
    assert by_benchmark["MathVision"][1:5] == ["4", "2", "4", "25.0% (1/4)"]

    errors = tb.errors_by_benchmark(views)
    assert errors.headers[:3] == ["benchmark", "rows", "errors"]
    column = {h: i for i, h in enumerate(errors.headers)}
    cells = {r[0]: r for r in errors.rows}
    assert cells["MathVista"][column["bad image: image file missing"]] == "3"
    assert cells["MathVista"][column["bad image: image URLs disabled"]] == "0"
    assert cells["MathVision"][column["bad image: image URLs disabled"]] == "1"
    assert cells["MathVision"][column["solve failed: EngineError"]] == "1"
    assert cells["all"][2] == "5"

    reasons = {(r[0], r[1]): r for r in tb.errors_table(views).rows}
    assert reasons[("bad image", "image file missing")][2:4] == ["3", "MathVista"]
    assert reasons[("bad image", "image URLs disabled")][2:4] == ["1", "MathVision"]

    md = (tmp_path / "run.report" / "report.md").read_text(encoding="utf-8")
    assert "### Errors by benchmark" in md
    assert "| MathVista | 3 | 3 |" in md and "bad image: image file missing" in md


def test_subjects_are_never_pooled_across_benchmarks():
    """'algebra' at 100% in one benchmark and 0% in the other is two rows in two tables, not 50%."""
    rows = [solved(problem(f"a{i}", "MathVision", "algebra"), [("1", True)]) for i in range(2)]
    rows += [solved(problem(f"b{i}", "MathVista", "algebra"), [("9", False)]) for i in range(2)]
    tables = tb.accuracy_tables(st.views(rows))
    subject = {t.title: {r[0]: r for r in t.rows} for t in tables if " by subject" in t.title}
    assert set(subject) == {"Accuracy by subject: MathVision (self mode)", "Accuracy by subject: MathVista (self mode)"}
    assert subject["Accuracy by subject: MathVision (self mode)"]["algebra"][4] == "100.0% (2/2)"
    assert subject["Accuracy by subject: MathVista (self mode)"]["algebra"][4] == "0.0% (0/2)"


# ---------------------------------------------------------------- 95% intervals and the paired test


@pytest.mark.parametrize("k,n,lo,hi", [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605),
                                       (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_newcombe_1998(k, n, lo, hi):
    """Newcombe, Statistics in Medicine 17 (1998) 857-872, table I, method 3 (Wilson, no correction)."""
    got = st.wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=6e-5)


def test_wilson_interval_edges():
    assert st.wilson_interval(0, 0) is None and tb.ci(0, 0) == "n/a"
    lo, hi = st.wilson_interval(10, 10)
    assert hi <= 1.0 and hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)  # never past 1
    with pytest.raises(ValueError):
        st.wilson_interval(3, 2)


def binomial_two_sided(b, c):
    """Reference: two-sided exact binomial test of b successes in b + c at p = 1/2, by summing the
    probabilities of all outcomes no likelier than the observed one (float pmf, independent code)."""
    n = b + c
    pmf = [math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)) for i in range(n + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[b] * (1 + 1e-9)))


@pytest.mark.parametrize("b,c", [(0, 0), (2, 8), (8, 2), (1, 6), (5, 5), (0, 12), (13, 30), (40, 70)])
def test_exact_mcnemar(b, c):
    assert st.mcnemar_exact(b, c) == pytest.approx(binomial_two_sided(b, c), rel=1e-9)
    assert st.mcnemar_exact(b, c) == st.mcnemar_exact(c, b)


def test_exact_mcnemar_known_values():
    assert st.mcnemar_exact(2, 8) == pytest.approx(112 / 1024)  # 2 * (1 + 10 + 45) / 2^10
    assert st.mcnemar_exact(0, 0) == 1.0 and st.mcnemar_exact(3, 3) == 1.0
    assert 0.0 <= st.mcnemar_exact(0, 3000) < 1e-300  # big counts stay exact integers, no overflow


# ---------------------------------------------------------------- 3. per-problem view


class Dom(HTMLParser):
    """Elements of a page as (tag, attrs, text inside) plus the open/close balance."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.elements, self.stack, self.problems = [], [], []

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": []}
        self.elements.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1]["tag"] != tag:
            self.problems.append(tag)
        else:
            self.stack.pop()

    def handle_data(self, data):
        for element in self.stack:
            element["text"].append(data)

    def find(self, tag, cls=None):
        return [e for e in self.elements if e["tag"] == tag and (cls is None or cls in e["attrs"].get("class", "").split())]


def dom(text):
    parser = Dom()
    parser.feed(text)
    parser.close()
    assert not parser.problems and not parser.stack
    return parser


def view_run(tmp_path, pipeline_errors):
    """A run with every status, an injected question, and a problem set with images for thumbnails."""
    img1, img2 = png(tmp_path / "one.png"), png(tmp_path / "two.png", size=(1200, 90), color=(20, 20, 220))
    img3 = png(tmp_path / "three.png")
    problems = [
        problem("ok", question="2 - 1 = ?", images=[img1]),
        problem("inj", question=f"Which is larger? {INJECTION}", images=[img2, img1]),
        problem("nogold", answer=None),
        problem("err", images=[tmp_path / "missing.png"]),
        problem("gone", images=[img3]),
    ]
    rows = [
        solved(problems[0], [("3", False), ("1", True)]),
        solved(problems[1], [("<b>7</b>", False), ("8", False)]),
        solved(problems[2], [("5", None)]),
        failed(problems[3], pipeline_errors["missing"]),
        solved(problems[4], [("1", True)]),
    ]
    problem_file = tmp_path / "problems.jsonl"
    with open(problem_file, "w", encoding="utf-8") as f:
        for p in problems:
            data = p.model_dump(mode="json")
            data["images"] = [im["path"] for im in data["images"]]
            f.write(json.dumps(data) + "\n")
    img3.unlink()  # deleted since the run: no thumbnail, and the card says why
    return write_run(tmp_path / "run", rows), problem_file


def test_per_problem_view_shows_question_thumbnail_attempts_and_gold(tmp_path, pipeline_errors):
    run, problem_file = view_run(tmp_path, pipeline_errors)
    assert main(["report", str(run), "--problems", str(problem_file)]) == 0
    page = (tmp_path / "run.report" / "report.html").read_text(encoding="utf-8")
    d = dom(page)

    cards = d.find("details", "problem")
    assert [c["attrs"]["data-id"] for c in cards] == ["err", "inj", "nogold", "ok", "gone"]  # failures first
    assert [c["attrs"]["data-status"] for c in cards] == ["error", "wrong", "no gold", "correct", "correct"]

    # untrusted text stays text: no script element, no handler attribute, the question shown escaped
    assert not d.find("script") and not any(k.startswith("on") for e in d.elements for k in e["attrs"])
    assert "Which is larger? &lt;script&gt;document.body.setAttribute(" in page
    assert "&lt;b&gt;7&lt;/b&gt;" in page

    thumbs = d.find("img", "thumb")
    assert [t["attrs"]["alt"] for t in thumbs] == ["first image of inj", "first image of ok"]
    from PIL import Image

    for thumb in thumbs:
        prefix = "data:image/jpeg;base64,"
        assert thumb["attrs"]["src"].startswith(prefix)
        image = Image.open(io.BytesIO(base64.b64decode(thumb["attrs"]["src"][len(prefix):], validate=True)))
        assert image.format == "JPEG" and max(image.size) <= rp.THUMB_PX
    assert Image.open(io.BytesIO(base64.b64decode(thumbs[0]["attrs"]["src"].split(",")[1]))).size == (160, 12)  # 1200x90
    err_text = "".join(cards[0]["text"])
    assert "image not shown: image file missing" in err_text and "bad image: ImageError: image file not found" in err_text

    assert "image not shown: image file missing" in "".join(cards[4]["text"])  # "gone": deleted since
    assert "imagethe first of 2 images" in "".join(cards[1]["text"])
    ok = cards[3]
    text = "".join(ok["text"])
    assert "2 - 1 = ?" in text and "gold1" in text and "final answer1" in text and "240 over 2 attempt(s)" in text
    after = d.elements[d.elements.index(ok):]
    cells = ["".join(r["text"]) for r in [e for e in after if e["tag"] == "tr"][:3]]
    assert cells[0].startswith("attempt") and "3" in cells[1] and "wrong" in cells[1] and "120" in cells[1]
    assert cells[2].startswith("2 (chosen)") and "correct" in cells[2]
    verdicts = [("".join(e["text"])) for e in d.find("td", "verdict")]
    assert verdicts == ["wrong", "wrong", "not scored", "wrong", "correct", "correct"]  # inj x2, nogold, ok x2, gone


def test_per_problem_view_without_the_problem_set_says_how_to_get_thumbnails(tmp_path, pipeline_errors):
    run, _ = view_run(tmp_path, pipeline_errors)
    assert main(["report", str(run)]) == 0
    page = (tmp_path / "run.report" / "report.html").read_text(encoding="utf-8")
    assert not dom(page).find("img", "thumb")
    assert "--problems INPUT" in page
    md = (tmp_path / "run.report" / "report.md").read_text(encoding="utf-8")
    assert "| err | MathVision | error |" in md  # a line per problem in Markdown too
    assert main(["report", str(run), "--problems", str(tmp_path / "nope.jsonl")]) == 2  # one line, no traceback


def test_per_problem_view_is_bounded(tmp_path):
    """300 problems with long questions and 40 attempts each: 20 shown, text clipped, size bounded."""
    long_question = "x" * 20_000
    rows = []
    for i in range(300):
        answers = [(str(j), False) for j in range(39)] + [("1", i % 3 == 0)]
        rows.append(solved(problem(f"p{i:03d}", question=long_question + f" #{i}"), answers))
    run = write_run(tmp_path / "run", rows)
    assert main(["report", str(run), "--max-problems", "20"]) == 0
    page = (tmp_path / "run.report" / "report.html").read_text(encoding="utf-8")
    d = dom(page)
    cards = d.find("details", "problem")
    assert len(cards) == 20 and all(c["attrs"]["data-status"] == "wrong" for c in cards)
    assert "Showing 20 of 300 problems (200 wrong, 100 correct)" in page
    assert "40 more attempts" not in page and f"{40 - rp.MAX_ATTEMPTS} more attempts not listed." in page
    assert long_question not in page and "x" * (rp.QUESTION_CHARS - 1) + "…" in page
    assert len(page.encode()) < 20 * 8_000 + 200_000  # cards stay small; plots and tables the rest
    assert main(["report", str(run), "--max-problems", "0", "--report-dir", str(tmp_path / "none")]) == 0
    assert not dom((tmp_path / "none" / "report.html").read_text(encoding="utf-8")).find("details", "problem")


# ---------------------------------------------------------------- 4. two runs compared


def two_runs(tmp_path):
    """A and B share 10 MathVision + 6 MathVista ids with gold; A has 1 id B lacks, B has 2 A lacks."""
    a_rows, b_rows = [], []
    # MathVision: A right on 0-3; B right on 0-8 (5 gained, none lost)
    for i in range(10):
        subject = "algebra" if i < 5 else "geometry"
        p = problem(f"v{i}", "MathVision", subject)
        a_rows.append(solved(p, [("1", True)] if i < 4 else [("2", False)]))
        b_rows.append(solved(p, [("1", True)] if i < 9 else [("2", False)]))
    # MathVista: A right on 0-3, B right on 2-5 (2 lost, 2 gained)
    for i in range(6):
        p = problem(f"s{i}", "MathVista", "statistics")
        a_rows.append(solved(p, [("1", True)] if i < 4 else [("2", False)]))
        b_rows.append(solved(p, [("1", True)] if i >= 2 else [("2", False)]))
    a_rows.append(solved(problem("only-a"), [("1", True)]))
    b_rows += [solved(problem("only-b1"), [("1", True)]), solved(problem("only-b2"), [("2", False)])]
    b_rows.append(solved(problem("nog", answer=None), [("1", None)]))
    a_rows.append(solved(problem("nog", answer=None), [("1", None)]))
    return write_run(tmp_path / "run-a", a_rows), write_run(tmp_path / "run-b", b_rows)


def test_comparison_tables(tmp_path):
    from qvq_ray.report.summary import read_output

    a, b = two_runs(tmp_path)
    rows_a, rows_b = read_output(a).to_pylist(), read_output(b).to_pylist()
    pairing = cmp.pair(st.views(rows_a), st.views(rows_b))
    assert (len(pairing.pairs), pairing.only_a, pairing.only_b, pairing.no_gold) == (16, 1, 2, 1)
    blocks, notes, overall = cmp.comparison_blocks(rows_a, rows_b, "A", "B")
    table = {r[0]: r for r in overall.rows}
    assert overall.headers[:8] == ["benchmark", "shared", "A accuracy", "B accuracy", "delta (B-A)",
                                   "B right, A wrong", "A right, B wrong", "McNemar p"]
    assert table["MathVision"][1:8] == ["10", "40.0%", "90.0%", "+50.0 pp", "5", "0", "0.0625"]  # 2 / 2^5
    assert table["MathVista"][1:8] == ["6", "66.7%", "66.7%", "+0.0 pp", "2", "2", "1"]
    assert table["all"][1:8] == ["16", "50.0%", "81.2%", "+31.2 pp", "7", "2", f"{st.mcnemar_exact(7, 2):.3g}"]
    assert st.mcnemar_exact(7, 2) == pytest.approx(2 * (1 + 9 + 36) / 512)
    subjects = [blk for blk in blocks if getattr(blk, "title", "").startswith("B vs A by subject")]
    assert [t.title for t in subjects] == ["B vs A by subject: MathVision", "B vs A by subject: MathVista"]
    algebra = {r[0]: r for r in subjects[0].rows}["algebra"]
    assert algebra[1:8] == ["5", "80.0%", "100.0%", "+20.0 pp", "1", "0", "1"]
    assert "only in A: 1; only in B: 2" in notes[1]


def test_cli_compares_two_runs(tmp_path, capsys):
    a, b = two_runs(tmp_path)
    assert main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "B vs A by benchmark" in out and "+50.0 pp" in out and "McNemar" in out
    target = tmp_path / "run-b.vs-run-a.report"
    page = (target / "report.html").read_text(encoding="utf-8")
    d = dom(page)
    assert "only in A: 1; only in B: 2" in page and "exact McNemar" in page
    assert [h["attrs"].get("id") for h in d.find("h3")][:1] == ["differences"]  # what differs comes first
    ids = [h["attrs"].get("id") for h in d.find("h3")]
    assert ids.index("runs") + 1 == ids.index("compare-source")
    assert [p.name for p in a.iterdir()] == [p.name for p in b.iterdir()] == ["part-00000.parquet"]
    assert main(["report", str(a), str(b), str(a)]) == 2
    assert "two" in capsys.readouterr().err


# ---------------------------------------------------------------- 5. a real browser


def chromium():
    import shutil

    for name in ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(chromium() is None, reason="no Chromium: apt-get install -y --no-install-recommends chromium-headless-shell")
def test_report_renders_in_headless_chromium(tmp_path, pipeline_errors):
    import subprocess

    run, problem_file = view_run(tmp_path, pipeline_errors)
    assert main(["report", str(run), "--problems", str(problem_file)]) == 0
    page = tmp_path / "run.report" / "report.html"
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rendered = dom(done.stdout)  # the DOM after the browser parsed (and would have run) the page
    body = rendered.find("body")[0]
    assert "data-pwned" not in body["attrs"]  # the injected script and handler never ran
    assert not rendered.find("script")
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert len(rendered.find("details", "problem")) == 5
    assert len(rendered.find("img", "thumb")) == 2
    assert [h["attrs"].get("id") for h in rendered.find("h3")][:2] == ["run", "headline"]
    titles = ["".join(h["text"]) for h in rendered.find("h3")]
    assert "Accuracy by benchmark (self mode)" in titles and "Errors by benchmark" in titles
    assert len(rendered.find("table")) >= 8
