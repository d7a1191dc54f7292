"""Serve under load on a real local cluster: autoscaling 1 -> 2 replicas, and a replica killed with
SIGKILL is replaced while the app keeps answering. Load is bounded and only targets 127.0.0.1."""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import pytest

from tests.conftest import free_port

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
    from ray import serve

    from qvq_ray.serve.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"config": CONFIG}), name=APP, route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def _running_engine_replicas() -> int:
    from ray import serve

    deployment = serve.status().applications[APP].deployments["QvqEngine"]
    return deployment.replica_states.get("RUNNING", 0)


class Load:
    """`clients` threads sending chat requests to 127.0.0.1 until stopped; records status codes."""

    def __init__(self, base_url: str, clients: int, max_tokens: int = 64):
        self.url = f"{base_url}/v1/chat/completions"
        self.body = {"messages": [{"role": "user", "content": "Tell me a long story about numbers."}], "max_tokens": max_tokens}
        self.stop = threading.Event()
        self.codes: list[int] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                try:
                    self.codes.append(client.post(self.url, json=self.body).status_code)
                except httpx.HTTPError:
                    self.codes.append(-1)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=150)


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


def test_replica_killed_under_load_is_replaced_and_later_requests_succeed(base_url):
    def engine_pids() -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"ServeReplica:{APP}:QvqEngine"], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    before = engine_pids()
    assert before, "no engine replica process found"
    with Load(base_url, clients=4) as load:
        time.sleep(2)
        subprocess.run(["kill", "-9", str(before[0])], check=True)
        replaced = _wait(lambda: before[0] not in engine_pids() and len(engine_pids()) >= len(before), timeout_s=120)
        time.sleep(3)
    print("status codes under kill:", sorted({c: load.codes.count(c) for c in set(load.codes)}.items()))
    assert replaced, "the killed replica was not replaced"
    assert load.codes.count(200) > 0
    # non-streamed requests in flight on the dead replica are retried on a live one by the ingress
    assert all(code == 200 for code in load.codes), sorted(set(load.codes))
    after = httpx.post(
        f"{base_url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "2+2?"}], "max_tokens": 4}, timeout=120
    )
    assert after.status_code == 200
