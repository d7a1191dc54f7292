"""Verifier throughput and latency on one core, side by side with math-verify's parse + verify.

The same cases go to both: the OlympiadBench judge's vectors, the gold answers of the shared
benchmark samples (each against itself in a QVQ-style response and against a perturbed value),
the anchor graders' faults, and hostile inputs. Both run pinned to CPU 0:

- qvq-ray: `Verifier(workers=1, timeout_s=T).check_sync(response, spec, gold=...)`, the
  worker process inheriting the pin;
- math-verify: `verify(parse(gold), parse(response))` with its defaults (its own 5 s signal
  timeouts), in a child process that a watchdog kills when one call outlives T + grace (big-integer
  work no signal interrupts), restarting it at the next case.

The judge's vectors and the golds are read from the shared benchmark samples (`../shared/data`,
see benchmarks/shared_data.py) through our loaders; when they are absent those cases are left out
(the reason is printed) and the rest still runs.

Reported per side: cases, calls that returned within T, calls past T, cases/s (all cases, and on
the cases math-verify returned), p50/p95 latency, and agreement with the labels. The last line
is one JSON object with every figure.

    python benchmarks/verifier.py [--timeout 5] [--limit N] [--grace 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.shared_data import shared_data  # noqa: E402

BENCHMARKS = ("mathvision", "mathvista", "mmmu", "olympiadbench")

QVQ = "So, I've got this problem. Let me work through it step by step.\n\n**Final Answer**\n\n\\[ \\boxed{{{}}} \\]"

ANCHORS = [  # (gold, answer, problem, right verdict)
    ("$\\frac{1}{2006!}$", "\\frac{1}{2004!}", {}, False),
    ("\\dfrac{9}{7}", "\\frac{9}{7}", {}, True),
    ("1-\\sqrt2", "1", {}, False),
    ("4", "4\\sqrt(2)", {}, False),
    ("C", "\\text{(C)}", {"choices": ["1", "2", "Not exist"]}, True),
    ("C", "Not exist", {"choices": ["1", "2", "Not exist"]}, True),
    ("500 kg", "500 g", {}, False),
    ("0.5 kg", "500 g", {}, True),
    ("1,-2", "1,-3", {}, False),
    ("x=2", "y=2", {}, False),
    ("0.64N", "0.64", {}, False),
    ("\\pi", "3.14", {}, False),
]
HOSTILE = [  # (gold, answer): the right verdict is False (or None with the issue timeout)
    ("7", "9^{9^{9^{9}}}"),
    ("1", "10^{10^{10^{10}}}"),
    ("5", "(10^7)!"),
    ("7", "(" * 20_000 + "1" + ")" * 20_000),
    ("7", "\u200b1\u200b2\u200d"),
    ("0", "__import__('os').system('true')"),
    ("9^{9^{9^{9}}}", "x + 1"),
    ("7", "2^{2^{2^{2^{2^{2}}}}}"),
]


def build_cases(limit: int | None) -> list[dict]:
    from qvq_ray.datasets import load_problems
    from qvq_ray.problem import Problem
    from qvq_ray.verify.numbers import parse_number
    from qvq_ray.verify.spec import AnswerSpec

    cases: list[dict] = []
    scoring_examples = shared_data("olympiadbench/eval/scoring_examples.json")
    for group in json.loads(scoring_examples.read_text(encoding="utf-8")) if scoring_examples else []:
        for case in group["Ans"]:
            cases.append(
                {"kind": "olympiadbench", "gold": group["GT"], "response": QVQ.format(case["answer"]),
                 "spec": AnswerSpec(tolerance=case.get("precision")), "label": case["equal"]}
            )
    problems = [
        p
        for benchmark in BENCHMARKS
        if (path := shared_data(benchmark)) is not None
        for p in load_problems(path)
        if isinstance(p, Problem) and p.answer  # OlympiadBench proofs have no gold
    ]
    for p in problems:
        gold, spec, choices = p.answer, p.spec, p.spec.choices
        cases.append({"kind": "gold", "gold": gold, "response": QVQ.format(gold.replace("$", "")), "spec": spec, "label": True})
        number = parse_number(gold.replace("$", ""))
        if choices:
            letters = "ABCDEFGHIJ"
            index = letters.index(gold) if len(gold) == 1 and gold in letters else (choices.index(gold) if gold in choices else 0)
            other = letters[(index + 1) % len(choices)]
            cases.append({"kind": "gold", "gold": gold, "response": QVQ.format(other), "spec": spec, "label": False})
        elif number is not None and not number.infinite:
            cases.append({"kind": "gold", "gold": gold, "response": QVQ.format(f"{float(number.value) * 2 + 1:.6g}"), "spec": spec, "label": False})
        elif p.meta.get("is_multiple_answer") and "," in gold:  # one answer short of several
            cases.append({"kind": "gold", "gold": gold, "response": QVQ.format(gold.replace("$", "").rsplit(",", 1)[0]), "spec": spec, "label": False})
        else:
            cases.append({"kind": "gold", "gold": gold, "response": QVQ.format(gold.replace("$", "") + " + 1"), "spec": spec, "label": False})
    for gold, answer, problem, right in ANCHORS:
        cases.append({"kind": "anchor", "gold": gold, "response": QVQ.format(answer), "spec": AnswerSpec(**problem), "label": right})
    for gold, answer in HOSTILE:
        cases.append({"kind": "hostile", "gold": gold, "response": QVQ.format(answer), "spec": AnswerSpec(), "label": False})
    return cases[:limit] if limit else cases


# ---------------------------------------------------------------- qvq-ray


def run_qvq_ray(cases: list[dict], timeout_s: float) -> list[dict]:
    from qvq_ray.config import VerifierConfig
    from qvq_ray.verify import Verifier

    results = []
    with Verifier(VerifierConfig(workers=1, timeout_s=timeout_s)) as verifier:
        verifier.check_sync(QVQ.format("x^2"), gold="x^{2}")  # warm: worker boot is not a call
        for case in cases:
            start = time.perf_counter()
            verdict = verifier.check_sync(case["response"], case["spec"], gold=case["gold"])
            elapsed = time.perf_counter() - start
            results.append({"elapsed": elapsed, "verdict": verdict.correct, "returned": True})
    return results


# ---------------------------------------------------------------- math-verify, in a watched child

_CHILD = r"""
import json, sys, time, logging, os
logging.disable(logging.CRITICAL)
os.sched_setaffinity(0, {0}) if hasattr(os, "sched_setaffinity") else None
from math_verify import parse, verify, ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig
verify(parse("$x^2$"), parse("$x^{2}$"))  # warm
print("ready", flush=True)
for line in sys.stdin:
    gold, response, *mode = json.loads(line)
    start = time.perf_counter()
    try:
        if mode and mode[0] == "letter":  # tuned as its README advises: letters by string extraction
            config = [StringExtractionConfig(), LatexExtractionConfig(), ExprExtractionConfig()]
            verdict = bool(verify(parse(gold, extraction_config=[StringExtractionConfig()]), parse(response, extraction_config=config)))
        elif mode and mode[0] == "tuned":  # gold in $...$
            verdict = bool(verify(parse("$" + gold.strip("$") + "$"), parse(response)))
        else:
            verdict = bool(verify(parse(gold), parse(response)))
    except BaseException as exc:
        verdict = None
    print(json.dumps([time.perf_counter() - start, verdict]), flush=True)
