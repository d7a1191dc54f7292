"""`qvq-ray` command line. Imports stay lazy so `qvq-ray --help` answers at once."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TextIO

from qvq_ray.console import accept_stop_signals, validation_line, yaml_error_line

if TYPE_CHECKING:
    from qvq_ray.config import QvqConfig


class UsageError(Exception):
    """A mistake the user can fix (a path, a format, a config key or value): `main` prints it as
    one line, `qvq-ray COMMAND: MESSAGE`, and exits 2, without a traceback."""


def usage_error(command: str, message: str) -> int:
    """Print a user mistake as one line on stderr; the exit code for it (2, as argparse uses)."""
    print(f"qvq-ray {command}: {message}", file=sys.stderr)
    return 2


def _read_config(path: str) -> QvqConfig:
    """QvqConfig from a YAML file; a missing file, bad YAML or an invalid key is a UsageError."""
    import yaml
    from pydantic import ValidationError

    from qvq_ray.config import QvqConfig

    try:
        return QvqConfig.from_yaml(path)
    except OSError as exc:
        raise UsageError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(yaml_error_line(f"--config {path}", exc)) from None
    except ValidationError as exc:
        raise UsageError(f"invalid config {path}: {validation_line(exc)}") from None


def _load_config(args: argparse.Namespace) -> QvqConfig:
    """--config if given; else the tiny CPU preset for the tiny model, and plain defaults for real ones."""
    from qvq_ray.config import QvqConfig
    from qvq_ray.models.tiny import TINY_ALIASES

    model = getattr(args, "model", None)
    if getattr(args, "config", None):
        config = _read_config(args.config)
    elif model in (None, *TINY_ALIASES):
        config = QvqConfig.preset("tiny-cpu")
    else:
        config = QvqConfig()
    if model:
        _override(config, "model.path", model, "--model")
    return config


def _override(config: QvqConfig, key: str, value: object, flag: str) -> None:
    """Set `key` (dotted) from a command-line flag; a value the config refuses is a UsageError."""
    from pydantic import ValidationError

    section, _, field = key.rpartition(".")
    target: Any = config
    for part in section.split(".") if section else []:
        target = getattr(target, part)
    try:
        setattr(target, field, value)
    except ValidationError as exc:
        raise UsageError(f"{flag} {value}: {validation_line(exc, prefix=section)}") from None


def cmd_solve(args: argparse.Namespace) -> int:
    from qvq_ray import jobs
    from qvq_ray.batch import pipeline

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1 (--limit {args.limit} would solve no problems)")
    config = _load_config(args)
    engine = getattr(args, "engine", None)
    base_url = getattr(args, "base_url", None)
    if base_url and engine not in (None, "openai"):
        raise UsageError(f"--base-url is for --engine openai, not --engine {engine}")
    kind = engine or ("openai" if base_url else None)
    if kind and kind != config.engine.kind:  # another kind: its own settings, the shared ones kept
        from qvq_ray.config import ENGINE_CONFIGS

        config.engine = ENGINE_CONFIGS[kind](max_batch_size=config.engine.max_batch_size)
    if base_url:
        _override(config, "engine.base_url", base_url, "--base-url")
    if config.engine.kind == "openai" and not config.engine.base_url:
        raise UsageError("--engine openai needs --base-url (or engine.base_url in --config)")
    if args.self_consistency:
        config.policy.self_consistency = True
    if args.allow_paths_outside:
        config.batch.allow_paths_outside = True
    _apply_judge_flags(config, args)
    for flag, key, value in (
        ("--max-attempts", "policy.max_attempts", args.max_attempts),
        ("--mode", "policy.mode", args.mode),
        ("--quorum", "policy.quorum", args.quorum),
        ("--max-tokens", "sampling.max_tokens", args.max_tokens),
        ("--replicas", "batch.num_replicas", args.replicas),
        ("--output-format", "batch.output_format", args.output_format),
        ("--prompt-preset", "prompt.preset", args.prompt_preset),
    ):
        if value is not None:
            _override(config, key, value, flag)
    input_path = args.input or config.batch.input
    out_dir = args.out or config.batch.output
    if not input_path or not out_dir:
        raise UsageError("give INPUT and --out (or batch.input and batch.output in --config)")
    args.input, args.out = input_path, out_dir
    from qvq_ray.cluster import ray_start_listener
    from qvq_ray.report.runinfo import RunRecorder, solve_record
    from qvq_ray.results.parts import part_files
    from qvq_ray.stderr_filter import RAY_STOP_LINES, drop_printed_lines

    recorder = RunRecorder(out_dir, solve_record(config, argv=args.argv, input_path=input_path, resume=args.resume))

    def on_ray(event: str, text: str) -> None:
        if event == "starting":
            say(f"{text} ...")
            return
        recorder.write()  # Ray starts only past the pipeline's checks: the output folder is ours
        stopping.enter_context(drop_printed_lines(RAY_STOP_LINES))  # a Ctrl-C's stop stays one line
        replicas = config.batch.num_replicas
        say(f"{text}; loading {config.model.path} ({config.engine.kind} engine, {replicas} "
            f"replica{'s' if replicas != 1 else ''}): progress shows as the first problems are solved ...")

    def say(line: str) -> None:
        print(f"qvq-ray solve: {line}", file=sys.stderr, flush=True)

    try:
        with ExitStack() as stopping, ray_start_listener(on_ray):
            summary = jobs.run_solve_job(
                input_path,
                out_dir,
                config,
                limit=args.limit if args.limit is not None else config.batch.limit,
                input_format=args.format or config.batch.input_format,
                images_dir=args.images,
                address=args.address,
                num_cpus=args.num_cpus,
                resume=args.resume,
                check_images_first=True,
                verbose=args.verbose,
                printer=progress_printer(sys.stderr),
                warn=lambda message: print(f"qvq-ray solve: warning: {message}", file=sys.stderr, flush=True),
            )
    except pipeline.JobInputError as exc:
        recorder.refused = True  # the folder is as the job found it (maybe someone else's rows): no record
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        done = len(part_files(out_dir)) if Path(out_dir).is_dir() else 0
        print(f"\nqvq-ray solve: interrupted ({done} part file{'s' if done != 1 else ''} in {out_dir}); "
              f"to go on: {resume_command(args.argv)}", file=sys.stderr, flush=True)
        return INTERRUPTED
    finally:
        recorder.settle()
    print(f"qvq-ray solve: {args.input} -> {args.out}  (model {config.model.path})")
    for line in summary.lines():
        print("  " + line)
    print(summary.headline)  # from the summary's own pass over the output
    print(f"full report: qvq-ray report {out_dir}")
    print(json.dumps(summary.model_dump()))
    return 0 if summary.rows_out == summary.rows_in else 1


#: Exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


def resume_command(argv: list[str]) -> str:
    """The command line that continues an interrupted `qvq-ray solve`: the same one, with --resume."""
    from qvq_ray.report.runinfo import command_line

    return command_line([*argv, *([] if "--resume" in argv else ["--resume"])])


def progress_printer(stream: TextIO) -> Callable[[str], None] | None:
    """None (the pipeline's own choice: a bar on a terminal, lines elsewhere), or plain lines on a
    terminal that reports no width (a pty without a window size): a tqdm bar there prints nothing."""
    import os

    try:
        if not stream.isatty() or os.get_terminal_size(stream.fileno()).columns > 0:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    return lambda line: print(line, file=stream, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    import tempfile

    from qvq_ray.cluster import ray_start_listener
    from qvq_ray.serve.app import run_serve_config
    from qvq_ray.stderr_filter import RAY_STOP_LINES, drop_printed_lines

    def on_ray(event: str, text: str) -> None:
        if event == "started":  # the replicas Serve's shutdown ends: no line each on the console
            filtered.enter_context(drop_printed_lines(RAY_STOP_LINES))
        more = " ..." if event == "starting" else "; deploying the applications (each loads its model) ..."
        print(f"qvq-ray serve: {text}{more}", flush=True)

    with tempfile.TemporaryDirectory(prefix="qvq-ray-serve-") as scratch, ExitStack() as filtered:
        config_file = args.config_file
        if args.prompt_preset:
            config_file = serve_config_with_preset(args.config_file, args.prompt_preset, Path(scratch))
        try:
            with ray_start_listener(on_ray):
                run_serve_config(config_file, address=args.address, blocking=not args.no_block, host=args.host,
                                 port=args.port)
        except (OSError, ValueError) as exc:  # the file, its YAML, its QvqConfig: checked before Ray starts
            raise UsageError(str(exc).replace(str(config_file), args.config_file)) from None
    if not args.no_block:
        print("qvq-ray serve: stopped", flush=True)
    return 0


#: Serve application builders whose args hold a QvqConfig (`config` or `config_path`).
QVQ_BUILDERS = ("qvq_ray.serve.app:build_app", "qvq_ray.serve.app.build_app")


def serve_config_with_preset(path: str, preset: str, scratch: Path) -> str:
    """A copy of the Serve config file (in `scratch`) whose qvq-ray applications use `preset` (a
    `config_path` is read into the copy); the file itself where it cannot be read (run_serve_config
    then says why)."""
    import yaml
    from pydantic import ValidationError

    from qvq_ray.prompt_config import PromptConfig

    try:
        PromptConfig(preset=preset)
    except ValidationError as exc:
        raise UsageError(f"--prompt-preset {preset}: {validation_line(exc)}") from None
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return path
    apps = spec.get("applications") if isinstance(spec, dict) else None
    ours = [a for a in apps or [] if isinstance(a, dict) and a.get("import_path") in QVQ_BUILDERS]
    if not ours:
        raise UsageError(f"--prompt-preset: {path} has no qvq-ray application (import_path {QVQ_BUILDERS[0]})")
    for app in ours:
        app_args: dict[str, Any] = app["args"] if isinstance(app.get("args"), dict) else {}
        if "config_path" in app_args:
            try:
                config = yaml.safe_load(Path(app_args["config_path"]).read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue  # left as it is: run_serve_config names the problem
        else:
            config = app_args.get("config") or {}
        if not isinstance(config, dict):
            continue
        prompt = config["prompt"] if isinstance(config.get("prompt"), dict) else {}
        app["args"] = {"config": {**config, "prompt": {**prompt, "preset": preset}}}
    copy = scratch / Path(path).name
    copy.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(copy)


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from qvq_ray.models.tiny import checkpoint_digest, make_tiny_model

    try:
        path = make_tiny_model(args.dir, seed=args.seed)
    except OSError as exc:
        raise UsageError(f"cannot write {args.dir}: {exc.strerror or exc}") from None
    print(f"tiny Qwen2-VL written to {path} (seed {args.seed}, sha256 {checkpoint_digest(path)[:16]})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Print the verdict of one response (a file, or stdin) as JSON; exit 0 unless it cannot run."""
    from qvq_ray.config import VerifierConfig
    from qvq_ray.verify import Verifier

    if args.response in (None, "-"):
        response = sys.stdin.read()
    else:
        try:
            with open(args.response, encoding="utf-8", errors="replace") as f:
                response = f.read()
        except OSError as exc:
            print(f"qvq-ray verify: cannot read {args.response}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    from pydantic import ValidationError

    from qvq_ray.verify.spec import AnswerSpec

    try:
        spec = AnswerSpec(
            choices=args.choices or [],
            unit=args.unit,
            tolerance=args.tolerance,
            answer_type=args.answer_type,
            precision=args.precision,
        )
    except ValidationError as exc:
        print(f"qvq-ray verify: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    try:
        config = VerifierConfig(timeout_s=args.timeout, workers=1, missing_unit=args.missing_unit)
    except ValidationError as exc:
        raise UsageError(f"--timeout {args.timeout}: {validation_line(exc)}") from None
    with Verifier(config) as verifier:
        verdict = verifier.check_sync(response, spec, gold=args.gold, finish_reason=args.finish_reason)
    print(verdict.model_dump_json())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One run: its report in DIR.report/ (never among the part files). Two runs: B against A."""
    from qvq_ray.report.summary import headline_table, read_output, write_report

    if len(args.dirs) > 2:
        raise UsageError("give one output directory, or two (RUN_A RUN_B) to compare")
    if args.max_problems < 0:
        raise UsageError("--max-problems must be >= 0")
    try:
        if len(args.dirs) == 2:
            from qvq_ray.report.compare import write_comparison

            written, overall = write_comparison(args.dirs[0], args.dirs[1], args.report_dir)
            print(overall.text())
        else:
            written = write_report(args.dirs[0], args.report_dir, problems=args.problems,
                                   problems_format=args.format, max_problems=args.max_problems,
                                   allow_paths_outside=args.allow_paths_outside,
                                   warn=lambda message: print(f"qvq-ray report: warning: {message}", file=sys.stderr))
            print(headline_table(read_output(args.dirs[0])))
    except (FileNotFoundError, ValueError) as exc:  # a missing or empty DIR, a report folder refused, --problems
        raise UsageError(str(exc)) from None
    for name in ("report.md", "report.html"):
        print(f"{name:12} {written[name]}")
    return 0


def _apply_judge_flags(config: QvqConfig, args: argparse.Namespace) -> None:
    """--judge, --judge-url, --judge-model, --judge-cache over the config's `verifier.judge`."""
    from qvq_ray.config import JudgeConfig, OpenAIEngineConfig

    if args.judge_model and not args.judge_url:
        raise UsageError("--judge-model names the model at --judge-url: give --judge-url too")
    if (args.judge or args.judge_url or args.judge_cache) and config.verifier.judge is None:
        config.verifier.judge = JudgeConfig()
    judge = config.verifier.judge  # set above when either flag is given
    if args.judge_url and judge is not None:
        judge.engine = OpenAIEngineConfig(base_url=args.judge_url, remote_model=args.judge_model)
    if args.judge_cache and judge is not None:
        judge.cache_path = args.judge_cache


def _add_judge_arguments(parser: argparse.ArgumentParser, engine_default: str) -> None:
    parser.add_argument("--judge", action="store_true",
                        help="Ask a judge model where the rules cannot decide (no answer found, free-text gold): "
                        f"verifier.judge of --config, else default judge settings on {engine_default} or on --judge-url.")
    parser.add_argument("--judge-url", metavar="URL", help="Judge on this OpenAI-compatible endpoint (implies --judge).")
    parser.add_argument("--judge-model", metavar="NAME", help="Model name to ask at --judge-url.")
    parser.add_argument("--judge-cache", metavar="PATH", help="The judge's cache file (default: verifier.judge.cache_path).")


def _rescore_config(args: argparse.Namespace) -> QvqConfig | None:
    """The config rescore scores with (None: the verifier's defaults, rules only): --config (its whole
    verifier section, the judge included), with --judge* flags over it."""
    if not args.config and not (args.judge or args.judge_url or args.judge_model or args.judge_cache):
        return None
    config = _load_config(args)
    _apply_judge_flags(config, args)
    from qvq_ray.judge.cache import check_configured_cache

    try:
        check_configured_cache(config.verifier.judge)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if config.verifier.judge is not None and config.verifier.judge.engine is None and config.engine.kind == "hf":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the judge model loads here: no weight-loading bar on the console
    return config


def cmd_rescore(args: argparse.Namespace) -> int:
    """Re-score another tool's result file (or our own output) against a benchmark's gold answers."""
    from qvq_ray.batch.rescore import disagreement_table, rescore

    config = _rescore_config(args)
    try:
        summary = rescore(
            args.results,
            args.problems,
            args.out,
            problems_format=args.format,
            results_format=args.results_format,
            workers=args.workers,
            timeout_s=args.timeout,
            config=config,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        from pydantic import ValidationError

        raise UsageError(validation_line(exc) if isinstance(exc, ValidationError) else str(exc)) from None
    from qvq_ray.report.runinfo import rescore_record, write_run_record

    judge = None if config is None or config.verifier.judge is None else "verifier.judge of the config"
    write_run_record(args.out, rescore_record(argv=args.argv, results=args.results, results_format=summary.results_format,
                                              problems=args.problems, problems_format=args.format, judge=judge))
    print(f"qvq-ray rescore: {args.results} + {args.problems} -> {args.out}")
    for line in summary.lines():
        print("  " + line)
    if summary.disagreements:
        shown = 20
        print(f"disagreements with the tool's verdicts ({len(summary.disagreements)}, first {min(shown, len(summary.disagreements))}):")
        print(disagreement_table(summary.disagreements, limit=shown))
    if summary.disagreements_file:
        print(f"disagreement table: {summary.disagreements_file}")
    from qvq_ray.report.summary import headline_table, read_output, write_report

    print(headline_table(read_output(args.out)))
    if not args.no_report:
        written = write_report(args.out, plots=False)
        print(f"report: {written['report.md']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from qvq_ray import __version__
    from qvq_ray.prompt_presets import PRESETS

    parser = argparse.ArgumentParser(
        prog="qvq-ray", description="Run QVQ / Qwen2-VL on Ray: batch solving with Ray Data, serving with Ray Serve."
    )
    parser.add_argument("--version", action="version", version=f"qvq-ray {__version__}",
                        help="Print the version and exit.")
    preset_help = (f"Prompt preset (prompt.preset of the config; default qvq): {', '.join(PRESETS)}. "
                   "Sources in README 'Prompts'.")
    sub = parser.add_subparsers(dest="command", required=True)

    solve = sub.add_parser("solve", help="Solve a problem set with a Ray Data job; write Parquet and print a summary.")
    solve.add_argument(
        "input", nargs="?", help="Problem set: our JSONL/Parquet or a native benchmark (default: batch.input of --config)."
    )
    solve.add_argument("--out", help="Output directory, new or empty unless --resume (default: batch.output).")
    solve.add_argument("--model", help="Checkpoint path or HF id, or 'tiny' (default from config: tiny).")
    solve.add_argument("--config", help="QvqConfig YAML (see pipelines/); default: the tiny CPU preset for --model tiny.")
    solve.add_argument("--limit", type=int, help="Solve only the first N problems (N >= 1).")
    solve.add_argument(
        "--images",
        metavar="DIR",
        help="Folder of the image files a MathVista set names (images/<pid>.jpg); default: images/ beside "
        "the JSON, or $QVQ_RAY_MATHVISTA_IMAGES. Checked before Ray starts: none found is an error, some "
        "missing a warning (those rows become error rows).",
    )
    solve.add_argument(
        "--allow-paths-outside",
        action="store_true",
        help="Read image files the problem set names outside its own folder (or --images DIR): absolute "
        "paths, '..', symlinks leaving it. Without it such rows are error rows and the files are never "
        "opened (problem sets come from strangers). Devices and FIFOs are refused either way.",
    )
    solve.add_argument(
        "--format", help="Force the input format: problems, mathvision, mathvista, mmmu, olympiadbench, vlmevalkit."
    )
    solve.add_argument("--address", help="Join this Ray cluster ('auto', host:port, ray://...); without it a new local cluster is started, never one found by accident.")
    solve.add_argument("--num-cpus", type=int, help="CPUs of the local cluster started for the run.")
    solve.add_argument("--replicas", type=int, help="Engine replicas (actors) in the solve stage.")
    solve.add_argument("--max-attempts", type=int, help="Most attempts per problem.")
    solve.add_argument("--max-tokens", type=int, help="Max new tokens per attempt.")
    solve.add_argument("--output-format", choices=["parquet", "jsonl"], help="Part file format (default: batch.output_format, parquet).")
    solve.add_argument("--prompt-preset", metavar="NAME", help=preset_help)
    solve.add_argument("--resume", action="store_true", help="Skip ids already written in --out (after a crash).")
    solve.add_argument("--mode", choices=["self", "oracle"], help="self: gold never read; oracle: rejection sampling (pass@k).")
    _add_judge_arguments(solve, "the solving engine (the engine actors)")
    solve.add_argument("--self-consistency", action="store_true", help="Vote over up to --max-attempts answers.")
    solve.add_argument("--quorum", type=int, help="Self-consistency: stop once an answer has this many votes.")
    solve.add_argument(
        "--engine",
        choices=["hf", "vllm", "openai"],
        help="Engine (default from config: hf). vllm needs `pip install 'qvq-ray[vllm]'` and CUDA; "
        "openai sends every generation to --base-url.",
    )
    solve.add_argument(
        "--base-url",
        help="OpenAI-compatible endpoint for --engine openai, e.g. http://host:8000/v1 "
        "(API key from $OPENAI_API_KEY; model name from --model).",
    )
    solve.add_argument("--verbose", action="store_true", help="Show Ray's own logs (quiet by default).")
    solve.set_defaults(func=cmd_solve)

    serve = sub.add_parser("serve", help="Run a Serve config file (e.g. serve_configs/tiny-cpu.yaml).")
    serve.add_argument("config_file", help="Serve config file: applications, http_options, each qvq-ray app's QvqConfig in args.")
    serve.add_argument("--address", help="Join this Ray cluster ('auto', host:port, ray://...); without it a new local cluster is started.")
    serve.add_argument("--host", help="Address to listen on (overrides http_options.host of the file; default 127.0.0.1).")
    serve.add_argument("--port", type=int, help="Port to listen on (overrides http_options.port of the file; default 8000).")
    serve.add_argument("--no-block", action="store_true", help="Deploy and return instead of serving until Ctrl-C.")
    serve.add_argument("--prompt-preset", metavar="NAME",
                       help=preset_help + " Set in every qvq-ray application of the file (a copy is served; the file is not changed).")
    serve.set_defaults(func=cmd_serve)

    tiny = sub.add_parser("make-tiny-model", help="Build a random-weight tiny Qwen2-VL checkpoint offline (what --model tiny-random uses).")
    tiny.add_argument("dir", help="Folder to write the checkpoint to (config, weights, tokenizer, processor).")
    tiny.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default 0): the same seed, the same checkpoint.")
    tiny.set_defaults(func=cmd_make_tiny_model)

    verify = sub.add_parser(
        "verify",
        help="Extract the final answer of a response, run the health checks and check it against gold; print JSON.",
    )
    verify.add_argument("response", nargs="?", help="File with the response; '-' or omitted reads stdin.")
    verify.add_argument("--gold", help="Gold answer (omit for the gold-free checks only).")
    verify.add_argument("--choices", nargs="*", help="Multiple-choice options, in order A, B, ...")
    verify.add_argument("--unit", help="Unit of the gold answer, e.g. 'm/s' (a bare number in the answer is read in it).")
    verify.add_argument(
        "--tolerance",
        help="Absolute tolerance of numeric answers: one number for every answer (e.g. 1e-2), or one per answer of a "
        "multi-answer problem, comma-separated, empty = exact (OlympiadBench's form: ',1e-2' leaves the first "
        "answer exact).",
    )
    verify.add_argument("--answer-type", help="e.g. Numerical, Expression, Equation, Interval, Tuple, list, float.")
    verify.add_argument("--precision", type=int, help="Decimal places numeric answers are rounded to (MathVista).")
    verify.add_argument("--finish-reason", default="stop", help="The engine's finish reason ('length' flags truncated).")
    verify.add_argument(
        "--missing-unit",
        choices=["reject", "assume_gold"],
        default="reject",
        help="A gold with a unit against an answer without one (default: reject).",
    )
    verify.add_argument("--timeout", type=float, default=5.0, help="Seconds one check may take (default 5).")
    verify.set_defaults(func=cmd_verify)

    report = sub.add_parser(
        "report",
        help="Write report.md and a self-contained report.html for a solve job's output; "
        "with two output directories (RUN_A RUN_B), compare B against A.",
    )
    report.add_argument("dirs", nargs="+", metavar="DIR",
                        help="Output directory of `qvq-ray solve` (Parquet or JSONL files); two to compare runs.")
    report.add_argument("--report-dir", "--out", dest="report_dir",
                        help="Report folder (default: DIR.report/ beside DIR; RUN_B.vs-RUN_A.report/ for two runs). "
                        "Never among the part files: inside DIR only under a name starting with '_'.")
    report.add_argument("--problems", help="The problem set the run solved (any input `qvq-ray solve` reads), "
                        "for image thumbnails in the per-problem view.")
    report.add_argument("--format", help="Force the --problems format (as `qvq-ray solve --format`).")
    report.add_argument("--allow-paths-outside", action="store_true",
                        help="Thumbnails from image files --problems names outside its own folder (as `qvq-ray "
                        "solve --allow-paths-outside`); without it those problems show no thumbnail.")
    report.add_argument("--max-problems", type=int, default=100,
                        help="Problems in report.html's per-problem view, failures first (default 100; 0: none).")
    report.set_defaults(func=cmd_report)

    rescore = sub.add_parser(
        "rescore",
        help="Re-score result files of other tools (MATH-V JSONL, MathVista JSON, VLMEvalKit TSV/XLSX, our Parquet) "
        "against a benchmark; write solve-style Parquet rows with the tool's verdict beside ours.",
    )
    rescore.add_argument("results", help="Result file: .jsonl (MATH-V), .json (MathVista), .tsv/.xlsx (VLMEvalKit), "
                         ".parquet or a `qvq-ray solve` output directory.")
    rescore.add_argument("--problems", required=True, help="The benchmark's problems (any input `qvq-ray solve` reads).")
    rescore.add_argument(
        "--format", help="Force the problems' format: problems, mathvision, mathvista, mmmu, olympiadbench, vlmevalkit."
    )
    rescore.add_argument("--results-format", choices=["mathvision", "mathvista", "vlmevalkit", "parquet"],
                         help="Force the results' format (default: told from the suffix).")
    rescore.add_argument("--out", required=True, help="Output directory, new or empty; the disagreement table goes to OUT.disagreements.md.")
    rescore.add_argument("--workers", type=int, help="Verifier worker processes (default: verifier.workers of --config, else 2).")
    rescore.add_argument("--timeout", type=float, help="Seconds one check may take (default: verifier.timeout_s of --config, else 5).")
    rescore.add_argument("--no-report", action="store_true", help="Skip writing the report (OUT.report/, beside OUT).")
    rescore.add_argument("--config", help="QvqConfig YAML: its verifier.judge (if set) judges what the rules leave undecided.")
    _add_judge_arguments(rescore, "the config's engine, loaded here (the tiny model without --config)")
    rescore.set_defaults(func=cmd_rescore)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: for the --resume hint and the run record
    if argv is None:  # the console script, not a call from Python code
        accept_stop_signals()
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except UsageError as exc:
        return usage_error(args.command, str(exc))


if __name__ == "__main__":
    sys.exit(main())
