"""Verifier agreement, safety and speed, side by side with (tuned) math-verify, in one run.

Parts, in the order they run and print (the last line is one JSON object with every figure):

1. **Development set** (`build_dev_cases`): 13,080 real chain-of-thought outputs of nine models
   (`../shared/data/model_outputs/`) with our adjudicated labels (tests/data/verify/dev_labels.json):
   agreement, false accepts and rejects per set, and the **time per case of each side on the same
   cases** (cases/s, mean, p50, p95, max), math-verify tuned as its README advises (gold in `$...$`,
   letter golds with `StringExtractionConfig`).
2. **Generated cases** (benchmarks/verifier_cases.py, fixed seed): perturbed WRONG values written
   from every free-form gold of the shared data, and how many the verifier accepts (target 0);
   OlympiadBench golds written back with their units, and the share that matches itself (>= 99%).
3. **Fixed cases** (`build_cases`): the OlympiadBench judge's vectors, the gold answers of the
   shared benchmark samples (each against itself in a QVQ-style response and against a perturbed
   value), the anchor graders' faults, and hostile inputs; calls past T, latency, agreement.

Timing (parts 1 and 3): both sides run on CPU 0, interleaved case by case (ours, then
math-verify's) so that whatever else loads the machine falls on both alike:

- qvq-ray: `Verifier(workers=1, timeout_s=T).check_sync(response, spec, gold=...)`, timed from the
  caller: a whole check (extraction, health checks, the calculation check, and the worker round
  trip when a comparison needs sympy), the worker process inheriting the pin;
- math-verify: `verify(parse(gold), parse(response))` in the MAIN thread of a child process (its
  timeouts are `signal.alarm`, which only works there), timed inside the child around parse +
  verify (no transport counted); a watchdog kills the child when one call outlives T + grace
  (big-integer work no signal interrupts) and starts a fresh one for the next case.

The shared data is read through our loaders (`../shared/data`, see benchmarks/shared_data.py); a
part whose data is absent is left out (the reason printed) and the rest still runs.

    python benchmarks/verifier.py [--timeout 5] [--grace 5] [--limit N] [--dev-limit N]
                                  [--skip-dev | --dev-only] [--skip-generated]
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


def run_both(cases: list[dict], timeout_s: float, grace_s: float) -> tuple[list[dict], list[dict]]:
    """Both verifiers on every case, interleaved case by case (ours, then math-verify's), so that
    whatever else loads the machine falls on both alike; both on CPU 0.

    Ours: `Verifier(workers=1).check_sync` timed from the caller (extraction, health checks, the
    calculation check and, where needed, the worker round trip: all of a real check). math-verify:
    `parse` + `verify` timed inside its child (no transport counted), killed and restarted when
    one call outlives T + grace (big-integer work no signal interrupts)."""
    from qvq_ray.config import VerifierConfig
    from qvq_ray.verify import Verifier

    ours: list[dict] = []
    theirs: list[dict] = []
    child = _MathVerifyChild()
    try:
        with Verifier(VerifierConfig(workers=1, timeout_s=timeout_s)) as verifier:
            verifier.check_sync(QVQ.format("x^2"), gold="x^{2}")  # warm: worker boot is not a call
            for case in cases:
                start = time.perf_counter()
                verdict = verifier.check_sync(case["response"], case["spec"], gold=case["gold"], question=case.get("question"))
                ours.append({"elapsed": time.perf_counter() - start, "verdict": verdict.correct, "returned": True})
                start = time.perf_counter()
                answer = child.ask(case.get("mv_gold", case["gold"]), case["response"], timeout_s + grace_s, case.get("mv_mode"))
                if answer is None:  # hung past its own timeout: kill it, start a fresh one for the next case
                    theirs.append({"elapsed": time.perf_counter() - start, "verdict": None, "returned": False})
                    child.kill()
                    child = _MathVerifyChild()
                    continue
                elapsed, verdict = answer
                theirs.append({"elapsed": elapsed, "verdict": verdict, "returned": True})
    finally:
        child.kill()
    return ours, theirs


def speed(results: list[dict], timeout_s: float) -> dict:
    """Time per case of one side: cases/s, mean, p50, p95 and max latency, calls past T."""
    elapsed = [r["elapsed"] for r in results]
    total = sum(elapsed)
    q = statistics.quantiles(elapsed, n=20) if len(elapsed) >= 2 else elapsed * 19
    return {
        "cases": len(elapsed),
        "cases_per_s": round(len(elapsed) / total, 2) if total else None,
        "ms_per_case": round(total / len(elapsed) * 1000, 2) if elapsed else None,
        "p50_ms": round(statistics.median(elapsed) * 1000, 2) if elapsed else None,
        "p95_ms": round(q[18] * 1000, 2) if elapsed else None,
        "max_ms": round(max(elapsed) * 1000, 1) if elapsed else None,
        "past_timeout": sum(1 for r in results if r["elapsed"] > timeout_s or not r["returned"]),
    }


def print_speed(title: str, a: dict, b: dict) -> None:
    print(f"{title}: time per case, same cases, same run, interleaved, one core")
    print(f"{'':24}{'qvq-ray':>12}{'math-verify':>14}")
    for label, key in (("cases/s", "cases_per_s"), ("ms per case (mean)", "ms_per_case"), ("p50 (ms)", "p50_ms"),
                       ("p95 (ms)", "p95_ms"), ("max (ms)", "max_ms"), ("calls past T", "past_timeout")):
        print(f"{label:24}{str(a[key]):>12}{str(b[key]):>14}")
    if a["ms_per_case"] and b["ms_per_case"]:
        print(f"{'qvq-ray speed / math-verify':24}{b['ms_per_case'] / a['ms_per_case']:>11.2f}x")
    print()


# ---------------------------------------------------------------- development set: real outputs, adjudicated labels

LABELS = ROOT / "tests" / "data" / "verify" / "dev_labels.json"
DEV_SETS = (
    ("mathvision/GPT4-CoT-text-only", "mathvision/GPT4-CoT-text-only.jsonl"),
    ("mathvision/InternLM-XComposer2-VL-CoT", "mathvision/InternLM-XComposer2-VL-CoT.jsonl"),
    ("mathvista/output_gpt4_2shot_solution", "mathvista/output_gpt4_2shot_solution.json"),
    ("mathvista/output_claude", "mathvista/output_claude.json"),
    # open models' chatty outputs: answers in prose, closing pleasantries, tables after the answer
    ("mathvista/output_idefics_9b_instruct", "mathvista/output_idefics_9b_instruct.json"),
    ("mathvista/output_instruct_blip2_vicuna_13b", "mathvista/output_instruct_blip2_vicuna_13b.json"),
    ("mathvista/output_llava_llama_2_13b", "mathvista/output_llava_llama_2_13b.json"),
    ("mathvista/output_minigpt4_llama2", "mathvista/output_minigpt4_llama2.json"),
    ("mathvista/output_mplugowl_7b_ft", "mathvista/output_mplugowl_7b_ft.json"),
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
            case = {"kind": name, "id": pid, "gold": gold, "response": response or "", "spec": problem.spec, "label": label,
                    "official": bool(official), "question": problem.question}
            if len(gold) == 1 and gold.isalpha() or letter:  # math-verify tuned: letters by string extraction
                case.update(mv_gold=letter or gold, mv_mode="letter")
            else:
                case.update(mv_mode="tuned")
            cases.append(case)
    return cases


def dev_figures(cases: list[dict], ours: list[dict], theirs: list[dict] | None, timeout_s: float = 5.0) -> dict:
    """Per set: agreement, false accepts and rejects, and time per case, of each side."""
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
                "ms_per_case": speed([results[k] for k in idx], timeout_s)["ms_per_case"],
            }
        out[name] = row
    return out


def print_dev(figs: dict) -> None:
    print("development set (real outputs, adjudicated labels: tests/data/verify/dev_labels.json)\n")
    print(f"{'set':40}{'cases':>7}{'qvq-ray agree':>15}{'false acc.':>12}{'ms/case':>9}{'math-verify':>13}{'false acc.':>12}{'ms/case':>9}")
    for name, row in figs.items():
        a, b = row["qvq_ray"], row.get("math_verify")
        mv = (f"{b['agreement']:>12.2%}{b['false_accepts']:>7} ({b['false_accept_rate']:.2%}){b['ms_per_case']:>9}" if b else f"{'-':>13}")
        print(f"{name:40}{row['cases']:>7}{a['agreement']:>14.2%}{a['false_accepts']:>6} ({a['false_accept_rate']:.2%}){a['ms_per_case']:>9}{mv}")
    print()


# ---------------------------------------------------------------- generated: wrong values, golds with units

QVQ_BOX = "So, I've got this problem. Let me work through it step by step.\n\n**Final Answer**\n\n\\[ \\boxed{{{}}} \\]"


def generated_figures(timeout_s: float) -> dict:
    """Perturbed wrong values accepted (target 0) and OlympiadBench golds written with their unit
    that match themselves (target >= 99%), from benchmarks/verifier_cases.py; {} without data."""
    from benchmarks.verifier_cases import gold_problems, perturbed_cases, summary_examples, unit_cases
    from qvq_ray.config import VerifierConfig
    from qvq_ray.verify import Verifier

    problems = gold_problems()
    if not problems:
        return {}
    wrong, units = perturbed_cases(problems), unit_cases(problems)
    with Verifier(VerifierConfig(workers=1, timeout_s=timeout_s)) as verifier:
        accepted = [verifier.check_sync(QVQ_BOX.format(c["answer"]), c["spec"], gold=c["gold"]).correct is True for c in wrong]
        matched = [verifier.check_sync(QVQ_BOX.format(c["answer"]), c["spec"], gold=c["gold"]).correct is True for c in units]
    sources: dict[str, set] = {}
    for c in wrong:
        sources.setdefault(c["source"], set()).add(c["id"])
    families = sorted({c["family"] for c in wrong})
    unit_golds = {c["id"] for c in units}
    with_unit = {c["id"] for c in units if c["family"] != "no_unit"}
    return {
        "perturbed": {
            "cases": len(wrong),
            "golds": {source: len(ids) for source, ids in sorted(sources.items())},
            "accepted": sum(accepted),
            "by_family": {f: [sum(a for c, a in zip(wrong, accepted) if c["family"] == f), sum(c["family"] == f for c in wrong)] for f in families},
            "examples": summary_examples(wrong, accepted),
        },
        "gold_with_unit": {
            "golds": len(unit_golds),
            "golds_with_unit": len(with_unit),
            "cases": len(units),
            "cases_with_unit": sum(c["family"] != "no_unit" for c in units),
            "matched": sum(matched),
            "share": round(sum(matched) / len(units), 4) if units else None,
            "misses": summary_examples(units, [not m for m in matched]),
        },
    }


def print_generated(figs: dict) -> None:
    w, u = figs["perturbed"], figs["gold_with_unit"]
    golds = ", ".join(f"{source} {n}" for source, n in w["golds"].items())
    print(f"perturbed WRONG values (benchmarks/verifier_cases.py, seed fixed): {w['cases']} cases from golds of {golds}")
    print(f"  accepted (target 0): {w['accepted']}    by family: " + ", ".join(f"{f} {a}/{n}" for f, (a, n) in w["by_family"].items()))
    for line in w["examples"]:
        print(f"    accepted: {line}")
    print(f"OlympiadBench golds written with their unit: {u['golds']} golds ({u['golds_with_unit']} with a unit), {u['cases']} written forms ({u['cases_with_unit']} with a unit)")
    print(f"  match themselves (target >= 99%): {u['matched']}/{u['cases']} = {u['share']:.2%}")
    for line in u["misses"]:
        print(f"    missed: {line}")
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
    parser.add_argument("--skip-generated", action="store_true", help="Leave out the perturbed wrong values and golds with units.")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # one core; child processes inherit it
    result: dict = {"benchmark": "verifier", "timeout_s": args.timeout, "cores": 1}
    if not args.skip_dev:
        dev_cases = build_dev_cases(args.dev_limit)
        if dev_cases:
            dev_ours, dev_theirs = run_both(dev_cases, args.timeout, args.grace)
            result["dev_sets"] = dev_figures(dev_cases, dev_ours, dev_theirs, args.timeout)
            result["dev_speed"] = {"qvq_ray": speed(dev_ours, args.timeout), "math_verify": speed(dev_theirs, args.timeout)}
            print_dev(result["dev_sets"])
            print_speed(f"development set ({len(dev_cases)} real outputs)", result["dev_speed"]["qvq_ray"], result["dev_speed"]["math_verify"])
    if args.dev_only:
        print(json.dumps(result))
        return
    if not args.skip_generated:
        generated = generated_figures(args.timeout)
        if generated:
            result.update(generated)
            print_generated(generated)
    cases = build_cases(args.limit)
    ours, theirs = run_both(cases, args.timeout, args.grace)
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
    print(f"verifier benchmark: {len(cases)} cases, one core (CPU 0), per-call limit T = {args.timeout:g} s, interleaved\n")
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
    result.update({"qvq_ray": a, "math_verify": b, "by_kind": by_kind})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
