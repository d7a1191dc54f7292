"""Run the real `qvq-ray solve` as a subprocess and watch it from outside (for the batch benchmarks).

What it records (all on CLOCK_MONOTONIC, which the simulated endpoint's /stats shares, so the
timings line up across processes):
- start and exit of the driver process, its exit code, its stdout JSON summary (the last line);
- when the job's Ray start returned (a marker line the wrapper around the CLI prints; see _CLI),
  and when Ray's own processes (gcs_server, raylet) first appear as the driver's children (the
  fallback mark of "Ray is up" where the marker never comes);
- the driver's peak RSS: /proc/PID/status VmHWM (the kernel's high-water mark of this one process;
  Ray's workers, raylet and GCS are other processes and never counted), polled every `poll_s`, plus
  VmRSS over time and the largest RssAnon (private) and RssShmem (shared memory mapped: Ray's
  object store pages the driver reads count in its RSS) seen; and VmHWM when the job's last progress line (all rows written) arrived, apart
  from the peak at exit (the summary and report the CLI prints read the output back);
- the progress lines (stderr) with their times.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_PROGRESS = re.compile(r"progress (\d+)/(\d+) done")


# What the `qvq-ray` console script runs (qvq_ray.cli:main, argv from sys.argv), plus one marker
# line on stderr when the job's Ray start returns (qvq_ray.cluster.start_or_join_ray, looked up by
# the pipeline at call time). Where the code starts Ray some other way the marker never comes and
# the raylet/GCS children are the "Ray is up" mark instead.
_CLI = """
import sys, time
import qvq_ray.cluster as cluster
_start = cluster.start_or_join_ray
def _marked(*args, **kwargs):
    result = _start(*args, **kwargs)
    print(f"@@ray-up {time.monotonic()}", file=sys.stderr, flush=True)
    return result
cluster.start_or_join_ray = _marked
sys.argv[0] = "qvq-ray"
from qvq_ray.cli import main
sys.exit(main())
"""
_RAY_UP = re.compile(r"^@@ray-up ([0-9.]+)")


def add_job_arguments(parser, *, job_timeout_s: float) -> None:
    """The flags every batch benchmark passes on to its `qvq-ray solve` runs."""
    parser.add_argument("--rows-per-batch", type=int, default=None,
                        help="batch.rows_per_batch: rows per part file (default: = cap, as pipelines/qvq-72b-vllm.yaml has it).")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the job's local Ray cluster.")
    parser.add_argument("--actor-cpus", type=float, default=0.5,
                        help="resources.num_cpus per engine actor (the openai engine needs little; 2 actors must fit beside the CPU stages).")
    parser.add_argument("--job-timeout", type=float, default=job_timeout_s, help="Seconds each run may take.")
    parser.add_argument("--keep", action="store_true", help="Keep the work directory (problems, configs, outputs, job logs).")


def qvq_ray_command(mark_ray_up: bool = True) -> list[str]:
    """`qvq-ray` as this interpreter's environment runs it (with the Ray-up marker, by default)."""
    script = Path(sys.executable).parent / "qvq-ray"
    if script.exists() and not mark_ray_up:
        return [str(script)]
    return [sys.executable, "-c", _CLI]


