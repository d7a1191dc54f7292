"""What verification and re-sampling buy on the trained tiny model: four policies side by side.

Runs the batch job (`qvq_ray.jobs.run_solve_job`, what `qvq-ray solve` runs) on the shipped
visual-arithmetic test split (examples/arithmetic-test, 200 problems the model never saw in
training) with the trained tiny Qwen2-VL (`--model tiny`) under four configs from pipelines/configs/:

  greedy   arithmetic-greedy.yaml   one greedy answer
  sample   arithmetic-sample.yaml   one sample at temperature 1.0
  self     arithmetic-self.yaml     gold-free: re-sample failed checks (calculation check included),
                                    self-consistency over up to 5 samples at T=1.0, quorum 3
  oracle   arithmetic-oracle.yaml   rejection sampling against gold, up to 8 samples: pass@8

Each figure is the job's own summary (the line `qvq-ray solve` prints). One Ray cluster serves the
four jobs. Sampling is not seeded (a seeded request runs alone in the transformers engine, which
would make this slow), so sampled figures move by a point or two between runs. Ends with one JSON line.

    python benchmarks/tiny_model_policies.py [--input examples/arithmetic-test] [--out results/tiny-policies] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("greedy", "sample", "self", "oracle")
TARGETS = {
    "greedy accuracy in [60%, 95%]": lambda f: 0.60 <= f["greedy"] <= 0.95,
    "one sample (T=1.0) below greedy": lambda f: f["sample"] < f["greedy"],
    "self >= sample + 5 points": lambda f: f["self"] >= f["sample"] + 0.05,
    "self removes >= 30% of sample's errors": lambda f: f["self_error_reduction"] >= 0.30,
    "oracle pass@8 >= 95%": lambda f: f["oracle_pass_at_8"] >= 0.95,
}


def run(input_path: str, out_root: Path, model: str, limit: int | None, num_cpus: int | None) -> dict[str, dict]:
    import ray

    from qvq_ray.jobs import run_solve_job
    from qvq_ray.config import QvqConfig

    summaries: dict[str, dict] = {}
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)  # our own cluster, never one found in /tmp/ray
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the figures, not Ray Data's progress lines
    try:
        for name in POLICIES:
            config = QvqConfig.from_yaml(ROOT / "pipelines" / "configs" / f"arithmetic-{name}.yaml")
            config.model.path = model
            out = out_root / name
            shutil.rmtree(out, ignore_errors=True)
            print(f"--- {name}: qvq-ray solve {input_path} --out {out} --model {model} "
                  f"--config pipelines/configs/arithmetic-{name}.yaml", flush=True)
            started = time.perf_counter()
            summary = run_solve_job(input_path, str(out), config, limit=limit, printer=lambda line: None)
            for line in summary.lines():
                print("  " + line)
            summaries[name] = summary.model_dump() | {"wall_s": round(time.perf_counter() - started, 1)}
    finally:
        ray.shutdown()
    return summaries


def figures(s: dict[str, dict]) -> dict:
    acc = {name: s[name]["accuracy"] for name in POLICIES}
    sample_err = 1 - acc["sample"]
    return {
        "greedy": acc["greedy"],
        "sample": acc["sample"],
        "self": acc["self"],
        "oracle_pass_at_8": acc["oracle"],
        "self_gain_points": round(100 * (acc["self"] - acc["sample"]), 1),
        "self_error_reduction": round((sample_err - (1 - acc["self"])) / sample_err, 3) if sample_err else 0.0,
        "self_attempts_per_problem": round(s["self"]["attempts"] / max(1, s["self"]["rows_out"]), 2),
        "self_pass_at_1": s["self"]["pass_at_1"],
        "self_maj_at_k": s["self"]["maj_at_k"],
        "problems": s["greedy"]["with_gold"],
    }


def table(s: dict[str, dict]) -> str:
    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"

    header = f"{'':24}" + "".join(f"{n:>12}" for n in ("greedy", "sample T=1", "self", "oracle"))
    rows = [
        ("accuracy (oracle: pass@8)", [pct(s[n]["accuracy"]) for n in POLICIES]),
        ("pass@1", [pct(s[n]["pass_at_1"]) for n in POLICIES]),
        ("maj@k", [pct(s[n]["maj_at_k"]) for n in POLICIES]),
        ("pass@k", [pct(s[n]["pass_at_k"]) for n in POLICIES]),
        ("attempts / problem", [f"{s[n]['attempts'] / max(1, s[n]['rows_out']):.2f}" for n in POLICIES]),
        ("completion tokens", [str(s[n]["completion_tokens"]) for n in POLICIES]),
        ("wall time (s)", [f"{s[n]['wall_s']:.0f}" for n in POLICIES]),
    ]
    return "\n".join([header] + [f"{label:24}" + "".join(f"{v:>12}" for v in values) for label, values in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(ROOT / "examples" / "arithmetic-test"))
    parser.add_argument("--out", default=str(ROOT / "results" / "tiny-policies"))
    parser.add_argument("--model", default="tiny", help="checkpoint (default: the trained tiny model)")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--num-cpus", type=int)
    args = parser.parse_args(argv)

    summaries = run(args.input, Path(args.out), args.model, args.limit, args.num_cpus)
    f = figures(summaries)
    print()
    print(f"trained tiny Qwen2-VL on {args.input} ({f['problems']} problems, gold used only to score; oracle excepted)")
    print(table(summaries))
    print(f"self vs one sample: {f['self_gain_points']:+.1f} points, {f['self_error_reduction']:.0%} of its errors removed")
    ok = True
    for label, check in TARGETS.items():
        passed = check(f)
        ok &= passed
        print(f"  [{'ok' if passed else 'MISSED'}] {label}")
    print(json.dumps({"benchmark": "tiny_model_policies", **f, "targets_met": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
