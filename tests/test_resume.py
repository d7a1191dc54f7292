"""Crash and resume: kill -9 of the driver or of an engine actor mid-run, then `--resume`.

Runs the real CLI in a subprocess on the bundled examples, joined to the session's cluster (as a
job on a shared cluster would be); the end state must be exactly one row per input id. The driver's
kill ends the job (Ray then reaps its actors and tasks, a write mid-way among them); the engine
actor's victim is found in Ray's actor table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from qvq_ray.config import QvqConfig

pytestmark = pytest.mark.slow  # each test runs a whole job in a subprocess and kills part of it

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "problems"


def _input_ids() -> set[str]:
    import json

    return {json.loads(line)["id"] for line in (EXAMPLES / "problems.jsonl").read_text().splitlines() if line.strip()}


def _config(tmp_path: Path) -> Path:
    config = QvqConfig.preset("tiny-cpu")
    config.model.path = "tiny-random"  # never stops early: the kill lands mid-run
    config.sampling.max_tokens = 48
    config.batch.rows_per_batch = 2
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def _solve(out: Path, config: Path, *extra: str, address: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "qvq_ray.cli", "solve", str(EXAMPLES), "--out", str(out), "--config", str(config), "--address", address, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # a kill of its session never reaches this process
    )


def _wait_for_parts(out: Path, count: int, proc: subprocess.Popen, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(list(out.glob("*.parquet"))) >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"job ended before writing {count} parts:\n{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail("timed out waiting for part files")


def _ids_on_disk(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [i for p in sorted(out.glob("*.parquet")) for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]


def _kill_session(proc: subprocess.Popen) -> None:
    """kill -9 of the job's driver and whatever it started in its own session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    subprocess.run(["pkill", "-9", "-s", str(proc.pid)], capture_output=True)
    proc.wait(timeout=30)


def test_kill_driver_then_resume_gives_one_row_per_id(tmp_path, ray_address):
    out = tmp_path / "out"
    config = _config(tmp_path)
    first = _solve(out, config, address=ray_address)
    _wait_for_parts(out, 2, first)
    assert first.poll() is None, first.stdout.read()
    _kill_session(first)  # kill -9 of the driver: the cluster reaps the job's actors and tasks
    assert first.returncode == -signal.SIGKILL  # killed, not ended on its own before the kill
    before = _ids_on_disk(out)
    assert 0 < len(before) < len(_input_ids()), "the kill should land mid-run"

    second = _solve(out, config, "--resume", address=ray_address)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert f"resume: {len(before)} of 16 rows already" in output
    ids = _ids_on_disk(out)
    assert sorted(ids) == sorted(_input_ids())  # exactly one row per input id
    assert '"duplicates": 0' in output and '"rows_out": 16' in output


SOLVE_ACTOR = "MapWorker(Map(SolveProblems))"  # Ray Data's actor of the solve stage, as the actor table names it


def _job_id_of(driver: subprocess.Popen) -> str | None:
    """The Ray job id of the CLI driver `driver` (the GCS job table names each job's driver pid)."""
    from ray._private.state import jobs

    return next((job["JobID"] for job in jobs() if job["DriverPid"] == driver.pid), None)


def _alive_solve_actors(driver: subprocess.Popen) -> list[dict]:
    """`driver`'s job's live solve-stage actors, from the GCS actor table (the session cluster runs
    no dashboard for `ray.util.state`; other jobs may be running in it)."""
    from ray._private.state import actors

    job_id = _job_id_of(driver)
    alive = actors(actor_state_name="ALIVE").values()
    return [e for e in alive if e["ActorClassName"] == SOLVE_ACTOR and e["Pid"] and e["JobID"] == job_id]


def _wait_for_solve_actor(job: subprocess.Popen, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive := _alive_solve_actors(job):
            return alive[0]
        if job.poll() is not None:
            pytest.fail(f"job ended before its engine actor was seen:\n{job.stdout.read()}")
        time.sleep(0.1)
    pytest.fail(f"no engine actor after {timeout_s:.0f} s; actors: {_actor_table_line()}")


def _actor_table_line() -> str:
    from ray._private.state import actors

    return "; ".join(f"{e['ActorClassName']} {e['State']} pid {e['Pid']}" for e in actors().values())


def test_kill_engine_actor_mid_run_then_resume_gives_one_row_per_id(tmp_path, ray_cluster, ray_address):
    """The engine talks to a simulated endpoint in this process (benchmarks/sim_endpoint.py: ~0.5 s
    a completion, two at a time), so the job is surely solving when its engine actor is killed,
    on a quiet machine as on a busy one (the tiny model could finish all 16 rows first)."""
    from tests.conftest import sim_endpoint_module, sim_job_config

    sim = sim_endpoint_module()
    out = tmp_path / "out"
    with sim.SimEndpoint(in_process=True, tokens_per_s=1000.0, server_options={"median": 500, "sigma": 0.2, "cap": 800}) as endpoint:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(sim_job_config(
            endpoint.base_url, resources={"num_cpus": 0.5}, batch={"num_replicas": 1, "max_concurrent_solves": 2, "rows_per_batch": 2}
        )))
        job = _solve(out, config, address=ray_address)
        try:
            victim = _wait_for_solve_actor(job)  # this job's (by job id: other jobs may share the cluster)
            deadline = time.monotonic() + 120
            while endpoint.server.stats.requests < 3 and time.monotonic() < deadline and job.poll() is None:
                time.sleep(0.05)  # solving is under way: requests reached the endpoint
            assert 3 <= endpoint.server.stats.requests < len(_input_ids()), endpoint.server.stats.requests
            os.kill(victim["Pid"], signal.SIGKILL)
            output, _ = job.communicate(timeout=300)  # Ray Data restarts the actor and retries its blocks
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
        assert job.returncode == 0, output
        assert '"duplicates": 0' in output and '"rows_out": 16' in output, output
        resumed = _solve(out, config, "--resume", address=ray_address)
        resumed_output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output + resumed_output
    assert "resume: 16 of 16 rows already" in resumed_output, resumed_output
    ids = _ids_on_disk(out)
    assert sorted(ids) == sorted(_input_ids()), output + resumed_output