def _status_kb(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmHWM:", "VmRSS:", "RssAnon:", "RssShmem:")):
                    key, value = line.split(":", 1)
                    values[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return values


def _ray_children(pid: int) -> bool:
    """Whether gcs_server or raylet runs as a child of `pid`."""
    try:
        children = []
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                children += open(f"/proc/{pid}/task/{task}/children").read().split()
            except OSError:
                continue
        if not children:
            return False
        for child in children:
            try:
                comm = open(f"/proc/{child}/comm").read().strip()
            except OSError:
                continue
            if comm in ("raylet", "gcs_server"):
                return True
    except OSError:
        pass
    return False


def _ray_children_slow(pid: int) -> bool:
    """The same without /proc/PID/task/*/children (kernels without CONFIG_PROC_CHILDREN)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if comm in ("raylet", "gcs_server") and fields and int(fields[1]) == pid:
            return True
    return False


def run_solve(
    input_dir: Path,
    out_dir: Path,
    config_path: Path,
    *,
    num_cpus: int | None,
    timeout_s: float,
    log_dir: Path,
    cwd: Path | None = None,
    poll_s: float = 0.05,
    extra_args: list[str] | None = None,
) -> dict[str, Any]:
    """Run `qvq-ray solve INPUT --out OUT --config CFG [--num-cpus N]`; what was seen (see module doc).

    It runs in `cwd` (default `log_dir`), not the repository: Ray puts the driver's working directory
    first on its workers' path, so the workers import qvq_ray the way the driver does (PYTHONPATH
    included)."""
    command = qvq_ray_command() + ["solve", str(input_dir), "--out", str(out_dir), "--config", str(config_path)]
    if num_cpus:
        command += ["--num-cpus", str(num_cpus)]
    command += extra_args or []
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    with open(stdout_path, "w") as stdout:
        proc = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, cwd=str(cwd or log_dir))
    seen: dict[str, Any] = {"hwm_kb": 0, "rss_max_kb": 0, "anon_max_kb": 0, "shmem_max_kb": 0, "rss_timeline": [], "ray_up": None,
                            "hwm_at_last_row_kb": None, "ray_init_returned": None, "last_row": None, "first_row": None, "progress": []}
    children_readable = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
    done = threading.Event()

    def watch() -> None:
        last_timeline = last_ray_check = -1.0
        while not done.is_set():
            now = time.monotonic()
            values = _status_kb(proc.pid)
            if values:
                seen["hwm_kb"] = max(seen["hwm_kb"], values.get("VmHWM", 0))
                seen["rss_max_kb"] = max(seen["rss_max_kb"], values.get("VmRSS", 0))
                seen["anon_max_kb"] = max(seen["anon_max_kb"], values.get("RssAnon", 0))
                seen["shmem_max_kb"] = max(seen["shmem_max_kb"], values.get("RssShmem", 0))
                if now - last_timeline >= 1.0:
                    seen["rss_timeline"].append((round(now - started, 1), values.get("VmRSS", 0)))
                    last_timeline = now
            if seen["ray_up"] is None and now - last_ray_check >= 0.2:  # a /proc scan: not every poll
                last_ray_check = now
                if _ray_children(proc.pid) if children_readable else _ray_children_slow(proc.pid):
                    seen["ray_up"] = now
            done.wait(poll_s)

    def read_stderr() -> None:
        with open(stderr_path, "w") as sink:
            for line in proc.stderr:
                now = time.monotonic()
                marker = _RAY_UP.match(line)
                if marker:
                    seen["ray_init_returned"] = float(marker.group(1))
                    continue
                sink.write(line)
                match = _PROGRESS.search(line)
                if match:
                    count, total = int(match.group(1)), int(match.group(2))
                    seen["progress"].append((round(now - started, 2), count))
                    if seen["first_row"] is None:
                        seen["first_row"] = now
                    if count >= total and seen["last_row"] is None:
                        seen["last_row"] = now
                        seen["hwm_at_last_row_kb"] = max(seen["hwm_kb"], _status_kb(proc.pid).get("VmHWM", 0))

    watcher = threading.Thread(target=watch, daemon=True)
    reader = threading.Thread(target=read_stderr, daemon=True)
    watcher.start()
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.terminate()  # our own child only; its Ray processes exit when their driver goes
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    ended = time.monotonic()
    done.set()
    watcher.join(timeout=5)
    reader.join(timeout=30)
    stdout_text = stdout_path.read_text()
    summary = None
    for line in reversed(stdout_text.splitlines()):
        if line.startswith("{"):
            try:
                summary = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    return {
        "command": command,
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "start": started,
        "end": ended,
        "wall_s": ended - started,
        # when Ray is up: the marker (ray.init returned), else Ray's processes first seen
        "ray_up": seen["ray_init_returned"] or seen["ray_up"],
        "ray_up_from": "ray.init returned" if seen["ray_init_returned"] else "raylet/GCS seen" if seen["ray_up"] else None,
        "ray_processes_seen": seen["ray_up"],
        "first_row": seen["first_row"],
        "last_row": seen["last_row"],
        "peak_rss_mb": seen["hwm_kb"] / 1024,
        "peak_anon_mb": seen["anon_max_kb"] / 1024,  # sampled: private memory (no shared/object-store pages)
        "peak_shmem_mb": seen["shmem_max_kb"] / 1024,  # sampled: shared memory mapped (Ray's object store)
        "peak_rss_at_last_row_mb": (seen["hwm_at_last_row_kb"] / 1024) if seen["hwm_at_last_row_kb"] else None,
        "rss_timeline": seen["rss_timeline"],
        "progress": seen["progress"],
        "summary": summary,
        "stdout_tail": stdout_text[-3000:],
        "stderr_tail": stderr_path.read_text()[-3000:],
    }
