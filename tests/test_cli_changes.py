"""The command line of issue 22 item 6: --version, --prompt-preset, lines as soon as a job starts,
output in a pty without a window size, Ctrl-C of solve, a quiet serve stop, help for every argument."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from qvq_ray.cli import build_parser, main, serve_config_with_preset, UsageError
from qvq_ray.report.runinfo import read_run_records
from tests.conftest import REPO_ROOT
from tests.test_cli_user_view import EXAMPLES, assert_user_error


def test_version(capsys):
    from qvq_ray import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"qvq-ray {__version__}"


def _arguments(parser: argparse.ArgumentParser, where: str = "qvq-ray"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _arguments(sub, f"{where} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield where, action


def test_every_argument_of_every_subcommand_has_help():
    seen = list(_arguments(build_parser()))
    assert len({w for w, _ in seen}) == 7  # qvq-ray and its six subcommands were all walked
    missing = [f"{where} {'/'.join(a.option_strings) or a.dest}" for where, a in seen
               if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, f"arguments without help text: {missing}"


# ---------------------------------------------------------------- solve, with the job faked


@pytest.fixture
def fake_job(monkeypatch):
    """run_solve_job replaced: it announces Ray as the cluster module does, writes one part file,
    and then does what `then` says (return a summary, or raise KeyboardInterrupt)."""
    from qvq_ray import jobs
    from qvq_ray.cluster import _tell
    from qvq_ray.report.summary import summarize_output

    seen = {}

    def run_solve_job(input_path, out_dir, config, **kwargs):
        seen["config"], seen["kwargs"] = config, kwargs
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        _tell("starting", "starting a local Ray cluster (2 CPUs)")
        _tell("started", "Ray started in 1.0 s")
        seen["record_before_rows"] = read_run_records(out_dir)
        if seen.get("interrupt_before_rows"):
            raise KeyboardInterrupt
        import pyarrow as pa
        import pyarrow.parquet as pq

        from qvq_ray.problem import solution_schema

        pq.write_table(pa.Table.from_pylist([{"id": "a", "mode": "self"}], schema=solution_schema()),
                       Path(out_dir) / "part-x.parquet")
        if seen.get("interrupt"):
            raise KeyboardInterrupt
        return summarize_output(out_dir, rows_in=1, seconds=1.0)

    monkeypatch.setattr(jobs, "run_solve_job", run_solve_job)
    return seen


def test_prompt_preset_flag_reaches_the_config_and_the_run_record(tmp_path, fake_job, capsys):
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLES / "problems.jsonl"), "--out", str(out), "--prompt-preset",
                 "vlmevalkit-mathvista"]) == 0
    assert fake_job["config"].prompt.preset == "vlmevalkit-mathvista"
    [record] = fake_job["record_before_rows"]  # written once Ray is up, before any row
    assert record["prompt"]["preset"] == "vlmevalkit-mathvista" and record["model"]["path"] == "tiny"
    assert record["command"] == f"qvq-ray solve {EXAMPLES / 'problems.jsonl'} --out {out} --prompt-preset vlmevalkit-mathvista"


def test_an_unknown_prompt_preset_is_one_line_before_ray(tmp_path):
    line = assert_user_error(["solve", EXAMPLES / "problems.jsonl", "--out", tmp_path / "o", "--prompt-preset", "nope"],
                             "--prompt-preset nope", "unknown prompt preset", "lmms-eval-mathvista")
    assert line.startswith("qvq-ray solve:")
    assert not (tmp_path / "o").exists()


def test_lines_as_soon_as_ray_starts(tmp_path, fake_job, capsys):
    assert main(["solve", str(EXAMPLES / "problems.jsonl"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "qvq-ray solve: starting a local Ray cluster (2 CPUs) ..."
    assert err[1].startswith("qvq-ray solve: Ray started in 1.0 s; loading tiny (hf engine, 1 replica)")


def test_ctrl_c_of_solve_is_one_line_with_the_resume_command(tmp_path, fake_job, capsys):
    fake_job["interrupt"] = True
    out = tmp_path / "out"
    args = ["solve", str(EXAMPLES / "problems.jsonl"), "--out", str(out), "--limit", "3"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    assert last == (f"qvq-ray solve: interrupted (1 part file in {out}); to go on: "
                    f"qvq-ray solve {EXAMPLES / 'problems.jsonl'} --out {out} --limit 3 --resume")
    assert len(read_run_records(out)) == 1  # the record stays beside the rows the resume continues


def test_ctrl_c_before_any_row_leaves_the_folder_as_a_new_run_wants_it(tmp_path, fake_job, capsys):
    fake_job["interrupt_before_rows"] = True
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLES / "problems.jsonl"), "--out", str(out)]) == 130
    assert list(out.iterdir()) == []  # no _run.json: a run without --resume is not refused
    assert "--resume" in capsys.readouterr().err


def test_a_refused_job_writes_no_record(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-old.parquet").write_bytes(b"someone else's rows")
    assert_user_error(["solve", EXAMPLES / "problems.jsonl", "--out", out], "not empty")
    assert sorted(p.name for p in out.iterdir()) == ["part-old.parquet"]


def test_the_cluster_tells_its_listener_when_ray_starts_and_is_up(monkeypatch):
    ray = pytest.importorskip("ray")
    from qvq_ray.cluster import ray_start_listener, start_or_join_ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: None)
    heard = []
    with ray_start_listener(lambda event, text: heard.append((event, text))):
        assert start_or_join_ray(None, num_cpus=2)
        assert start_or_join_ray("ray://head:10001")
    assert start_or_join_ray(None)  # outside the block: no one hears
    assert [e for e, _ in heard] == ["starting", "started", "starting", "started"]
    assert heard[0][1] == "starting a local Ray cluster (2 CPUs)" and heard[2][1] == "joining the Ray cluster at ray://head:10001"
    assert heard[1][1].startswith("Ray started in ") and heard[3][1].startswith("Ray joined in ")


# ---------------------------------------------------------------- a pty without a window size


_PTY_CHILD = """
import sys
from qvq_ray.batch.pipeline import Progress
from qvq_ray.cli import progress_printer
progress = Progress(4, 0, printer=progress_printer(sys.stderr))
progress.add(rows=2, verified=1, errors=0, completion_tokens=10)
progress.add(rows=2, verified=2, errors=0, completion_tokens=10)
progress.close()
"""


def _in_pty(code: str, columns: int) -> str:
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: a pty of `columns` columns (0: no window size, as `script` or a CI runner gives)
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0, columns, 0, 0))
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    return out.decode(errors="replace")


@pytest.mark.skipif(sys.platform != "linux", reason="pty window sizes as on Linux")
def test_progress_shows_in_a_pty_without_a_window_size():
    shown = _in_pty(_PTY_CHILD, 0)
    assert "progress 4/4 done" in shown, repr(shown)  # plain lines: a tqdm bar there prints nothing
    bar = _in_pty(_PTY_CHILD, 100)
    assert "4/4" in bar and "progress 4/4" not in bar, repr(bar)  # a sized terminal keeps the bar


# ---------------------------------------------------------------- serve


def test_serve_prompt_preset_is_set_in_a_copy_of_the_file(tmp_path):
    from qvq_ray.config import QvqConfig

    source = REPO_ROOT / "serve_configs" / "tiny-cpu.yaml"
    before = source.read_text()
    copy = Path(serve_config_with_preset(str(source), "lmms-eval-mmmu", tmp_path))
    assert copy.parent == tmp_path and source.read_text() == before
    [app] = yaml.safe_load(copy.read_text())["applications"]
    config = QvqConfig.from_any(app["args"]["config"])
    assert config.prompt.preset == "lmms-eval-mmmu" and config.model.served_model_name == "qvq-tiny"
    # an app that names its config by path gets it inline, with the preset
    (tmp_path / "qvq.yaml").write_text(yaml.safe_dump({"model": {"path": "tiny"}, "prompt": {"joiner": " "}}))
    spec = {"applications": [{"name": "a", "import_path": "qvq_ray.serve.app:build_app",
                              "args": {"config_path": str(tmp_path / "qvq.yaml")}}]}
    (tmp_path / "by-path.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "out").mkdir()
    copied = yaml.safe_load(Path(serve_config_with_preset(str(tmp_path / "by-path.yaml"), "qvq", tmp_path / "out")).read_text())
    assert copied["applications"][0]["args"] == {"config": {"model": {"path": "tiny"}, "prompt": {"joiner": " ", "preset": "qvq"}}}
    with pytest.raises(UsageError, match="unknown prompt preset"):
        serve_config_with_preset(str(source), "nope", tmp_path)


def test_serve_with_an_unknown_preset_is_one_line_before_ray():
    assert_user_error(["serve", REPO_ROOT / "serve_configs" / "tiny-cpu.yaml", "--prompt-preset", "nope"],
                      "qvq-ray serve: --prompt-preset nope", "unknown prompt preset")


def test_ray_stop_lines_printed_from_a_thread_are_dropped(capsys):
    import threading

    from qvq_ray.stderr_filter import RAY_STOP_LINES, drop_printed_lines

    stop_line = ("\x1b[33m(raylet)\x1b[0m Task ServeReplica:qvq:QvqEngine.graceful_shutdown failed. There are infinite "
                 "retries remaining, so the task will be retried. Error: The actor is dead because it was killed by `ray.kill`.")
    with drop_printed_lines(RAY_STOP_LINES):
        worker = threading.Thread(target=lambda: (print(stop_line), print("a line that stays")))
        worker.start()
        worker.join()
        print("partial", end="", flush=True)
    print(stop_line)  # outside the block nothing is dropped
    out = capsys.readouterr().out
    assert out.count("killed by `ray.kill`") == 1 and out.startswith("a line that stays\npartial")


# ---------------------------------------------------------------- the real thing (Ray)


@pytest.mark.slow
def test_real_ctrl_c_of_solve(tmp_path):
    """A real solve, Ctrl-C (SIGINT to its process group, as a terminal sends it) once the first part
    file is written: exit 130, no traceback, none of Ray's per-actor stop lines, the --resume line."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qvq_ray.cli", "solve", str(EXAMPLES / "problems.jsonl"), "--out", str(out),
         "--max-tokens", "64", "--max-attempts", "3", "--num-cpus", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("part-*")):
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0]
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output and "ray.kill" not in output, output
    lines = output.strip().splitlines()
    assert lines[0].startswith("qvq-ray solve: starting a local Ray cluster (2 CPUs)"), output
    assert lines[-1].endswith("--max-attempts 3 --num-cpus 2 --resume"), output
    assert read_run_records(out)[0]["policy"]["max_attempts"] == 3
    assert json.loads((out / "_run.json").read_text())["runs"][0]["kind"] == "solve"
