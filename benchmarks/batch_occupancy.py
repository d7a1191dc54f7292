"""Engine-slot occupancy of the batch solve job vs a plain asyncio loop, under long-tailed chains.

The engine is `engine.kind: openai` against a simulated OpenAI-compatible endpoint
(benchmarks/sim_endpoint.py, a simulation: no model) whose completion lengths are lognormal
(median 1,500 tokens, sigma 0.9, capped at 16,384), fixed per prompt, each request taking
length / --tokens-per-s seconds with unlimited slots. Every answer is right on the first attempt
(text-only "What is A + B?" problems), so both sides send exactly one request per problem and the
same total request-seconds; what differs is how full they keep the slots.

(a) the real `qvq-ray solve` job (a subprocess; its own local Ray cluster on --num-cpus CPUs) with
    batch.max_concurrent_solves = cap, batch.num_replicas = --replicas, batch.rows_per_batch;
(b) a plain asyncio loop in this process over the same Solver.from_config, build_engine(config) and
    config, an asyncio.Semaphore(cap x replicas), on the same problems (scored against gold after
    each solve, outside the semaphore, as the job's score stage does).

For each: mean requests in flight (time-weighted, from the first request's start to the last one's
end, measured at the endpoint), occupancy = mean in flight / slots (slots = cap x replicas), the
endpoint's busy seconds (time with >= 1 request in flight: what a GPU endpoint is held for), the
active window and the wall seconds (the job's includes starting Ray). Then job occupancy / loop
occupancy (target >= 0.95x at caps 32 and 128, and with 2 engine actors) and the GPU-time ratio
job busy / loop busy. A profile line shows in-flight over the window (full scale = slots).
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from job_runner import add_job_arguments, run_solve  # noqa: E402
from sim_endpoint import DEFAULT_TOKENS_PER_S, MODEL_NAME, SimEndpoint, sparkline  # noqa: E402

TARGET = 0.95


def make_problems(directory: Path, count: int, seed: int = 0) -> Path:
    """`count` text-only problems in our JSONL format: 'What is A + B?' with gold A + B."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with open(directory / "problems.jsonl", "w") as handle:
        for i in range(count):
            a, b = rng.randint(10, 999), rng.randint(10, 999)
            handle.write(json.dumps({
                "id": f"sim-{i:06d}", "question": f"What is {a} + {b}?", "answer": str(a + b),
                "answer_type": "integer", "source": "sim-arithmetic",
            }) + "\n")
    return directory


def job_config(base_url: str, *, cap: int, replicas: int, rows_per_batch: int, actor_cpus: float, stream: bool) -> dict:
    """The config both sides run (the loop's slots are cap x replicas; so is each engine's HTTP gate)."""
    return {
        "model": {"path": MODEL_NAME},
        "engine": {
            "kind": "openai", "base_url": base_url, "remote_model": MODEL_NAME,
            "max_concurrency": cap * replicas,  # never the bottleneck: the solve slots are what is measured
        },
        "sampling": {"max_tokens": 16_384},  # >= the endpoint's cap: no truncation, no re-sample
        "policy": {"loop_cutoff": stream},  # on (the default): every sample is streamed
        "resources": {"num_cpus": actor_cpus},
        "batch": {"num_replicas": replicas, "max_concurrent_solves": cap, "rows_per_batch": rows_per_batch},
    }


def endpoint_figures(stats: dict, slots: int) -> dict:
    return {
        "requests": stats["requests"],
        "completion_tokens": stats["completion_tokens"],
        "mean_in_flight": round(stats["mean_in_flight"], 2),
        "occupancy": round(stats["mean_in_flight"] / slots, 4),
        "peak_in_flight": stats["peak_in_flight"],
        "busy_s": round(stats["busy_s"], 2),
        "window_s": round(stats["window_s"], 2),
        "request_s": round(stats["request_s"], 2),
        "endpoint_cpu_s": round(stats["endpoint_cpu_s"], 1),
    }


