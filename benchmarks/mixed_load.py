"""Mixed traffic against the Serve app on 127.0.0.1, and the app's engine replicas' process ids:
what tests/test_serve_scaling.py and benchmarks/serve_kill_soak.py drive a replica kill with.

`Load`: client threads sending chat, streamed chat, completions, /v1/solve and streamed /v1/solve
(or chat only) until stopped, each outcome recorded by kind."""

from __future__ import annotations

import os
import threading

import httpx


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


def engine_replica_pids(app: str) -> list[int]:
    """Process ids of this app's live engine replicas, asked of each replica actor itself (not a
    process-table search, which could match another session's processes)."""
    import ray

    pids = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if f"{app}#QvqEngine#" not in actor["name"]:
            continue
        try:
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            pids.append(ray.get(handle.__ray_call__.remote(lambda replica: os.getpid()), timeout=10))
        except Exception:  # dead or being replaced: not a live replica
            continue
    return sorted(pids)
