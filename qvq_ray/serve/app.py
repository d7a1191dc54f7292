"""The Serve application: its builder for config files, and `qvq-ray serve CONFIG`.

`import_path: qvq_ray.serve.app:build_app` with `args: {config: {...}}` (a QvqConfig as a dict)
or `args: {config_path: some.yaml}`. Resources and autoscaling come from that config, so one file
describes the tiny CPU app and a sharded QVQ-72B app alike.

`run_serve_config` runs such a file the way `serve run CONFIG` does; it exists so the project's own
command starts a local cluster with the right settings and prints where it listens.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from qvq_ray.config import QvqConfig


def engine_deployment_options(config: QvqConfig) -> dict[str, Any]:
    """Replica resources and autoscaling of the engine deployment, derived from the config.

    target_ongoing_requests defaults to the engine's batch capacity (max_batch_size): a replica
    with a full batch and more waiting is saturated, so Serve adds one. (Ray's LLM defaults set it
    to 1e9, which never scales.) max_ongoing_requests leaves room to queue a second batch.
    """
    res = config.resources
    scaling = config.serve.engine_autoscaling
    capacity = config.engine.max_batch_size
    options: dict[str, Any] = {
        "max_ongoing_requests": config.serve.engine_max_ongoing_requests or max(2 * capacity, 4),
        "autoscaling_config": {
            "min_replicas": scaling.min_replicas,
            "initial_replicas": max(scaling.min_replicas, 1),
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests or float(capacity),
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
            "look_back_period_s": scaling.look_back_period_s,
            "metrics_interval_s": scaling.metrics_interval_s,
        },
        # Liveness: the check reads the engine's step clock and never generates (engines/base.py
        # StallWatch), so a busy replica passes and only a stuck or dead one is restarted.
        "health_check_period_s": config.serve.health_check_period_s,
        "health_check_timeout_s": config.serve.health_check_timeout_s,
    }
    if config.engine.kind == "openai":
        # The model runs at the remote endpoint: a replica is an HTTP client and holds no GPU.
        options["ray_actor_options"] = {"num_cpus": res.num_cpus, "num_gpus": 0}
    elif res.tensor_parallel_size > 1:
        # One bundle per GPU, packed on one node, released when the app is deleted. The replica
        # runs in bundle 0 on its CPUs only: vLLM puts one Ray worker per GPU bundle; the
        # transformers engine claims the bundles' GPUs for its own process (serve/placement.py).
        options["placement_group_bundles"] = [{"CPU": res.num_cpus, "GPU": 1.0}] + [
            {"GPU": 1.0} for _ in range(res.tensor_parallel_size - 1)
        ]
        options["placement_group_strategy"] = "STRICT_PACK"
        options["ray_actor_options"] = {"num_cpus": res.num_cpus, "num_gpus": 0}
    else:
        options["ray_actor_options"] = {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus}
    return options


def build_app(args: dict[str, Any] | None = None):
    from qvq_ray.serve.engine_deployment import QvqEngine
    from qvq_ray.serve.ingress import QvqIngress

    args = dict(args or {})
    if "config_path" in args:
        config = QvqConfig.from_yaml(args.pop("config_path"))
    else:
        config = QvqConfig.from_any(args.pop("config", None))
    if args:
        raise ValueError(f"unknown app args {sorted(args)}; expected 'config' or 'config_path'")
    config_json = config.model_dump_json()
    engine = QvqEngine.options(**engine_deployment_options(config)).bind(config_json)
    return QvqIngress.options(
        ray_actor_options={"num_cpus": config.serve.ingress_num_cpus},
        max_ongoing_requests=1000,
    ).bind(engine, config_json)


def _import_builder(import_path: str):
    """'pkg.module:attr' (Serve's form) or 'pkg.module.attr'."""
    module_name, _, attr = import_path.partition(":") if ":" in import_path else import_path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def run_serve_config(config_file: str, *, address: str | None = None, blocking: bool = True) -> dict[str, Any]:
    import yaml
    from ray import serve

    from qvq_ray.cluster import start_or_join_ray

    spec = yaml.safe_load(Path(config_file).read_text()) or {}
    http = spec.get("http_options") or {}
    host, port = http.get("host", "127.0.0.1"), int(http.get("port", 8000))
    start_or_join_ray(address, log_to_driver=True)
    serve.start(http_options={"host": host, "port": port}, proxy_location=spec.get("proxy_location", "HeadOnly"))
    urls = {}
    for app_spec in spec.get("applications") or []:
        if app_spec.get("deployments"):
            raise ValueError(
                "per-deployment overrides in 'deployments:' are not applied by qvq-ray serve; "
                "put resources and autoscaling in args.config, or use `serve run`"
            )
        builder = _import_builder(app_spec["import_path"])
        app = builder(app_spec.get("args") or {})
        name = app_spec.get("name", "default")
        prefix = app_spec.get("route_prefix", "/")
        serve.run(app, name=name, route_prefix=prefix, blocking=False)
        urls[name] = f"http://{host}:{port}{prefix.rstrip('/')}"
        print(f"qvq-ray serve: application {name!r} ready at {urls[name]}/v1 (OpenAI API), {urls[name]}/v1/solve", flush=True)
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return urls