def run_job(endpoint: SimEndpoint, problems_dir: Path, work: Path, config: dict, slots: int, args) -> dict:
    import yaml

    name = f"job-cap{config['batch']['max_concurrent_solves']}-r{config['batch']['num_replicas']}"
    config_path = work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    endpoint.reset()
    seen = run_solve(problems_dir, work / f"{name}-out", config_path, num_cpus=args.num_cpus,
                     timeout_s=args.job_timeout, log_dir=work / f"{name}-logs")
    stats = endpoint.stats()
    if seen["returncode"] != 0 or seen["summary"] is None:
        print(f"  the job failed (exit {seen['returncode']}, timed out {seen['timed_out']}):", file=sys.stderr)
        print(seen["stdout_tail"][-1500:], seen["stderr_tail"][-1500:], sep="\n", file=sys.stderr)
    figures = endpoint_figures(stats, slots)
    summary = seen["summary"] or {}
    first, last = stats.get("first_start"), stats.get("last_end")
    figures.update({
        "wall_s": round(seen["wall_s"], 2),
        "returncode": seen["returncode"],
        "rows_out": summary.get("rows_out"),
        "errors": summary.get("errors"),
        "verified": summary.get("verified"),
        "correct": summary.get("correct"),
        "not_judged": summary.get("not_judged"),
        # where the job's wall time goes, on the shared monotonic clock
        "ray_up_s": round(seen["ray_up"] - seen["start"], 2) if seen["ray_up"] else None,
        "to_first_request_s": round(first - seen["start"], 2) if first else None,
        "after_last_request_s": round(seen["end"] - last, 2) if last else None,
    })
    return {"figures": figures, "timeline": stats.get("timeline") or [], "bucket_s": stats["timeline_bucket_s"]}


def run_loop(endpoint: SimEndpoint, problems_dir: Path, config_dict: dict, slots: int) -> dict:
    from qvq_ray.config import QvqConfig
    from qvq_ray.datasets import LoadError, load_problems
    from qvq_ray.engines import build_engine
    from qvq_ray.solver import Solver
    from qvq_ray.verify import Verifier

    config = QvqConfig.model_validate(config_dict)
    problems = [p for p in load_problems(str(problems_dir)) if not isinstance(p, LoadError)]
    endpoint.reset()
    started = time.perf_counter()
    counts = {"errors": 0, "verified": 0, "correct": 0, "not_judged": 0}

    async def run() -> None:
        engine = build_engine(config)
        verifier = Verifier(config.verifier)
        solver = Solver.from_config(engine, verifier, config)
        gate = asyncio.Semaphore(slots)

        async def one(problem) -> None:
            async with gate:
                solution = await solver.solve(problem, image_bytes=[])
            counts["errors"] += bool(solution.error)
            counts["verified"] += bool(solution.verdict and solution.verdict.answer and not solution.verdict.issues)
            if problem.answer and solution.answer:
                correct = await verifier.compare(solution.answer, problem.answer, problem.spec)
                counts["correct"] += correct is True
                counts["not_judged"] += correct is None

        try:
            await asyncio.gather(*(one(p) for p in problems))
        finally:
            await engine.close()
            verifier.close()

    asyncio.run(run())
    wall = time.perf_counter() - started
    stats = endpoint.stats()
    figures = endpoint_figures(stats, slots)
    figures.update({"wall_s": round(wall, 2), "rows_out": len(problems), **counts})
    return {"figures": figures, "timeline": stats.get("timeline") or [], "bucket_s": stats["timeline_bucket_s"]}


