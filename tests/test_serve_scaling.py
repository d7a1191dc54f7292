"""Serve under load on a real local cluster: autoscaling 1 -> 2 replicas, and a replica killed with
SIGKILL is replaced while the app keeps answering. Load is bounded and only targets 127.0.0.1."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT as ROOT, running_app, script_module

APP = "scaling"
CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny"},
    "engine": {"max_batch_size": 2, "torch_threads": 1},
    "sampling": {"max_tokens": 64},
    "verifier": {"workers": 1},
    "resources": {"num_cpus": 0.5},
    "serve": {
        "ingress_num_cpus": 0.25,
        "engine_autoscaling": {
            "min_replicas": 1,
            "max_replicas": 2,
            "target_ongoing_requests": 1,
            "upscale_delay_s": 1,
            "downscale_delay_s": 600,
            "look_back_period_s": 2,
            "metrics_interval_s": 0.5,
        },
    },
}


@pytest.fixture(scope="module")
def base_url(ray_cluster):
    with running_app(CONFIG, APP) as url:
        yield url


def _running_engine_replicas() -> int:
    from ray import serve

    deployment = serve.status().applications[APP].deployments["QvqEngine"]
    return deployment.replica_states.get("RUNNING", 0)


def _mixed_load_module():
    return script_module(ROOT / "benchmarks" / "mixed_load.py")


Load = _mixed_load_module().Load


def _engine_replica_pids() -> list[int]:
    return _mixed_load_module().engine_replica_pids(APP)


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_autoscales_from_one_to_two_replicas_under_load(base_url):
    assert _running_engine_replicas() == 1
    with Load(base_url, clients=6) as load:
        scaled = _wait(lambda: _running_engine_replicas() == 2, timeout_s=90)
    assert scaled, "the engine deployment never scaled to 2 replicas under load"
    assert load.codes and all(code == 200 for code in load.codes), sorted(set(load.codes))


def test_replica_killed_under_mixed_load_loses_no_request_that_had_not_sent_text(base_url):
    before = _engine_replica_pids()
    assert before, "no engine replica process found"
    with Load(base_url, clients=6, max_tokens=300, mixed=True) as load:  # long enough to be in flight at the kill
        time.sleep(3)
        os.kill(before[0], signal.SIGKILL)
        replaced = _wait(lambda: before[0] not in _engine_replica_pids() and len(_engine_replica_pids()) >= len(before), timeout_s=120)
        time.sleep(3)
    summary = load.summary()
    print("outcomes under a replica kill:", summary)
    assert replaced, "the killed replica was not replaced"
    assert set(summary) == set(Load.KINDS) and all(outcomes.get("ok", 0) > 0 for outcomes in summary.values()), summary
    # chat, completions and /v1/solve (streamed or not) in flight on the dead replica are retried on
    # a live one; only a chat stream that had already sent text may end in an in-band error
    assert not [(kind, outcome) for kind, outcome in load.outcomes if outcome not in ("ok", "error after text")], summary
    assert all(outcome == "ok" for kind, outcome in load.outcomes if kind != "chat_stream"), summary
    after = httpx.post(
        f"{base_url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 4}, timeout=120
    )
    assert after.status_code == 200
