"""kill -9 of the batch job's driver part-way, then `--resume`: exactly one row per id (issue 19).

Makes N text-only problems (default 20,000; make_problems of batch_occupancy.py) and starts the
simulated OpenAI-compatible endpoint (benchmarks/sim_endpoint.py; zero-latency by default, the
job's own overhead then sets its pace; --tokens-per-s gives each request a decode time instead).

(1) Runs the real `qvq-ray solve INPUT --out DIR --config CFG --num-cpus C` as a subprocess in a
    session of its own (it starts its own local Ray cluster, whose processes stay in that session),
    watches the rows on disk (the sum of the Parquet footers' row counts of the part files; dot
    files, i.e. writes in progress, not counted) and, when --kill-at of N rows are there, kills
    the driver and every process of its session with SIGKILL (os.killpg of its group, then
    `pkill -9 -s SID`: Ray's workers run in other process groups of the same session). After
    --settle-s seconds it reads the `id` column of every part file: ids on disk, duplicates.
(2) Runs the same command with `--resume` and waits for it. Checks: exit 0; its line
    "resume: X of N rows already ..." with X = the distinct ids on disk after the kill; the ids on
    disk are exactly the N input ids, each once; the JSON line the CLI prints has
    rows_out == rows_in == N and duplicates 0.

Prints the figures beside what is expected and ends with one JSON line of them; exits 1 when a
check fails (the work directory is then kept). Only processes of the job's own session are ever
signalled; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_occupancy import job_config, make_problems  # noqa: E402
from job_runner import add_job_arguments, qvq_ray_command  # noqa: E402
from sim_endpoint import SimEndpoint  # noqa: E402

_RESUME = re.compile(r"resume: (\d+) of (\d+) rows already in .*; solving (\d+)")


def part_files(out: Path) -> list[Path]:
    """Finished part files (a write in progress is a dot file: `.part-....parquet.<hex>.tmp`)."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))


class RowWatch:
    """Rows on disk from the Parquet footers, each file's footer read once (a part's name is a hash
    of its ids: a rewrite under the same name holds the same rows)."""

    def __init__(self, out: Path):
        self.out = out
        self.rows: dict[str, int] = {}

    def count(self) -> int:
        import pyarrow.parquet as pq

        for path in part_files(self.out):
            if path.name not in self.rows:
                try:
                    self.rows[path.name] = pq.read_metadata(path).num_rows
                except (OSError, ValueError):  # gone or renamed between listing and reading: next poll
                    continue
        return sum(self.rows.values())


def ids_on_disk(out: Path) -> list[str]:
    """The `id` column of every part file (only that column is read)."""
    import pyarrow.parquet as pq

    return [str(i) for p in part_files(out) for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]


def input_ids(problems_dir: Path) -> list[str]:
    with open(problems_dir / "problems.jsonl") as handle:
        return [json.loads(line)["id"] for line in handle if line.strip()]


