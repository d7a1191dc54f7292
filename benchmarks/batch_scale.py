"""The batch solve job at scale: the driver's peak memory and rows/s as the problem set grows.

Runs the real `qvq-ray solve` (a subprocess, its own local Ray cluster on --num-cpus CPUs, the
`openai` engine) against the simulated endpoint in zero-latency mode (benchmarks/sim_endpoint.py:
answers at once, a short right answer, so every row is accepted on its first attempt and the job's
own overhead is all that is measured), on text-only problem sets of each size in --sizes (default
10,000 and 200,000 rows; full runs, no --limit).

For each size:
- the DRIVER process's peak RSS: /proc/PID/status VmHWM of the `qvq-ray solve` process itself
  (Ray's workers, raylet and GCS are other processes, not counted), also the peak when the last row
  was written (before the CLI's summary and report read the output back) and the largest private
  (RssAnon) and shared-memory (RssShmem: object-store pages) parts seen;
- rows/s of the whole job (process start to exit), after Ray is up (from the moment the job's Ray
  start returned, marked by a thin wrapper around the CLI in benchmarks/job_runner.py, to exit:
  the engine actors' start, solving, writing, the summary and Ray's shutdown), and over the solving
  window (the endpoint's first request to its last).
Then the growth of the peak from the smallest size to the largest (target < 50 MB from 10k to 200k
rows) and rows/s after Ray is up at the largest size (target >= 200 rows/s on 2 CPUs), beside the
targets. Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_occupancy import make_problems  # noqa: E402
from job_runner import add_job_arguments, run_solve  # noqa: E402
from sim_endpoint import MODEL_NAME, SimEndpoint  # noqa: E402

GROWTH_TARGET_MB = 50.0
RATE_TARGET = 200.0


def num(value, fmt: str) -> str:
    return format(value, fmt) if value is not None else "n/a"


def scale_config(base_url: str, args) -> dict:
    return {
        "model": {"path": MODEL_NAME},
        "engine": {"kind": "openai", "base_url": base_url, "remote_model": MODEL_NAME,
                   "max_concurrency": args.cap * args.replicas},
        "sampling": {"max_tokens": 16_384},
        "policy": {"loop_cutoff": not args.no_stream},
        "resources": {"num_cpus": args.actor_cpus},
        "batch": {"num_replicas": args.replicas, "max_concurrent_solves": args.cap,
                  "rows_per_batch": args.rows_per_batch or args.cap},
    }


def run_size(endpoint: SimEndpoint, size: int, work: Path, args) -> dict:
    import yaml

    problems = make_problems(work / f"problems-{size}", size, seed=size)
    config_path = work / f"scale-{size}.yaml"
    config_path.write_text(yaml.safe_dump(scale_config(endpoint.base_url, args)))
    endpoint.reset()
    seen = run_solve(problems, work / f"out-{size}", config_path, num_cpus=args.num_cpus,
                     timeout_s=args.job_timeout, log_dir=work / f"logs-{size}")
    stats = endpoint.stats(timeline=False)
    summary = seen["summary"] or {}
    if seen["returncode"] != 0 or not summary:
        print(f"  the job at {size:,} rows failed (exit {seen['returncode']}, timed out {seen['timed_out']}):", file=sys.stderr)
        print(seen["stdout_tail"][-1500:], seen["stderr_tail"][-1500:], sep="\n", file=sys.stderr)
    after_ray = seen["end"] - seen["ray_up"] if seen["ray_up"] else None
    rows = summary.get("rows_out") or 0
    solving = stats["window_s"]
    shutil.rmtree(problems, ignore_errors=True)
    shutil.rmtree(work / f"out-{size}", ignore_errors=True)
    return {
        "rows": size,
        "rows_out": summary.get("rows_out"),
        "errors": summary.get("errors"),
        "requests": stats["requests"],
        "returncode": seen["returncode"],
        "peak_rss_mb": round(seen["peak_rss_mb"], 1),
        "peak_rss_at_last_row_mb": round(seen["peak_rss_at_last_row_mb"], 1) if seen["peak_rss_at_last_row_mb"] else None,
        "peak_anon_mb": round(seen["peak_anon_mb"], 1),
        "peak_shmem_mb": round(seen["peak_shmem_mb"], 1),
        "wall_s": round(seen["wall_s"], 2),
        "after_ray_up_s": round(after_ray, 2) if after_ray else None,
        "solving_window_s": round(solving, 2),
        "rows_per_s": round(rows / seen["wall_s"], 1) if rows else 0.0,
        "rows_per_s_after_ray_up": round(rows / after_ray, 1) if rows and after_ray else None,
        "rows_per_s_solving": round(rows / solving, 1) if rows and solving else None,
        "ray_up_s": round(seen["ray_up"] - seen["start"], 2) if seen["ray_up"] else None,
        "ray_up_from": seen["ray_up_from"],
        "to_first_request_s": round(stats["first_start"] - seen["start"], 2) if stats.get("first_start") else None,
        "after_last_request_s": round(seen["end"] - stats["last_end"], 2) if stats.get("last_end") else None,
        "endpoint_cpu_s": round(stats["endpoint_cpu_s"], 1),  # the simulator's share of the 2 CPUs
        "rss_timeline_mb": [(t, round(kb / 1024)) for t, kb in seen["rss_timeline"][:: max(1, len(seen["rss_timeline"]) // 12)]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,200000", help="Problem-set sizes, comma-separated (e.g. 2000,10000 for a quick run).")
    parser.add_argument("--cap", type=int, default=128, help="batch.max_concurrent_solves (as pipelines/qvq-72b-vllm.yaml).")
    parser.add_argument("--replicas", type=int, default=1, help="batch.num_replicas.")
    parser.add_argument("--no-stream", action="store_true", help="policy.loop_cutoff off: plain requests instead of streams.")
    add_job_arguments(parser, job_timeout_s=7200.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    work = Path(tempfile.mkdtemp(prefix="qvq-scale-"))
    results = []
    with SimEndpoint(zero_latency=True) as endpoint:
        print(f"sizes {', '.join(f'{s:,}' for s in sizes)} rows; zero-latency simulated endpoint; job on {args.num_cpus} CPUs, "
              f"cap {args.cap} x {args.replicas} actor(s), rows_per_batch {args.rows_per_batch or args.cap}, "
              f"{'plain requests' if args.no_stream else 'streamed'}")
        print(f"{'rows':>9}{'peak RSS MB':>12}{'at last row':>12}{'anon':>7}{'shmem':>7}"
              f"{'wall s':>9}{'Ray up s':>9}{'1st req s':>10}{'rows/s':>8}{'after Ray up':>13}{'solving':>9}")
        for size in sizes:
            r = run_size(endpoint, size, work, args)
            results.append(r)
            print(f"{size:>9,}{r['peak_rss_mb']:>12.1f}{num(r['peak_rss_at_last_row_mb'], '.1f'):>12}"
                  f"{r['peak_anon_mb']:>7.0f}{r['peak_shmem_mb']:>7.0f}{r['wall_s']:>9.1f}{num(r['ray_up_s'], '.1f'):>9}"
                  f"{num(r['to_first_request_s'], '.1f'):>10}{r['rows_per_s']:>8.1f}"
                  f"{num(r['rows_per_s_after_ray_up'], '.1f'):>13}{num(r['rows_per_s_solving'], '.1f'):>9}", flush=True)
            if r["ray_up_from"] != "ray.init returned":
                print(f"  note: 'Ray up' is when {r['ray_up_from']} (the CLI's Ray start was not seen returning)")
            print(f"  the simulated endpoint used {r['endpoint_cpu_s']:.1f} CPU s of the machine's; "
                  f"first request {num(r['to_first_request_s'], '.1f')} s after start, last one {num(r['after_last_request_s'], '.1f')} s before exit")
            print("  driver RSS MB over time: " + " ".join(f"{t:g}s:{mb}" for t, mb in r["rss_timeline_mb"]))
            if r["rows_out"] != size or r["requests"] != size:
                print(f"  warning: {size:,} rows in, {r['rows_out']} out, {r['requests']} requests (exit {r['returncode']})")
    ok = all(r["rows_out"] == r["rows"] for r in results)
    growth = results[-1]["peak_rss_mb"] - results[0]["peak_rss_mb"] if len(results) > 1 else None
    growth_last_row = (
        results[-1]["peak_rss_at_last_row_mb"] - results[0]["peak_rss_at_last_row_mb"]
        if len(results) > 1 and results[-1]["peak_rss_at_last_row_mb"] and results[0]["peak_rss_at_last_row_mb"] else None
    )
    rate = results[-1]["rows_per_s_after_ray_up"]
    first, last = results[0]["rows"], results[-1]["rows"]
    if growth is not None:
        line = f"driver peak RSS growth {first:,} -> {last:,} rows: {growth:+.1f} MB"
        if growth_last_row is not None:
            line += f" (up to the last row written: {growth_last_row:+.1f} MB)"
        line += f"; target < {GROWTH_TARGET_MB:g} MB from 10,000 to 200,000 rows: {'meets' if growth < GROWTH_TARGET_MB else 'ABOVE'}"
        if (first, last) != (10_000, 200_000):
            line += " (not the target's sizes)"
        print(line)
    if rate is not None:
        print(f"rows/s after Ray is up at {last:,} rows: {rate:.1f}; target >= {RATE_TARGET:g} rows/s on 2 CPUs: "
              f"{'meets' if rate >= RATE_TARGET else 'BELOW'}" + ("" if args.num_cpus == 2 else f" (run on {args.num_cpus} CPUs)"))
    if not ok:
        print("warning: some run lost rows or failed; see the work directory")
    if args.keep or not ok:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({
        "benchmark": "batch_scale", "sizes": sizes, "num_cpus": args.num_cpus, "cap": args.cap,
        "replicas": args.replicas, "rows_per_batch": args.rows_per_batch or args.cap, "stream": not args.no_stream,
        "runs": [{k: v for k, v in r.items() if k != "rss_timeline_mb"} for r in results],
        "growth_mb": round(growth, 1) if growth is not None else None,
        "growth_to_last_row_mb": round(growth_last_row, 1) if growth_last_row is not None else None,
        "growth_target_mb": GROWTH_TARGET_MB,
        "rows_per_s_after_ray_up": rate, "rows_per_s_target": RATE_TARGET,
        "meets_growth": growth is not None and growth < GROWTH_TARGET_MB,
        "meets_rate": rate is not None and rate >= RATE_TARGET,
    }))


if __name__ == "__main__":
    main()
