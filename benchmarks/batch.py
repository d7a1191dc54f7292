"""The batch job's throughput vs a plain in-process loop, and loading + preparing rate.

(1) problems/s of `run_solve_job` (Ray Data: prepare tasks -> engine actor -> score actor -> files)
    vs a plain in-process loop calling the same engine, solver and verifier on the same problems
    (asyncio, same concurrency, no Ray), tiny model, same config. Target: >= 0.8x on 2 CPUs.
    Both timings include loading the model; the Ray figure includes starting the local cluster.
(2) rows/s of loading + preparing (decode, validate, resize) a few thousand problems with images:
    the Ray Data prepare stage vs the same work in a plain loop.
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "problems"


def make_problem_set(directory: Path, count: int) -> Path:
    """`count` problems: the bundled examples repeated under new ids (images shared by path)."""
    rows = [json.loads(line) for line in (EXAMPLES / "problems.jsonl").read_text().splitlines() if line.strip()]
    (directory / "images").mkdir(parents=True, exist_ok=True)
    for image in (EXAMPLES / "images").iterdir():
        shutil.copy(image, directory / "images" / image.name)
    with open(directory / "problems.jsonl", "w") as handle:
        for i in range(count):
            row = dict(rows[i % len(rows)], id=f"{rows[i % len(rows)]['id']}-{i}")
            handle.write(json.dumps(row) + "\n")
    return directory


def in_process(input_dir: Path, config) -> tuple[float, int]:
    from qvq_ray.batch.pipeline import _input_rows
    from qvq_ray.engines import build_engine
    from qvq_ray.images import prepare_problem_images
    from qvq_ray.problem import problem_from_row
    from qvq_ray.solver import Solver
    from qvq_ray.verify import Verifier

    started = time.perf_counter()
    rows = _input_rows(str(input_dir), None, None)
    engine = build_engine(config)
    verifier = Verifier(config.verifier)
    solver = Solver.from_config(engine, verifier, config)
    limit = asyncio.Semaphore(config.batch.max_concurrent_solves)

    async def one(row):
        problem = problem_from_row({k: v for k, v in row.items() if k != "error"})
        async with limit:
            solution = await solver.solve(problem, image_bytes=prepare_problem_images(problem.images, config.model))
        if problem.answer and solution.answer:
            await verifier.compare(solution.answer, problem.answer, problem.spec)
        return solution

    async def run():
        return await asyncio.gather(*(one(row) for row in rows))

    solutions = asyncio.run(run())
    verifier.close()
    return time.perf_counter() - started, len(solutions)


def with_ray(input_dir: Path, config, num_cpus: int) -> tuple[float, int]:
    from qvq_ray.jobs import run_solve_job

    out = Path(tempfile.mkdtemp(prefix="qvq-bench-out-"))
    shutil.rmtree(out)
    started = time.perf_counter()
    summary = run_solve_job(str(input_dir), str(out), config, num_cpus=num_cpus, printer=lambda _: None)
    return time.perf_counter() - started, summary.rows_out


def prepare_rates(input_dir: Path, config, num_cpus: int) -> tuple[float, float, int]:
    import pyarrow as pa
    import ray

    from qvq_ray.batch.pipeline import _input_rows, prepare_images_batch
    from qvq_ray.image_files import ImageRoots
    from qvq_ray.problem import input_schema
    from qvq_ray.images import prepare_problem_images
    from qvq_ray.problem import problem_from_row

    started = time.perf_counter()
    rows = _input_rows(str(input_dir), None, None)
    for row in rows:
        prepare_problem_images(problem_from_row({k: v for k, v in row.items() if k != "error"}).images, config.model)
    plain = len(rows) / (time.perf_counter() - started)

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)  # our own cluster, never one found in /tmp/ray
    try:
        started = time.perf_counter()
        rows = _input_rows(str(input_dir), None, None)
        table = pa.Table.from_pylist(rows, schema=input_schema())
        ds = ray.data.from_arrow([table.slice(i, 64) for i in range(0, len(rows), 64)])
        roots = ImageRoots.of([input_dir])  # the job reads image files only inside the problem set's folder
        ds = ds.map_batches(prepare_images_batch, fn_kwargs={"config_json": config.model_dump_json(), "image_roots": roots},
                            batch_format="pyarrow", num_cpus=0.5)
        count = sum(b.num_rows for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))
        parallel = count / (time.perf_counter() - started)
    finally:
        ray.shutdown()
    return plain, parallel, len(rows)


def main() -> None:
    from qvq_ray.config import QvqConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=480)
    parser.add_argument("--prepare-problems", type=int, default=3000)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    config = QvqConfig.preset("tiny-cpu")
    config.sampling.max_tokens = args.max_tokens
    work = Path(tempfile.mkdtemp(prefix="qvq-bench-"))
    solve_set = make_problem_set(work / "solve", args.problems)
    prepare_set = make_problem_set(work / "prepare", args.prepare_problems)

    plain_s, plain_n = in_process(solve_set, config)
    ray_s, ray_n = with_ray(solve_set, config, args.num_cpus)
    plain_rate, ray_rate = plain_n / plain_s, ray_n / ray_s
    print(f"(1) {args.problems} problems, tiny model, max_tokens {args.max_tokens}, {args.num_cpus} CPUs")
    print(f"{'':28}{'seconds':>9}{'problems/s':>12}")
    print(f"{'in-process loop (baseline)':28}{plain_s:>9.1f}{plain_rate:>12.2f}")
    print(f"{'Ray Data job':28}{ray_s:>9.1f}{ray_rate:>12.2f}")
    ratio = ray_rate / plain_rate
    print(f"ratio {ratio:.2f}x (target >= 0.8x)")

    plain_prep, ray_prep, prep_n = prepare_rates(prepare_set, config, args.num_cpus)
    print(f"\n(2) load + prepare {prep_n} problems with images")
    print(f"{'plain loop (baseline)':28}{plain_prep:>9.0f} rows/s")
    print(f"{'Ray Data prepare stage':28}{ray_prep:>9.0f} rows/s")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({
        "benchmark": "batch", "problems": args.problems, "num_cpus": args.num_cpus,
        "in_process": {"seconds": round(plain_s, 2), "problems_per_s": round(plain_rate, 3)},
        "ray_job": {"seconds": round(ray_s, 2), "problems_per_s": round(ray_rate, 3)}, "ratio": round(ratio, 3),
        "prepare": {"rows": prep_n, "plain_rows_per_s": round(plain_prep, 1), "ray_rows_per_s": round(ray_prep, 1)},
    }))


if __name__ == "__main__":
    main()