def session_processes(sid: int) -> dict[int, str]:
    """Live processes whose session id is `sid` (this job's: it was started with start_new_session),
    as pid -> name. Zombies are left out: they are dead, waiting for their reaper (our driver:
    us; an orphan: PID 1)."""
    found = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True)
    live = {}
    for pid in (int(p) for p in found.stdout.split()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X"):
            live[pid] = stat[stat.find("(") + 1 : stat.rfind(")")]
    return live


def kill_session(proc: subprocess.Popen) -> dict:
    """kill -9 of the driver's process group, then of every process left in its session (as
    tests/test_resume.py does), until none is left; the driver reaped."""
    sid = proc.pid
    try:
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    rounds = 0
    for rounds in range(1, 11):  # a process forked while the kill went round gets the next one
        subprocess.run(["pkill", "-9", "-s", str(sid)], capture_output=True)
        time.sleep(0.3)
        if not session_processes(sid):
            break
    proc.wait(timeout=30)
    return {"pkill_rounds": rounds, "left_in_session": len(session_processes(sid))}


def after_exit(proc: subprocess.Popen, wait_s: float = 15.0) -> dict[int, str]:
    """What of a finished run's session is still alive `wait_s` s after it exited (its Ray processes
    should go with ray.shutdown()); those are killed (they are ours), and returned."""
    deadline = time.monotonic() + wait_s
    left = session_processes(proc.pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = session_processes(proc.pid)
    if left:
        subprocess.run(["pkill", "-9", "-s", str(proc.pid)], capture_output=True)
    return left


def solve_command(problems: Path, out: Path, config: Path, num_cpus: int, resume: bool) -> list[str]:
    command = qvq_ray_command(mark_ray_up=False) + ["solve", str(problems), "--out", str(out), "--config", str(config),
                                                    "--num-cpus", str(num_cpus)]
    return command + (["--resume"] if resume else [])


def start(command: list[str], logs: Path, name: str, cwd: Path) -> subprocess.Popen:
    """The job in a session of its own (its Ray cluster's processes too), output to files.

    It runs in `cwd`, not the repository (see job_runner.run_solve: Ray puts the driver's working
    directory first on its workers' path)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(logs / f"{name}.out", "w") as stdout, open(logs / f"{name}.err", "w") as stderr:
        return subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=str(cwd), start_new_session=True)


def last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=20_000, help="N: text-only problems.")
    parser.add_argument("--kill-at", type=float, default=0.4, help="Kill when this share of N rows is on disk.")
    parser.add_argument("--settle-s", type=float, default=5.0, help="Seconds between the kill and reading the ids on disk.")
    parser.add_argument("--tokens-per-s", type=float, default=0.0,
                        help="Simulated decode speed per request; 0 (default): the zero-latency endpoint.")
    parser.add_argument("--cap", type=int, default=128, help="batch.max_concurrent_solves (as pipelines/qvq-72b-vllm.yaml).")
    add_job_arguments(parser, job_timeout_s=3600.0)
    args = parser.parse_args()
    n = args.problems
    kill_rows = max(1, int(round(args.kill_at * n)))

    import yaml

    work = Path(tempfile.mkdtemp(prefix="qvq-kill-resume-"))
    problems = make_problems(work / "problems", n)
    expected_ids = input_ids(problems)
    out, logs = work / "out", work / "logs"
    logs.mkdir()
    zero = args.tokens_per_s <= 0
    failures: list[str] = []
    figures: dict = {}
    with SimEndpoint(zero_latency=zero, tokens_per_s=args.tokens_per_s or 750.0) as endpoint:
        config = job_config(endpoint.base_url, cap=args.cap, replicas=1, rows_per_batch=args.rows_per_batch or args.cap,
                            actor_cpus=args.actor_cpus, stream=True)
        config_path = work / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        print(f"{n:,} problems; {'zero-latency' if zero else f'{args.tokens_per_s:g} tokens/s'} simulated endpoint; "
              f"job on {args.num_cpus} CPUs, cap {args.cap}, rows_per_batch {args.rows_per_batch or args.cap}; "
              f"kill -9 of the driver's session at {kill_rows:,} rows on disk ({args.kill_at:.0%})", flush=True)

        # (1) the run that is killed
        endpoint.reset()
        watch = RowWatch(out)
        first = start(solve_command(problems, out, config_path, args.num_cpus, resume=False), logs, "first", work)
        started = time.monotonic()
        rows_at_kill = None
        while time.monotonic() - started < args.job_timeout:
            rows = watch.count()
            if rows >= kill_rows:
                if first.poll() is None:
                    killed = kill_session(first)
                    rows_at_kill = rows
                break
            if first.poll() is not None:
                break
            time.sleep(0.1)
        first_s = time.monotonic() - started
        if rows_at_kill is None:
            if first.poll() is None:  # timed out: ours to end, the same way
                kill_session(first)
                failures.append(f"the first run never reached {kill_rows} rows in {args.job_timeout:g} s")
            else:
                failures.append(f"the first run ended (exit {first.returncode}) before {kill_rows} rows were on disk: "
                                f"the kill did not land mid-run")
            print(tail(logs / "first.err"), file=sys.stderr)
            killed = {"pkill_rounds": 0, "left_in_session": len(session_processes(first.pid))}
        requests_first = endpoint.stats(timeline=False)["requests"]
        time.sleep(args.settle_s)
        rows_after_settle = RowWatch(out).count()
        before = ids_on_disk(out)
        before_unique = len(set(before))
        leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")] if out.is_dir() else []
        print(f"killed at {rows_at_kill if rows_at_kill is not None else 'n/a'} rows on disk "
              f"({(rows_at_kill or 0) / n:.1%} of {n:,}; target ~{args.kill_at:.0%}) after {first_s:.1f} s; "
              f"{requests_first} requests had been sent; {killed['left_in_session']} processes left in its session "
              f"(expected 0; {killed['pkill_rounds']} pkill round(s))", flush=True)
        print(f"on disk {args.settle_s:g} s later: {len(before):,} rows, {before_unique:,} distinct ids, "
              f"{len(before) - before_unique} duplicates (expected 0), {len(part_files(out))} part files, "
              f"{len(leftovers)} unfinished writes (dot files; resume removes them)", flush=True)
        if rows_after_settle != rows_at_kill and rows_at_kill is not None:
            print(f"  note: {rows_after_settle - rows_at_kill:+d} rows appeared after the kill (writes that were finishing)")

        # (2) the resumed run
        endpoint.reset()
        second = start(solve_command(problems, out, config_path, args.num_cpus, resume=True), logs, "resume", work)
        started = time.monotonic()
        try:
            second.wait(timeout=args.job_timeout)
        except subprocess.TimeoutExpired:
            kill_session(second)
            failures.append(f"the resumed run did not finish in {args.job_timeout:g} s")
        resume_s = time.monotonic() - started
        requests_resume = endpoint.stats(timeline=False)["requests"]
        outlived = after_exit(second)  # a normal exit shuts its Ray down
        if outlived:
            print(f"  note: {len(outlived)} processes of the resumed run's session outlived it by 15 s "
                  f"({', '.join(sorted(set(outlived.values())))}); killed them")

    resume_out, resume_err = (logs / "resume.out").read_text(errors="replace"), (logs / "resume.err").read_text(errors="replace")
    match = _RESUME.search(resume_err) or _RESUME.search(resume_out)
    resume_line = match.group(0) if match else None
    already = int(match.group(1)) if match else None
    summary = last_json(resume_out) or {}
    after = ids_on_disk(out)
    counts = Counter(after)
    expected = set(expected_ids)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    missing = len(expected - counts.keys())
    extra = len(counts.keys() - expected)

    if second.returncode != 0:
        failures.append(f"the resumed run exited {second.returncode}")
    if resume_line is None:
        failures.append("no 'resume: X of N rows already' line")
    elif (already, int(match.group(2))) != (before_unique, n):
        failures.append(f"resume line says {already} of {match.group(2)}; expected {before_unique} of {n}")
    if duplicates or missing or extra or len(after) != n:
        failures.append(f"ids on disk: {len(after)} rows, {duplicates} duplicates, {missing} missing, {extra} extra")
    if not (summary.get("rows_out") == summary.get("rows_in") == n and summary.get("duplicates") == 0):
        failures.append(f"CLI summary rows_out {summary.get('rows_out')}, rows_in {summary.get('rows_in')}, "
                        f"duplicates {summary.get('duplicates')}; expected {n}, {n}, 0")
    if len(expected_ids) != n:
        failures.append(f"make_problems gave {len(expected_ids)} ids, not {n}")
    if rows_at_kill is not None and before_unique >= n:
        failures.append("every row was on disk at the kill: nothing left to resume")

    print(f"resumed run: exit {second.returncode} (expected 0) after {resume_s:.1f} s; "
          f"{requests_resume} requests (expected {n - before_unique}: one per row not on disk)")
    print(f"  its line: {resume_line!r}")
    print(f"  expected: 'resume: {before_unique} of {n} rows already in {out}; solving {n - before_unique}'")
    print(f"ids on disk after: {len(after):,} rows, {len(counts):,} unique, {missing} missing, {extra} extra, "
          f"{duplicates} duplicates (expected {n:,} rows, {n:,} unique, 0, 0, 0)")
    print(f"CLI summary: rows_in {summary.get('rows_in')}, rows_out {summary.get('rows_out')}, "
          f"duplicates {summary.get('duplicates')}, errors {summary.get('errors')} (expected {n}, {n}, 0, 0)")
    ok = not failures
    print("check: " + ("PASS: exactly one row per id" if ok else "FAIL: " + "; ".join(failures)))
    if ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}")
    figures = {
        "benchmark": "batch_kill_resume", "problems": n, "num_cpus": args.num_cpus, "cap": args.cap,
        "rows_per_batch": args.rows_per_batch or args.cap, "tokens_per_s": args.tokens_per_s if not zero else None,
        "zero_latency": zero, "kill_at": args.kill_at, "kill_rows_target": kill_rows,
        "rows_at_kill": rows_at_kill, "kill_share": round(rows_at_kill / n, 4) if rows_at_kill is not None else None,
        "first_run_s": round(first_s, 2), "requests_before_kill": requests_first,
        "left_in_session_after_kill": killed["left_in_session"],
        "ids_on_disk_after_kill": len(before), "unique_after_kill": before_unique,
        "duplicates_after_kill": len(before) - before_unique, "unfinished_writes_after_kill": len(leftovers),
        "resume_returncode": second.returncode, "outlived_resume": sorted(outlived.values()), "resume_s": round(resume_s, 2), "resume_line": resume_line,
        "resume_already": already, "requests_resume": requests_resume, "requests_resume_expected": n - before_unique,
        "ids_after": len(after), "unique_after": len(counts), "missing": missing, "extra": extra,
        "duplicates_after": duplicates,
        "summary": {k: summary.get(k) for k in ("rows_in", "rows_out", "duplicates", "errors", "solved", "correct")},
        "ok": ok, "failures": failures,
    }
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
