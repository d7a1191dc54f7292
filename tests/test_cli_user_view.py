"""The CLI as a user sees it: exit codes, the one line a mistake prints, the console of a real run.

Mistakes (a missing path, an unknown format, a bad config key or value, `--limit 0`, a non-empty
--out, a problem set none of whose images exist, a bad Serve file) must cost about a second: each
test runs the real `qvq-ray` entry point in a child process and checks that it answered exit code 2
with one line naming what to fix, no traceback, and without importing Ray. Two tests run Ray (marked
slow): a real `qvq-ray solve` whose console is read line by line, and `qvq-ray serve --port`.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, end_process_session, free_port, png_bytes

EXAMPLES = REPO_ROOT / "examples" / "arithmetic-test"

# Runs `qvq-ray ARGS` in-process in a child, then reports its exit code and whether Ray was imported.
_CHILD = (
    "import json, sys; from qvq_ray.cli import main; rc = main(sys.argv[1:]); "
    "print('@@' + json.dumps({'rc': rc, 'ray': 'ray' in sys.modules}))"
)


def qvq(*args: str, timeout: float = 120) -> tuple[int, str, bool]:
    """(exit code, stderr, whether Ray got imported) of `qvq-ray ARGS`."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )
    marker = [line for line in result.stdout.splitlines() if line.startswith("@@")]
    if not marker:  # argparse exits itself, or the command crashed
        return result.returncode, result.stderr, True
    report = json.loads(marker[-1][2:])
    return report["rc"], result.stderr, report["ray"]


def assert_user_error(args, *needles: str) -> str:
    rc, err, ray_imported = qvq(*args)
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line naming what to fix
    for needle in needles:
        assert needle in lines[0], err
    assert not ray_imported, "the mistake should be found before Ray is even imported"
    return lines[0]


def mathvista_set(root: Path, pids: list[str]) -> Path:
    """A MathVista testmini.json naming images/<pid>.png for each pid (no image files written)."""
    records = {
        pid: {
            "pid": pid,
            "question": f"What is shown in picture {pid}?",
            "image": f"images/{pid}.png",
            "choices": None,
            "unit": None,
            "precision": None,
            "answer": "3",
            "question_type": "free_form",
            "answer_type": "integer",
            "metadata": {"language": "english", "task": "math word problem"},
        }
        for pid in pids
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "testmini.json"
    path.write_text(json.dumps(records))
    return path


# ------------------------------------------------------------------ solve: mistakes, before Ray


def test_limit_zero_is_an_error_not_the_whole_benchmark(tmp_path):
    line = assert_user_error(["solve", EXAMPLES, "--out", tmp_path / "out", "--limit", "0"], "--limit", "at least 1")
    assert line.startswith("qvq-ray solve: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["/no/such/problems.jsonl"], ["problem set not found", "/no/such/problems.jsonl"]),
        ([EXAMPLES, "--format", "mathvisio"], ["unknown problem format 'mathvisio'", "mathvision"]),
        ([EXAMPLES, "--max-attempts", "0"], ["--max-attempts 0", "policy.max_attempts"]),
        ([EXAMPLES, "--config", "/no/such.yaml"], ["--config /no/such.yaml", "No such file"]),
    ],
    ids=["missing-input", "unknown-format", "bad-flag-value", "missing-config"],
)
def test_solve_mistakes_are_one_line_and_exit_2(tmp_path, extra, needles):
    assert_user_error(["solve", *extra, "--out", tmp_path / "out"], *needles)