def _caps(values: list[str]) -> list[int]:
    caps: list[int] = []
    for value in values:
        caps += [int(v) for v in str(value).split(",") if v.strip()]
    return caps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=512)
    parser.add_argument("--cap", action="append", metavar="N[,N...]",
                        help="batch.max_concurrent_solves per engine actor; repeatable or comma-separated (default 32,128).")
    parser.add_argument("--replicas", type=int, default=1, help="batch.num_replicas: engine actors (1 or 2).")
    parser.add_argument("--tokens-per-s", type=float, default=DEFAULT_TOKENS_PER_S,
                        help=f"Simulated decode speed per request (default {DEFAULT_TOKENS_PER_S:g}: the median 1,500 tokens in 0.4 s).")
    parser.add_argument("--no-stream", action="store_true", help="policy.loop_cutoff off: plain requests instead of streams.")
    add_job_arguments(parser, job_timeout_s=1800.0)
    args = parser.parse_args()
    caps = _caps(args.cap or ["32,128"])

    work = Path(tempfile.mkdtemp(prefix="qvq-occupancy-"))
    problems_dir = make_problems(work / "problems", args.problems)
    runs = []
    bucket = 0.5
    with SimEndpoint(tokens_per_s=args.tokens_per_s, bucket_s=bucket) as endpoint:
        print(f"{args.problems} problems, lengths lognormal (median 1,500 tokens, sigma 0.9, cap 16,384) at "
              f"{args.tokens_per_s:g} tokens/s per request; {args.replicas} engine actor(s); job on {args.num_cpus} CPUs; "
              f"{'plain requests' if args.no_stream else 'streamed'}")
        for cap in caps:
            slots = cap * args.replicas
            rows_per_batch = args.rows_per_batch or cap
            config = job_config(endpoint.base_url, cap=cap, replicas=args.replicas, rows_per_batch=rows_per_batch,
                                actor_cpus=args.actor_cpus, stream=not args.no_stream)
            job = run_job(endpoint, problems_dir, work, config, slots, args)
            loop = run_loop(endpoint, problems_dir, config, slots)
            j, lp = job["figures"], loop["figures"]
            job_ok = j["returncode"] == 0 and j["requests"] > 0
            ratio = j["occupancy"] / lp["occupancy"] if lp["occupancy"] and job_ok else None
            gpu_ratio = j["busy_s"] / lp["busy_s"] if lp["busy_s"] and job_ok else None
            same = j["completion_tokens"] == lp["completion_tokens"] and j["requests"] == lp["requests"] == args.problems
            print(f"\ncap {cap} x {args.replicas} actor(s) = {slots} slots, rows_per_batch {rows_per_batch}")
            print(f"{'':26}{'in flight':>10}{'occupancy':>10}{'busy s':>8}{'window s':>9}{'wall s':>8}{'requests':>9}{'errors':>7}{'correct':>8}")
            for label, f in (("plain asyncio loop (base)", lp), ("Ray Data job", j)):
                print(f"{label:26}{f['mean_in_flight']:>10.1f}{f['occupancy']:>10.3f}{f['busy_s']:>8.1f}"
                      f"{f['window_s']:>9.1f}{f['wall_s']:>8.1f}{f['requests']:>9}{f['errors'] if f['errors'] is not None else '?':>7}"
                      f"{f['correct'] if f['correct'] is not None else '?':>8}")
            for label, run in (("loop", loop), ("job", job)):
                print(f"  {label:5}in flight |{sparkline(run['timeline'], width=60, top=slots)}| ({run['bucket_s']:g} s buckets, full = {slots})")
            print(f"  job: Ray up at {j['ray_up_s']} s, first request at {j['to_first_request_s']} s, "
                  f"last request ends {j['after_last_request_s']} s before exit")
            if not same:
                print(f"  warning: the two sides did not send the same requests (job {j['requests']} requests, "
                      f"{j['completion_tokens']} tokens; loop {lp['requests']}, {lp['completion_tokens']}; "
                      f"{args.problems} problems)")
            if ratio is None:
                print(f"occupancy job/loop: n/a (the job failed: exit {j['returncode']}; its logs are in the work directory)")
            else:
                verdict = "meets" if ratio >= TARGET else "BELOW"
                print(f"occupancy job/loop {ratio:.2f}x (target >= {TARGET}x: {verdict}); "
                      f"GPU time job/loop (busy s) {gpu_ratio:.2f}x")
            runs.append({"cap": cap, "replicas": args.replicas, "slots": slots, "rows_per_batch": rows_per_batch,
                         "job": j, "loop": lp, "occupancy_ratio": round(ratio, 4) if ratio is not None else None,
                         "gpu_time_ratio": round(gpu_ratio, 4) if gpu_ratio is not None else None,
                         "same_requests": same, "meets_target": ratio is not None and ratio >= TARGET})
    if args.keep or not all(r["occupancy_ratio"] is not None for r in runs):
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({
        "benchmark": "batch_occupancy", "problems": args.problems, "replicas": args.replicas,
        "tokens_per_s": args.tokens_per_s, "num_cpus": args.num_cpus, "stream": not args.no_stream,
        "target": TARGET, "runs": runs,
    }))


if __name__ == "__main__":
    main()
