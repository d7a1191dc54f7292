"""`qvq-ray` command line. Imports stay lazy so `qvq-ray --help` answers at once."""

from __future__ import annotations

import argparse
import json
import sys


def _load_config(args):
    """--config if given; else the tiny CPU preset for the tiny model, and plain defaults for real ones."""
    from qvq_ray.config import QvqConfig
    from qvq_ray.engines.tiny import TINY_ALIASES

    model = getattr(args, "model", None)
    if getattr(args, "config", None):
        config = QvqConfig.from_yaml(args.config)
    elif model in (None, *TINY_ALIASES):
        config = QvqConfig.preset("tiny-cpu")
    else:
        config = QvqConfig()
    if model:
        config.model.path = model
    return config


def cmd_solve(args) -> int:
    from qvq_ray.batch.pipeline import run_solve_job

    config = _load_config(args)
    if args.max_attempts:
        config.policy.max_attempts = args.max_attempts
    if args.max_tokens:
        config.sampling.max_tokens = args.max_tokens
    if args.replicas:
        config.batch.num_replicas = args.replicas
    if args.output_format:
        config.batch.output_format = args.output_format
    summary = run_solve_job(
        args.input,
        args.out,
        config,
        limit=args.limit,
        input_format=args.format,
        address=args.address,
        num_cpus=args.num_cpus,
    )
    print(f"qvq-ray solve: {args.input} -> {args.out}  (model {config.model.path})")
    for line in summary.lines():
        print("  " + line)
    print(json.dumps(summary.model_dump()))
    return 0 if summary.rows_out == summary.rows_in else 1


def cmd_serve(args) -> int:
    from qvq_ray.serve.run import run_serve_config

    run_serve_config(args.config_file, address=args.address, blocking=not args.no_block)
    return 0


def cmd_make_tiny_model(args) -> int:
    from qvq_ray.engines.tiny import checkpoint_digest, make_tiny_model

    path = make_tiny_model(args.dir, seed=args.seed)
    print(f"tiny Qwen2-VL written to {path} (seed {args.seed}, sha256 {checkpoint_digest(path)[:16]})")
    return 0


def cmd_verify(args) -> int:
    from qvq_ray.verify import check

    response = sys.stdin.read() if args.response in (None, "-") else open(args.response, encoding="utf-8").read()
    verdict = check(response, args.gold, choices=args.choices or None, timeout_s=args.timeout)
    print(verdict.model_dump_json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qvq-ray", description="Run QVQ / Qwen2-VL on Ray: batch solving with Ray Data, serving with Ray Serve."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    solve = sub.add_parser("solve", help="Solve a problem set with a Ray Data job; write Parquet and print a summary.")
    solve.add_argument("input", help="Problem set: our JSONL/Parquet, or a native benchmark (MathVision dir/jsonl).")
    solve.add_argument("--out", required=True, help="Output directory (must be new or empty).")
    solve.add_argument("--model", help="Checkpoint path or HF id, or 'tiny' (default from config: tiny).")
    solve.add_argument("--config", help="QvqConfig YAML (see pipelines/); default: the tiny CPU preset for --model tiny.")
    solve.add_argument("--limit", type=int, help="Solve only the first N problems.")
    solve.add_argument("--format", help="Force the input format (problems, mathvision).")
    solve.add_argument("--address", help="Join an existing Ray cluster instead of starting a local one.")
    solve.add_argument("--num-cpus", type=int, help="CPUs of the local cluster started for the run.")
    solve.add_argument("--replicas", type=int, help="Engine replicas (actors) in the solve stage.")
    solve.add_argument("--max-attempts", type=int, help="Most attempts per problem.")
    solve.add_argument("--max-tokens", type=int, help="Max new tokens per attempt.")
    solve.add_argument("--output-format", choices=["parquet", "jsonl"])
    solve.set_defaults(func=cmd_solve)

    serve = sub.add_parser("serve", help="Run a Serve config file (e.g. serve_configs/tiny-cpu.yaml).")
    serve.add_argument("config_file")
    serve.add_argument("--address", help="Join an existing Ray cluster.")
    serve.add_argument("--no-block", action="store_true", help="Deploy and return instead of serving until Ctrl-C.")
    serve.set_defaults(func=cmd_serve)

    tiny = sub.add_parser("make-tiny-model", help="Build the embedded tiny Qwen2-VL checkpoint offline.")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=cmd_make_tiny_model)

    verify = sub.add_parser("verify", help="Extract the final answer of a response and check it against gold.")
    verify.add_argument("response", nargs="?", help="File with the response; '-' or omitted reads stdin.")
    verify.add_argument("--gold", help="Gold answer.")
    verify.add_argument("--choices", nargs="*", help="Multiple-choice options, in order A, B, ...")
    verify.add_argument("--timeout", type=float, default=5.0)
    verify.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