"""


class _MathVerifyChild:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def ask(self, gold: str, response: str, cap_s: float, mode: str | None = None) -> tuple[float, bool | None] | None:
        import select

        self.proc.stdin.write(json.dumps([gold, response] + ([mode] if mode else [])) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], cap_s)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        if not line:
            return None
        elapsed, verdict = json.loads(line)
        return elapsed, verdict

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run_math_verify(cases: list[dict], timeout_s: float, grace_s: float) -> list[dict]:
    results = []
    child = _MathVerifyChild()
    try:
        for case in cases:
            start = time.perf_counter()
            answer = child.ask(case.get("mv_gold", case["gold"]), case["response"], timeout_s + grace_s, case.get("mv_mode"))
            if answer is None:  # hung past its own timeout: kill it, start a fresh one for the next case
                results.append({"elapsed": time.perf_counter() - start, "verdict": None, "returned": False})
                child.kill()
                child = _MathVerifyChild()
                continue
            elapsed, verdict = answer
            results.append({"elapsed": elapsed, "verdict": verdict, "returned": True})
    finally:
        child.kill()
    return results


# ---------------------------------------------------------------- development set: real outputs, adjudicated labels

LABELS = ROOT / "tests" / "data" / "verify" / "dev_labels.json"
DEV_SETS = (
    ("mathvision/GPT4-CoT-text-only", "mathvision/GPT4-CoT-text-only.jsonl"),
    ("mathvision/InternLM-XComposer2-VL-CoT", "mathvision/InternLM-XComposer2-VL-CoT.jsonl"),
    ("mathvista/output_gpt4_2shot_solution", "mathvista/output_gpt4_2shot_solution.json"),
    ("mathvista/output_claude", "mathvista/output_claude.json"),
)


def build_dev_cases(limit: int | None) -> list[dict]:
    """The real model outputs of ../shared/data/model_outputs joined to their problems through our
    loaders, each labelled with our adjudicated label (tests/data/verify/dev_labels.json: the
    official label unless corrected there). Empty (the reason printed) when the data is absent."""
    root = shared_data("model_outputs")
    if root is None:
        return []
    from qvq_ray.datasets import mathvision, mathvista
    from qvq_ray.problem import Problem

    corrections = {name: s["corrections"] for name, s in json.loads(LABELS.read_text(encoding="utf-8"))["sets"].items()}
    problems = {}
    for line in (root / "mathvision" / "test.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        problems[row["id"]] = mathvision.row_to_problem(row, root=root / "mathvision", ref=row["id"])
    cases: list[dict] = []
    for name, file in DEV_SETS:
        path = root / file
        if not path.is_file():
            print(f"skipped: {name}: {path} not found", file=sys.stderr)
            continue
        if file.endswith(".jsonl"):
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            rows = [(r["id"], r["response"], problems.get(r["id"]), r["correct"]) for r in records]
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = [
                (pid, r["response"], mathvista.row_to_problem(r, key=pid, ref=pid, image_base=(None, path.parent)), r["true_false"])
                for pid, r in data.items()
            ]
        fixed = corrections.get(name, {})
        for pid, response, problem, official in rows[:limit] if limit else rows:
            if not isinstance(problem, Problem) or not problem.answer:
                continue
            label = fixed[pid]["correct"] if pid in fixed else bool(official)
            gold = problem.answer
            letter = problem.meta.get("answer_letter") if problem.spec.choices else None
            case = {"kind": name, "gold": gold, "response": response or "", "spec": problem.spec, "label": label}
            if len(gold) == 1 and gold.isalpha() or letter:  # math-verify tuned: letters by string extraction
                case.update(mv_gold=letter or gold, mv_mode="letter")
            else:
                case.update(mv_mode="tuned")
            cases.append(case)
    return cases


def dev_figures(cases: list[dict], ours: list[dict], theirs: list[dict] | None) -> dict:
    out = {}
    for name, _ in DEV_SETS:
        idx = [k for k, c in enumerate(cases) if c["kind"] == name]
        if not idx:
            continue
        row = {"cases": len(idx)}
        for side, results in (("qvq_ray", ours), ("math_verify", theirs)):
            if results is None:
                continue
            agree = sum(1 for k in idx if bool(results[k]["verdict"]) == cases[k]["label"])
            false_accepts = sum(1 for k in idx if results[k]["verdict"] is True and not cases[k]["label"])
            row[side] = {
                "agreement": round(agree / len(idx), 4),
                "false_accepts": false_accepts,
                "false_accept_rate": round(false_accepts / len(idx), 4),
                "false_rejects": sum(1 for k in idx if not results[k]["verdict"] and cases[k]["label"]),
            }
        out[name] = row
    return out


def print_dev(figs: dict) -> None:
    print("development set (real outputs, adjudicated labels: tests/data/verify/dev_labels.json)\n")
    print(f"{'set':40}{'cases':>7}{'qvq-ray agree':>15}{'false acc.':>12}{'math-verify':>13}{'false acc.':>12}")
    for name, row in figs.items():
        a, b = row["qvq_ray"], row.get("math_verify")
        mv = (f"{b['agreement']:>12.2%}{b['false_accepts']:>7} ({b['false_accept_rate']:.2%})" if b else f"{'-':>13}")
        print(f"{name:40}{row['cases']:>7}{a['agreement']:>14.2%}{a['false_accepts']:>6} ({a['false_accept_rate']:.2%}){mv}")
    print()


# ---------------------------------------------------------------- figures


def figures(cases: list[dict], results: list[dict], timeout_s: float, subset: list[int]) -> dict:
    elapsed = [r["elapsed"] for r in results]
    past = sum(1 for r in results if r["elapsed"] > timeout_s or not r["returned"])
    returned = [r for r in results if r["returned"] and r["elapsed"] <= timeout_s]
    agree = sum(1 for c, r in zip(cases, results) if r["verdict"] is c["label"] or (c["kind"] == "hostile" and r["returned"] and r["verdict"] in (False, None) and r["elapsed"] <= timeout_s))
    sub = [results[k]["elapsed"] for k in subset]
    q = statistics.quantiles(elapsed, n=20) if len(elapsed) >= 2 else [elapsed[0]] * 19
    return {
        "cases": len(results),
        "returned_within_timeout": len(returned),
        "past_timeout": past,
        "cases_per_s": round(len(results) / sum(elapsed), 2) if sum(elapsed) else None,
        "cases_per_s_on_returned": round(len(sub) / sum(sub), 2) if sum(sub) else None,
        "p50_ms": round(statistics.median(elapsed) * 1000, 2),
        "p95_ms": round(q[18] * 1000, 2),
        "max_ms": round(max(elapsed) * 1000, 1),
        "agree_with_labels": agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=5.0, help="Per-call time limit T (s).")
    parser.add_argument("--grace", type=float, default=5.0, help="Seconds past T before math-verify's child is killed.")
    parser.add_argument("--limit", type=int, help="Only the first N cases.")
    parser.add_argument("--dev-limit", type=int, help="Only the first N outputs of each development set.")
    parser.add_argument("--skip-dev", action="store_true", help="Leave out the development set of real outputs.")
    parser.add_argument("--dev-only", action="store_true", help="Only the development set of real outputs.")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # one core; child processes inherit it
    dev = {}
    if not args.skip_dev:
        dev_cases = build_dev_cases(args.dev_limit)
        if dev_cases:
            dev_ours = run_qvq_ray(dev_cases, args.timeout)
            dev_theirs = run_math_verify(dev_cases, args.timeout, args.grace)
            dev = dev_figures(dev_cases, dev_ours, dev_theirs)
            print_dev(dev)
    if args.dev_only:
        print(json.dumps({"benchmark": "verifier", "timeout_s": args.timeout, "cores": 1, "dev_sets": dev}))
        return
    cases = build_cases(args.limit)
    ours = run_qvq_ray(cases, args.timeout)
    theirs = run_math_verify(cases, args.timeout, args.grace)
    returned_both = [k for k, r in enumerate(theirs) if r["returned"] and r["elapsed"] <= args.timeout]
    a = figures(cases, ours, args.timeout, returned_both)
    b = figures(cases, theirs, args.timeout, returned_both)
    kinds = sorted({c["kind"] for c in cases})
    by_kind = {
        kind: {
            "cases": sum(c["kind"] == kind for c in cases),
            "qvq_ray_agree": sum(1 for c, r in zip(cases, ours) if c["kind"] == kind and (r["verdict"] is c["label"] or (kind == "hostile" and r["verdict"] in (False, None)))),
            "math_verify_agree": sum(1 for c, r in zip(cases, theirs) if c["kind"] == kind and (r["verdict"] is c["label"] or (kind == "hostile" and r["returned"] and r["verdict"] in (False, None) and r["elapsed"] <= args.timeout))),
        }
        for kind in kinds
    }
    print(f"verifier benchmark: {len(cases)} cases, one core (CPU 0), per-call limit T = {args.timeout:g} s\n")
    print(f"{'':32}{'qvq-ray':>14}{'math-verify':>14}")
    rows = [
        ("cases", "cases"),
        ("returned within T", "returned_within_timeout"),
        ("calls past T", "past_timeout"),
        ("cases/s (all cases)", "cases_per_s"),
        ("cases/s (math-verify returned)", "cases_per_s_on_returned"),
        ("p50 latency (ms)", "p50_ms"),
        ("p95 latency (ms)", "p95_ms"),
        ("max latency (ms)", "max_ms"),
        ("agree with labels", "agree_with_labels"),
    ]
    for label, key in rows:
        print(f"{label:32}{str(a[key]):>14}{str(b[key]):>14}")
    print()
    for kind, row in by_kind.items():
        print(f"  {kind:14} {row['cases']:4} cases   agree: qvq-ray {row['qvq_ray_agree']:4}   math-verify {row['math_verify_agree']:4}")
    print()
    print(json.dumps({"benchmark": "verifier", "timeout_s": args.timeout, "cores": 1, "qvq_ray": a, "math_verify": b, "by_kind": by_kind, "dev_sets": dev}))


if __name__ == "__main__":
    main()
