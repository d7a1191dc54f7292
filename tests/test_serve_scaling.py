"""Serve under load on a real local cluster: autoscaling 1 -> 2 replicas, and a replica killed with
SIGKILL is replaced while the app keeps answering. Load is bounded and only targets 127.0.0.1."""

from __future__ import annotations

import os
import signal
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
    """`clients` threads sending requests to 127.0.0.1 until stopped; records status codes.

    With `mixed`, each client cycles through chat, streamed chat, completions, /v1/solve and
    streamed /v1/solve, and `outcomes` records per kind: 'ok', 'error after text' (a stream that had
    sent text when it failed: it cannot be retried), or 'server error' (a 5xx, or a failure before
    any text: what a live replica's retry must prevent)."""

    KINDS = ("chat", "chat_stream", "completion", "solve", "solve_stream")

    def __init__(self, base_url: str, clients: int, max_tokens: int = 64, mixed: bool = False):
        self.base_url = base_url
        self.url = f"{base_url}/v1/chat/completions"
        self.body = {"messages": [{"role": "user", "content": "Tell me a long story about numbers."}], "max_tokens": max_tokens}
        self.max_tokens = max_tokens
        self.mixed = mixed
        self.stop = threading.Event()
        self.codes: list[int] = []
        self.outcomes: list[tuple[str, str]] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, client_index: int) -> None:
        with httpx.Client(timeout=120) as client:
            turn = client_index
            while not self.stop.is_set():
                kind = self.KINDS[turn % len(self.KINDS)] if self.mixed else "chat"
                turn += 1
                try:
                    self.outcomes.append((kind, self._one(client, kind)))
                except Exception as exc:  # a dropped connection, a body that is not JSON: counted, never lost
                    self.codes.append(-1)
                    self.outcomes.append((kind, f"server error ({type(exc).__name__})"))

    def _one(self, client: httpx.Client, kind: str) -> str:
        import json

        text = {"messages": self.body["messages"], "max_tokens": self.max_tokens}
        path, body = {
            "chat": ("/v1/chat/completions", text),
            "chat_stream": ("/v1/chat/completions", {**text, "stream": True}),
            "completion": ("/v1/completions", {"prompt": "Numbers are", "max_tokens": self.max_tokens}),
            "solve": ("/v1/solve", {"question": "What is 2+2?", "max_tokens": self.max_tokens}),
            "solve_stream": ("/v1/solve", {"question": "What is 2+2?", "max_tokens": self.max_tokens, "stream": True}),
        }[kind]
        with client.stream("POST", self.base_url + path, json=body) as response:
            self.codes.append(response.status_code)
            if response.status_code >= 500:
                return "server error"
            if not kind.endswith("_stream"):
                response.read()
                return "ok" if response.status_code == 200 else f"status {response.status_code}"
            sent_text = False
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return "error after text" if sent_text and kind == "chat_stream" else "server error"
                sent_text = sent_text or any(c.get("delta", {}).get("content") for c in event.get("choices", []))
            return "ok"

    def summary(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for kind, outcome in self.outcomes:
            table.setdefault(kind, {}).setdefault(outcome, 0)
            table[kind][outcome] += 1
        return table

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=150)


def _engine_replica_pids() -> list[int]:
    """Process ids of this app's live engine replicas, asked of each replica actor itself (not a
    process-table search, which could match another session's processes)."""
    import ray

    pids = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if f"{APP}#QvqEngine#" not in actor["name"]:
            continue
        try:
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            pids.append(ray.get(handle.__ray_call__.remote(lambda replica: os.getpid()), timeout=10))
        except Exception:  # dead or being replaced: not a live replica
            continue
    return sorted(pids)


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