def test_config_key_and_value_mistakes_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  pathh: tiny\nsampling:\n  top_p: 5\n")
    line = assert_user_error(["solve", EXAMPLES, "--out", tmp_path / "out", "--config", bad], str(bad))
    assert "model.pathh: unknown key" in line and "sampling.top_p:" in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [tiny\n")
    assert_user_error(["solve", EXAMPLES, "--out", tmp_path / "out", "--config", broken], "not valid YAML")


def test_non_empty_out_without_resume(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-0.parquet").write_bytes(b"earlier results")
    assert_user_error(["solve", EXAMPLES, "--out", out], "not empty", "--resume")
    assert (out / "part-0.parquet").read_bytes() == b"earlier results"


def test_mathvista_without_its_images_is_refused_before_ray(tmp_path):
    data = mathvista_set(tmp_path / "mathvista", ["1", "2", "3"])
    line = assert_user_error(["solve", data, "--out", tmp_path / "out"], "3 of 3 problems reference images not found")
    assert str((tmp_path / "mathvista" / "images").resolve()) in line and "--images DIR" in line
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    line = assert_user_error(["solve", data, "--images", empty, "--out", tmp_path / "out"], f"not found under {empty}")
    assert "check --images" in line


def test_images_flag_mistakes(tmp_path):
    data = mathvista_set(tmp_path / "mathvista", ["1"])
    assert_user_error(["solve", data, "--images", tmp_path / "nope", "--out", tmp_path / "out"], "images folder not found")
    # MathVision, our own problems and the others locate their images themselves
    assert_user_error(["solve", EXAMPLES, "--images", tmp_path, "--out", tmp_path / "out"], "--images", "mathvista")


def test_missing_images_check_warns_when_only_some_are_missing(tmp_path):
    from qvq_ray.batch.pipeline import JobInputError, _judge_images
    from qvq_ray.batch.source import count_input

    data = mathvista_set(tmp_path / "mathvista", ["1", "2", "3", "4"])
    images = tmp_path / "images"
    images.mkdir()
    for pid in ("1", "2", "3"):
        (images / f"{pid}.png").write_bytes(png_bytes(pid))

    def image_warnings(images_dir=None):
        """The driver's pass before Ray starts, as run_solve_job makes it."""
        count = count_input(str(data), None, None, loader_options={"images_dir": str(images)}, tally_images=True)
        return _judge_images(count.images, count.todo, images_dir=images_dir, hint="")

    warnings = image_warnings(images_dir=str(images))
    assert warnings == [f"1 of 4 problems reference images not found under {images} (e.g. {images / '4.png'}); "
                        "those problems become error rows"]
    (images / "4.png").write_bytes(png_bytes("4"))
    assert image_warnings() == []  # all present: nothing to say
    for pid in "1234":
        (images / f"{pid}.png").unlink()
    with pytest.raises(JobInputError, match="4 of 4 problems"):
        image_warnings()


# ------------------------------------------------------------------ other commands


def test_every_subcommand_answers_a_mistake_with_exit_2(tmp_path):
    assert_user_error(["serve", tmp_path / "missing.yaml"], "cannot read", "missing.yaml")
    assert_user_error(["verify", "--gold", "1", "--timeout", "-1", "-"], "--timeout", "timeout_s")
    assert_user_error(["rescore", tmp_path / "missing.jsonl", "--problems", EXAMPLES, "--out", tmp_path / "o"], "not found")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_user_error(["make-tiny-model", blocker / "model"], "cannot write")


def test_serve_checks_its_config_before_ray_starts(tmp_path):
    spec = yaml.safe_load((REPO_ROOT / "serve_configs" / "tiny-cpu.yaml").read_text())
    spec["applications"][0]["args"]["config"]["sampling"] = {"temperature": 9}
    bad = tmp_path / "serve.yaml"
    bad.write_text(yaml.safe_dump(spec))
    started = time.monotonic()
    line = assert_user_error(["serve", bad], "args.config.sampling.temperature", "invalid config")
    assert time.monotonic() - started < 15  # ~20 s of Ray start-up used to come first
    assert f"application {spec['applications'][0]['name']!r}" in line
    assert_user_error(["serve", REPO_ROOT / "serve_configs" / "tiny-cpu.yaml", "--port", "70000"], "port 70000")


def test_tolerance_help_gives_the_single_answer_form():
    help_text = subprocess.run(
        [sys.executable, "-m", "qvq_ray.cli", "verify", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    flat = " ".join(help_text.split())
    assert "e.g. 1e-2" in flat and "',1e-2' leaves the first answer exact" in flat

    def verdict(tolerance):
        out = subprocess.run(
            [sys.executable, "-m", "qvq_ray.cli", "verify", "--gold", "1", "--tolerance", tolerance],
            input="so \\boxed{1.005}", capture_output=True, text=True, timeout=60,
        )
        return json.loads(out.stdout)["correct"]

    assert verdict("1e-2") is True  # the form the help gives for one answer
    assert verdict(",1e-2") is False  # the per-answer form: the first (only) answer stays exact


def test_math_verify_is_not_a_dependency_of_the_package_and_openai_is():
    import tomllib

    sources = [p for p in (REPO_ROOT / "qvq_ray").rglob("*.py")]
    importing = [str(p) for p in sources if "math_verify" in p.read_text()]
    assert importing == []
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "math-verify" not in core and "openai" in core and "tqdm" in core
    assert any(d.startswith("math-verify") for d in project["optional-dependencies"]["dev"])
    readme = (REPO_ROOT / "README.md").read_text()
    assert "The package does not use math-verify" in readme


# ------------------------------------------------------------------ progress and console filter


def _table(verified, errors, tokens):
    import pyarrow as pa

    return pa.table({"verified": verified, "error": errors, "completion_tokens": tokens})


def test_progress_lines_with_eta_when_not_a_terminal():
    from qvq_ray.results.parts import block_counts
    from qvq_ray.batch.pipeline import Progress

    now = [100.0]
    lines: list[str] = []
    progress = Progress(10, 0, every_s=5.0, stream=io.StringIO(), clock=lambda: now[0])
    progress.printer = lines.append
    now[0] += 2.0
    progress.add(**block_counts(_table([True, False], [None, None], [10, 10])))  # first block: a line at once
    now[0] += 1.0
    progress.add(**block_counts(_table([True, True], [None, None], [10, 10])))  # 1 s later: quiet
    now[0] += 5.0
    progress.add(**block_counts(_table([True], ["bad image"], [0])))
    now[0] += 0.5
    progress.add(**block_counts(_table([True] * 5, [None] * 5, [5] * 5)))  # the last block always prints
    assert len(lines) == 3
    assert lines[0].startswith("progress 2/10 done (verified 1, errors 0)") and "ETA 0m08s" in lines[0]
    assert "progress 5/10" in lines[1] and "verified 4, errors 1" in lines[1] and "ETA 0m08s" in lines[1]
    assert lines[2].startswith("progress 10/10") and lines[2].endswith("elapsed")  # finished: no ETA


def test_progress_default_goes_to_stderr_as_lines_when_it_is_a_file(tmp_path):
    from qvq_ray.results.parts import block_counts
    from qvq_ray.batch.pipeline import Progress

    log = (tmp_path / "log").open("w")
    progress = Progress(2, 0, stream=log)
    progress.add(**block_counts(_table([True, True], [None, None], [3, 4])))
    progress.close()
    log.close()
    text = (tmp_path / "log").read_text()
    assert text.startswith("progress 2/2 done") and "\r" not in text


def test_progress_is_a_bar_with_eta_on_a_terminal():
    from qvq_ray.results.parts import block_counts
    from qvq_ray.batch.pipeline import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    progress = Progress(4, 0, stream=screen)
    progress.add(**block_counts(_table([True, False], [None, "x"], [1, 1])))
    progress.close()
    shown = screen.getvalue()
    assert "\r" in shown and "ETA" in shown and "2/4" in shown and "errors 1" in shown
    assert "progress " not in shown  # the bar, not the plain lines


def test_ray_benign_error_lines_are_dropped_from_stderr(capfd):
    from qvq_ray.stderr_filter import drop_stderr_lines

    benign = b"[2026-01-01 00:00:00,000 E 1 1] core_worker.cc:2465: Actor with class name: 'MapWorker' has " \
             b"constructor arguments in the object store and max_restarts > 0.\n"
    with drop_stderr_lines():
        os.write(2, b"a real error line\n" + benign + b"after it\n")
        os.write(2, b"\r 50%|#####     | 2/4 ")  # a progress bar's partial line passes at once
        print("from python", file=sys.stderr, flush=True)
    err = capfd.readouterr().err
    assert "constructor arguments" not in err
    assert "a real error line\nafter it\n" in err and "\r 50%|#####     | 2/4 " in err and "from python" in err
    os.write(2, benign)  # outside the block nothing is filtered
    assert "constructor arguments" in capfd.readouterr().err


# ------------------------------------------------------------------ real runs (Ray)


@pytest.mark.slow
def test_solve_console_is_quiet_with_progress_and_the_missing_images_warning(tmp_path):
    """A real `qvq-ray solve` with stderr to a file: warnings and progress lines only, none of Ray's
    noise; the problem whose image is missing is an error row, the others are solved."""
    data = mathvista_set(tmp_path / "mathvista", ["1", "2", "3"])
    images = tmp_path / "pictures"
    images.mkdir()
    for pid in ("1", "2"):
        (images / f"{pid}.png").write_bytes(png_bytes(f"{pid} + 1"))
    out = tmp_path / "out"
    with (tmp_path / "stderr.txt").open("w") as err_file:
        result = subprocess.run(
            [sys.executable, "-m", "qvq_ray.cli", "solve", data, "--images", images, "--out", out,
             "--model", "tiny-random", "--max-attempts", "1", "--max-tokens", "4", "--num-cpus", "2"],
            stdout=subprocess.PIPE, stderr=err_file, text=True, timeout=300, cwd=REPO_ROOT,
        )
    err = (tmp_path / "stderr.txt").read_text()
    assert result.returncode == 0, err + result.stdout
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0] == (f"qvq-ray solve: warning: 1 of 3 problems reference images not found under {images} "
                        f"(e.g. {images / '3.png'}); those problems become error rows"), err
    progress = [line for line in lines if line.startswith("progress ")]
    assert progress and progress[-1].startswith("progress 3/3 done") and "elapsed" in progress[-1], err
    # only our own lines: nothing of Ray's (its INFO and benign ERROR lines stay in its log files)
    assert not [line for line in lines if not line.startswith(("qvq-ray solve: ", "progress "))], err
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows_in"] == summary["rows_out"] == 3 and summary["errors"] == 1


@pytest.mark.slow
def test_serve_host_and_port_override_the_file(tmp_path):
    spec = yaml.safe_load((REPO_ROOT / "serve_configs" / "tiny-cpu.yaml").read_text())
    file_port, port = free_port(), free_port()
    spec["http_options"] = {"host": "127.0.0.1", "port": file_port}
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen(
        [sys.executable, "-m", "qvq_ray.cli", "serve", str(config), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, start_new_session=True,
    )
    import threading

    lines: list[str] = []
    ready = threading.Event()

    def read_output():
        for line in proc.stdout:
            lines.append(line)
            if "ready at" in line:
                ready.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        import httpx

        deadline = time.monotonic() + 240
        answered = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answered = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                if answered.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert answered is not None and answered.status_code == 200, "".join(lines)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{file_port}/v1/models", timeout=2)  # the file's port is overridden
        # Ctrl-C once the CLI says it is ready (the route can answer a moment before `serve.run`
        # returns; a Ctrl-C during deployment is another test's subject)
        assert ready.wait(60), "".join(lines)
        proc.send_signal(signal.SIGINT)  # once: one Ctrl-C must stop it (tests/test_stop_signal.py)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            masks = [ln for ln in status.splitlines() if ln.startswith(("SigBlk", "SigPnd", "ShdPnd", "SigCgt"))]
            pytest.fail(f"no stop after one Ctrl-C ({masks}); its output:\n" + "".join(lines)[-6000:])
        reader.join(10)
        output = "".join(lines)
        assert proc.returncode == 0 and "Traceback" not in output, output
        assert "qvq-ray serve: shutting down" in output
        assert output.rstrip().endswith("qvq-ray serve: stopped"), output
        assert "ray.kill" not in output, output  # the raylet's line per replica the stop ends is dropped
        assert output.startswith("qvq-ray serve: starting a local Ray cluster"), output
    finally:
        end_process_session(proc, interrupt=False)  # interrupted above already
