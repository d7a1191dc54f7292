"""A soak with engine replicas killed under mixed traffic: how many requests a client loses.

The Serve app (tiny model, 2 engine replicas) on 127.0.0.1 takes chat, streamed chat, completions,
/v1/solve and streamed /v1/solve from `--clients` threads for `--minutes`; every `--kill-every-s`
one engine replica is SIGKILLed (Serve replaces it). Outcomes per kind: ok, "error after text" (a
chat stream that had sent text when its replica died: it cannot be retried) and "server error"
(a 5xx, or a failure before any text: what retrying on a live replica must prevent; target 0).
Baseline in the same run: the same traffic for the same time with no kill. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mixed_load import Load, engine_replica_pids  # noqa: E402

APP = "soak"
# the untrained tiny model: it writes until max_tokens (the trained one stops after ~20 tokens), so
# requests are long enough to be in flight on the replica that is killed
CONFIG = {
    "model": {"path": "tiny-random", "served_model_name": "qvq-tiny"},
    "engine": {"max_batch_size": 4, "torch_threads": 1},
    "sampling": {"max_tokens": 64},
    "verifier": {"workers": 1},
    "resources": {"num_cpus": 0.5},
    "serve": {"ingress_num_cpus": 0.25, "engine_autoscaling": {"min_replicas": 2, "max_replicas": 2}},
}


def _phase(url: str, clients: int, max_tokens: int, seconds: float, kill_every_s: float | None) -> dict:
    kills = 0
    with Load(url, clients=clients, max_tokens=max_tokens, mixed=True) as load:
        started = time.monotonic()
        next_kill = started + (kill_every_s or seconds + 1)
        while time.monotonic() - started < seconds:
            time.sleep(0.5)
            if kill_every_s and time.monotonic() >= next_kill:
                pids = engine_replica_pids(APP)
                if pids:
                    os.kill(pids[kills % len(pids)], signal.SIGKILL)
                    kills += 1
                next_kill += kill_every_s
    table = load.summary()
    server_errors = sum(n for outcomes in table.values() for outcome, n in outcomes.items() if outcome.startswith("server error"))
    return {"kills": kills, "requests": len(load.outcomes), "server_errors": server_errors, "by_kind": table}


def main() -> None:
    import ray
    from ray import serve

    from qvq_ray.serve.app import build_app

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="Length of each phase (baseline, then kills).")
    parser.add_argument("--kill-every-s", type=float, default=45.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=300, help="Per request: long enough to be in flight at a kill.")
    parser.add_argument("--port", type=int, default=8768)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # our own cluster, never one found in /tmp/ray
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(build_app({"config": CONFIG}), name=APP, route_prefix="/")
        seconds = 60 * args.minutes
        baseline = _phase(url, args.clients, args.max_tokens, seconds, None)
        killed = _phase(url, args.clients, args.max_tokens, seconds, args.kill_every_s)
        serve.delete(APP)
    finally:
        serve.shutdown()
        ray.shutdown()
    for label, phase in (("no kill", baseline), (f"{killed['kills']} kills", killed)):
        print(f"{label:>10}: {phase['requests']} requests, {phase['server_errors']} server errors; {phase['by_kind']}")
    print(json.dumps({"benchmark": "serve_kill_soak", "minutes": args.minutes, "baseline": baseline, "with_kills": killed}))


if __name__ == "__main__":
    main()
